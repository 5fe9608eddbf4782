// The request path's counters and histograms bypass prom-client's per-call label hashing; what a
// scrape (or a cluster's aggregation) sees must be exactly what prom-client's own would show.
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastCounter, FastHistogram } from '../src/metrics/fast.js'
import { LATENCY_BUCKETS } from '../src/metrics/index.js'

function pair() {
  const slow = new Registry()
  const fast = new Registry()
  const opts = { name: 'x_seconds', help: 'help with "quotes" and \\ backslash', labelNames: ['route', 'model'] as const, buckets: LATENCY_BUCKETS }
  const c = { name: 'x_total', help: 'a counter', labelNames: ['route', 'code'] as const }
  return {
    slow, fast,
    hist: [new Histogram({ ...opts, registers: [slow] }), new FastHistogram({ ...opts, registers: [fast] })] as const,
    counter: [new Counter({ ...c, registers: [slow] }), new FastCounter({ ...c, registers: [fast] })] as const,
  }
}

describe('fast instruments', () => {
  it('expose exactly what prom-client exposes for the same observations', async () => {
    const { slow, fast, hist, counter } = pair()
    const values = [0, 0.0004, 0.001, 0.0011, 0.3, 2.5, 9.99, 10, 11, 1e6]
    const labelSets = [{ route: 'churn', model: 'a' }, { route: 'churn', model: 'b"\\\n' }]
    for (const labels of labelSets) {
      const [h1, h2] = [hist[0].labels(labels), hist[1].labels(labels)]
      for (const v of values) { h1.observe(v); h2.observe(v) }
    }
    for (const code of ['200', '502', '200']) {
      counter[0].labels({ route: 'r', code }).inc()
      counter[1].labels({ route: 'r', code }).inc()
    }
    counter[0].inc({ route: 'r', code: '504' }, 3)
    counter[1].inc({ route: 'r', code: '504' }, 3)
    expect(await fast.metrics()).toBe(await slow.metrics())
    expect(AggregatorRegistry.aggregate([await fast.getMetricsAsJSON(), await fast.getMetricsAsJSON()]).metrics())
      .toEqual(AggregatorRegistry.aggregate([await slow.getMetricsAsJSON(), await slow.getMetricsAsJSON()]).metrics())
  })

  it('refuses unknown or missing labels and negative counter increments, as prom-client does', () => {
    const { counter } = pair()
    expect(() => counter[1].labels({ route: 'r' })).toThrow(/code/)
    expect(() => counter[1].labels({ route: 'r', code: '1', extra: 'x' } as never)).toThrow(/extra/)
    expect(() => counter[1].inc({ route: 'r', code: '1' }, -1)).toThrow(/only goes up/)
  })
})
