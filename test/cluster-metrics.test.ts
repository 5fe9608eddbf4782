// The primary's sums under serve --workers (metrics/cluster.ts), without processes: what a worker
// that died had counted stays, each series merged by its own aggregator, and its gauges leave.
import { describe, expect, it } from 'vitest'
import { Metrics, WorkerMetrics, type MetricsSnapshot } from '../src/metrics/index.js'
import { parseMetrics } from './helpers/router.js'

/** A worker's registry as it arrives over the IPC channel (JSON). */
async function snapshot(m: Metrics): Promise<MetricsSnapshot> {
  return JSON.parse(JSON.stringify(await m.registry.getMetricsAsJSON())) as MetricsSnapshot
}

function worker(requests: number, reloads: number): Metrics {
  const m = new Metrics({ defaultMetrics: false })
  m.requests.inc({ route: 'r', model: 'a', code: '200' }, requests)
  for (let i = 0; i < requests; i++) m.duration.observe({ route: 'r', model: 'a' }, 0.01)
  m.configReloads.inc({ result: 'success' }, reloads)
  m.recordsSpooledBytes.set(100)
  m.setConfig('abc', [{ name: 'r', models: ['a'], shares: [1] }])
  return m
}

async function sums(w: WorkerMetrics): Promise<Record<string, number | undefined>> {
  const m = parseMetrics((await w.exposition()).body)
  return {
    requests: m.get('modelsplit_requests_total{route="r",model="a",code="200"}'),
    durations: m.get('modelsplit_request_duration_seconds_count{route="r",model="a"}'),
    reloads: m.get('modelsplit_config_reloads_total{result="success"}'),
    spooled: m.get('modelsplit_records_spooled_bytes'),
    share: m.get('modelsplit_split_weight{route="r",model="a"}'),
  }
}

describe('WorkerMetrics', () => {
  it('keeps a dead worker\'s counters and histograms, merges them by aggregator, and drops its gauges', async () => {
    const w = new WorkerMetrics()
    const [one, two] = [worker(3, 1), worker(2, 1)]
    w.seen(1, await snapshot(one))
    w.seen(2, await snapshot(two))
    expect(await sums(w)).toEqual({ requests: 5, durations: 5, reloads: 1, spooled: 200, share: 1 })

    // Worker 1 dies; its last answer stays in the sums, its gauge does not; a late answer of it is ignored.
    w.retire(1)
    w.seen(1, await snapshot(worker(50, 1)))
    expect(await sums(w)).toEqual({ requests: 5, durations: 5, reloads: 1, spooled: 100, share: 1 })

    // Its replacement starts from zero (and missed the reload every worker counts once): no sum goes back.
    w.seen(3, await snapshot(worker(1, 0)))
    expect(await sums(w)).toEqual({ requests: 6, durations: 6, reloads: 1, spooled: 200, share: 1 })

    // Every worker gone: the counts remain, merged the same way.
    w.retire(2)
    w.retire(3)
    expect(await sums(w)).toEqual({ requests: 6, durations: 6, reloads: 1, spooled: undefined, share: undefined })
  })
})
