// Two router replicas behind a real Prometheus: the fleet's experiment read from Prometheus (the
// per-bucket totals and sampled users every replica exports) equals `modelsplit report` over the
// union of both replicas' record files.
import { PassThrough } from 'node:stream'
import { dirname, join } from 'node:path'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { prometheusBin, startPrometheus } from './helpers/prometheus.js'
import { startRouter, type RunningRouter } from './helpers/router.js'
import { upstream } from './helpers/servers.js'
import { closedPort, jsonEcho } from './helpers/upstream.js'
import { runCli } from '../src/cli/run.js'

const config = (a: string, b: string, prom: string): string => `recording: { path: ./records.jsonl }
evaluation:
  interval: 1h
  prometheus: { url: "${prom}", scrape_interval: 1s, lookback: 1h }
models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: churn
    path: /churn
    record: true
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
    metrics:
      - { name: clicked, type: binary }
      - { name: revenue, type: continuous, cuped: revenue_pre }
      - { name: revenue_pre, type: continuous, role: covariate }
`

/**
 * The experiment without what only a process that saw every look can know (running minima, and the
 * verdicts read from them) and without the user sample's fraction, which each replica has its own of.
 */
function withoutLooks(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutLooks)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value)
    .filter(([k]) => !['p_value_sequential', 'p_value_sequential_adjusted', 'verdict', 'scope', 'non_inferior', 'sampled_fraction'].includes(k))
    .map(([k, v]) => [k, withoutLooks(v)]))
}

describe.skipIf(prometheusBin === '')('the fleet\'s experiment through Prometheus', () => {
  it('equals the report over both replicas\' records, field by field', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const port = await closedPort()
    const promUrl = `http://127.0.0.1:${port}`
    const replicas = [await startRouter(config(a.url, b.url, promUrl)), await startRouter(config(a.url, b.url, promUrl))]
    onTestFinished(async () => { for (const r of replicas) await r.close() })
    const prom = await startPrometheus(replicas.map((r) => new URL(r.adminUrl).host), [], port)
    onTestFinished(() => prom.close())

    let sent = 0
    for (let u = 0; u < 400; u++) {
      // Each user reaches one replica (as behind session affinity); outcomes go to the one that answered.
      const r = replicas[u % 2] as RunningRouter
      const res = await fetch(`${r.url}/churn`, { headers: { 'x-user-id': `user-${u}` } })
      await res.text()
      const requestId = res.headers.get('x-request-id')
      const model = res.headers.get('x-modelsplit-model')
      const base = 10 + (u % 7)
      const outcomes: unknown[] = [{ route: 'churn', user_id: `user-${u}`, metric: 'revenue_pre', value: base }]
      for (let k = 0; k < 6; k++) {
        outcomes.push({ route: 'churn', request_id: requestId, metric: 'clicked', value: (u * 7 + k * 3) % 10 < (model === 'b' ? 4 : 3) ? 1 : 0 })
        outcomes.push({ route: 'churn', request_id: requestId, metric: 'revenue', value: base + ((u + k) % 5) })
      }
      sent += outcomes.length
      expect((await fetch(`${r.url}/feedback`, { method: 'POST', body: JSON.stringify(outcomes) })).status).toBe(200)
    }
    const scraped = async (): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(modelsplit_outcome_bucket_count)')}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? 0)
    }
    await vi.waitFor(async () => expect(await scraped()).toBe(sent), { timeout: 20_000, interval: 200 })
    for (const r of replicas) await r.router.flush()
    // The users' gauges are read at each scrape: wait for one after the last request too.
    const users = async (): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(modelsplit_experiment_users)')}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? 0)
    }
    await vi.waitFor(async () => expect(await users()).toBe(400), { timeout: 20_000, interval: 200 })

    const fleet = await (await fetch(`${replicas[0]?.adminUrl}/admin/experiments/churn`)).json() as { scope: string }
    expect(fleet.scope).toContain('every replica')
    const out = new PassThrough()
    let text = ''
    out.on('data', (c: Buffer) => { text += c.toString() })
    const files = replicas.map((r) => join(dirname(r.configFile), 'records.jsonl'))
    expect(await runCli(['report', '--json', '--config', replicas[0]?.configFile as string, ...files], { out, err: new PassThrough() })).toBe(0)
    const offline = (JSON.parse(text) as { experiments: unknown[] }).experiments[0]
    expect(withoutLooks(offline)).toEqual(withoutLooks(fleet))
    // And the users the check counts are the 400 that came, split by the hash.
    const observed = (offline as { srm: { observed: Record<string, number> } }).srm.observed
    expect((observed.a ?? 0) + (observed.b ?? 0)).toBe(400)
  })
})
