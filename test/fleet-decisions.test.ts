// Two router replicas behind a real Prometheus, traffic spread over both: with
// evaluation.prometheus each reads the fleet's figures at the boundary's instant, so both take the
// same decision without talking to each other. Prometheus unreachable: the rollout holds.
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { prometheusBin, startPrometheus } from './helpers/prometheus.js'
import { startRouter, type RunningRouter } from './helpers/router.js'
import { upstream } from './helpers/servers.js'
import { closedPort, jsonEcho } from './helpers/upstream.js'


const config = (v1: string, v2: string, prom: string) => `evaluation:
  interval: 1h
  prometheus: { url: "${prom}", scrape_interval: 1s, lookback: 1h }
models:
  v1: { url: "${v1}" }
  v2: { url: "${v2}" }
routes:
  - name: churn
    path: /churn
    metrics: [{ name: converted, type: binary }]
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
    rollout: { candidate: v2, steps: [20, 100], step_interval: 1s, min_requests: 50, gates: { max_p99_latency_ratio: 100 } }
`

interface Status { state: string; percent: number; step_started_at: string; decisions: { kind: string; result: string; reason: string; inputs?: unknown }[] }
const status = async (r: RunningRouter): Promise<Status> => (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json() as Promise<Status>

describe.skipIf(prometheusBin === '')('decisions from Prometheus, the same on every replica', () => {
  it('two replicas with traffic spread over both take identical decisions at every boundary', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const port = await closedPort()
    const promUrl = `http://127.0.0.1:${port}`
    const replicas = [await startRouter(config(v1.url, v2.url, promUrl)), await startRouter(config(v1.url, v2.url, promUrl))]
    onTestFinished(async () => { for (const r of replicas) await r.close() })
    const prom = await startPrometheus(replicas.map((r) => new URL(r.adminUrl).host), [], port)
    onTestFinished(() => prom.close())
    const scraped = async (): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(modelsplit_requests_total{route="churn"})')}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? 0)
    }

    // Both replicas agree on the starting weights (a pure function of the plan).
    const starts = await Promise.all(replicas.map(status))
    expect(starts.map((s) => s.percent)).toEqual([20, 20])
    let sent = 0
    for (const expected of [100, 100]) {
      // Traffic spread over both replicas: users 0..299 alternate between them.
      await Promise.all(Array.from({ length: 300 }, (_, i) => fetch(`${(replicas[i % 2] as RunningRouter).url}/churn`, { headers: { 'x-user-id': `u${sent + i}` } }).then((x) => x.text())))
      sent += 300
      // Wait until Prometheus has every request (both replicas scraped), then decide at one instant.
      await vi.waitFor(async () => expect(await scraped()).toBe(sent), { timeout: 15_000, interval: 200 })
      // The boundary is an instant by which both replicas' last scrapes had landed (the engine's
      // scheduler gets this by waiting a scrape interval past each boundary).
      const boundary = Date.now()
      const stepStart = Date.parse((await status(replicas[0] as RunningRouter)).step_started_at)
      await Promise.all(replicas.map((r) => r.router.decisions.tick(Math.max(boundary, stepStart + 1000))))
      const [a, b] = await Promise.all(replicas.map(status))
      // The same decision with the same numbers on both replicas.
      expect(a?.decisions.at(-1)).toEqual(b?.decisions.at(-1))
      expect(a?.state).toBe(b?.state)
      expect(a?.percent, JSON.stringify(a?.decisions.at(-1))).toBe(expected)
      if (a?.state === 'promoted') break
    }
    const [a, b] = await Promise.all(replicas.map(status))
    expect(a?.decisions.map((d) => d.result)).toEqual(b?.decisions.map((d) => d.result))
    expect(a?.decisions.map((d) => d.result)).toContain('advance')
    // Fleet-wide: the figures the first decision saw count both replicas' requests.
    const judged = a?.decisions.find((d) => d.result === 'advance')?.inputs as { control: { requests: number }; candidate: { requests: number } }
    expect(judged.control.requests + judged.candidate.requests).toBeGreaterThan(300 * 0.8)

    // Experiments are the fleet's too: outcomes fed to either replica, read from one.
    for (const [i, r] of replicas.entries()) {
      const body = Array.from({ length: 50 }, (_, k) => JSON.stringify({ route: 'churn', model: k % 2 === 0 ? 'v1' : 'v2', metric: 'converted', value: (k + i) % 3 === 0 ? 1 : 0 })).join('\n')
      expect((await fetch(`${r.url}/feedback`, { method: 'POST', body })).status).toBe(200)
    }
    const outcomes = async (): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(modelsplit_outcomes_total)')}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? 0)
    }
    await vi.waitFor(async () => expect(await outcomes()).toBe(100), { timeout: 15_000, interval: 200 })
    const exp = await (await fetch(`${(replicas[0] as RunningRouter).adminUrl}/admin/experiments/churn`)).json() as { scope: string; metrics: { converted: { models: Record<string, { assignments: number; outcomes: number }>; srm: { mismatch: boolean } } } }
    expect(exp.scope).toContain(`every replica Prometheus at ${promUrl} scrapes`)
    const models = exp.metrics.converted.models
    expect((models.v1?.outcomes ?? 0) + (models.v2?.outcomes ?? 0)).toBe(100)
    expect((models.v1?.assignments ?? 0) + (models.v2?.assignments ?? 0)).toBe(sent)
    // The rollout moved the weights twice: the fleet's assignments follow each period's shares.
    expect(exp.metrics.converted.srm.mismatch).toBe(false)
  }, 60_000)

  it('holds, and says why, when Prometheus is unreachable', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const r = await startRouter(config(v1.url, v2.url, `http://127.0.0.1:${await closedPort()}`))
    onTestFinished(() => r.close())
    await Promise.all(Array.from({ length: 200 }, (_, i) => fetch(`${r.url}/churn`, { headers: { 'x-user-id': `u${i}` } }).then((x) => x.text())))
    const s0 = await status(r)
    await r.router.decisions.tick(Date.parse(s0.step_started_at) + 10_000)
    const s = await status(r)
    expect(s).toMatchObject({ state: 'holding', percent: 20 })
    expect(s.decisions.at(-1)?.reason).toMatch(/holding at 20%: Prometheus at http:\/\/127\.0\.0\.1:\d+ unreachable \(ECONNREFUSED\)/)
  })

  it('a replica that starts without state joins the fleet\'s step, and an operator\'s pause on one replica reaches the others', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const port = await closedPort()
    const promUrl = `http://127.0.0.1:${port}`
    const yaml = config(v1.url, v2.url, promUrl).replace('steps: [20, 100]', 'steps: [20, 60, 100]')
    const replicas = [await startRouter(yaml), await startRouter(yaml)]
    onTestFinished(async () => { for (const r of replicas) await r.close() })
    const prom = await startPrometheus(replicas.map((r) => new URL(r.adminUrl).host), [], port)
    onTestFinished(() => prom.close())
    const series = async (q: string): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? Number.NaN)
    }
    // Walk the fleet to 60%.
    await Promise.all(Array.from({ length: 400 }, (_, i) => fetch(`${(replicas[i % 2] as RunningRouter).url}/churn`, { headers: { 'x-user-id': `u${i}` } }).then((x) => x.text())))
    await vi.waitFor(async () => expect(await series('sum(modelsplit_requests_total{route="churn"})')).toBe(400), { timeout: 15_000, interval: 200 })
    const stepStart = Date.parse((await status(replicas[0] as RunningRouter)).step_started_at)
    const boundary = Math.max(Date.now(), stepStart + 1000)
    await Promise.all(replicas.map((r) => r.router.decisions.tick(boundary)))
    expect((await Promise.all(replicas.map(status))).map((s) => s.percent)).toEqual([60, 60])
    await vi.waitFor(async () => expect(await series('max(modelsplit_rollout_step{route="churn"})')).toBe(60), { timeout: 15_000, interval: 200 })

    // A third replica, fresh (no decisions.json), joins at 60% instead of starting at 20%.
    const late = await startRouter(yaml)
    onTestFinished(() => late.close())
    await vi.waitFor(async () => expect((await status(late)).decisions.at(-1)?.result).toBe('join'), { timeout: 15_000, interval: 100 })
    expect(await status(late)).toMatchObject({ state: 'running', percent: 60, step_started_at: new Date(boundary).toISOString() })

    // An operator pauses replica 0; replica 1 reads it from Prometheus at its next boundary.
    expect((await fetch(`${(replicas[0] as RunningRouter).adminUrl}/admin/rollouts/churn/pause`, { method: 'POST' })).status).toBe(200)
    await vi.waitFor(async () => expect(await series('max(modelsplit_rollout_operator_action_seconds{route="churn",action="pause"})')).toBeGreaterThan(0), { timeout: 15_000, interval: 200 })
    await (replicas[1] as RunningRouter).router.decisions.tick(Date.now())
    const other = await status(replicas[1] as RunningRouter)
    expect(other.state).toBe('paused')
    expect(other.decisions.filter((d) => d.kind === 'operator').map((d) => d.reason)).toEqual([expect.stringMatching(/^pause by an operator on another replica at /)])
  }, 60_000)
})
