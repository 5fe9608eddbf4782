// deploy/grafana/modelsplit.json against a real Prometheus (Debian's package; skipped without it)
// scraping a real router that carries traffic with every feature the dashboard shows: a rollout,
// a bandit, a shadow that agrees, disagrees, errs and is dropped, a candidate that answers 5xx
// and resets connections, records, outcomes and a refused reload. The Prometheus also loads
// deploy/prometheus/modelsplit-rules.yaml, whose recorded series some panels read. Every PromQL
// expression of the dashboard, with its variables substituted, must parse and return a number.
import { readFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startPrometheus, prometheusBin, type RunningPrometheus, type Sample } from './helpers/prometheus.js'
import { startRouter, type RunningRouter } from './helpers/router.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'

const dashboardFile = new URL('../deploy/grafana/modelsplit.json', import.meta.url)
const rulesFile = new URL('../deploy/prometheus/modelsplit-rules.yaml', import.meta.url)

interface Target { expr: string; refId: string; instant?: boolean; datasource?: { uid: string } }
interface Panel { id: number; type: string; title: string; datasource?: { type: string; uid: string }; targets?: Target[]; panels?: Panel[]; gridPos: { h: number; w: number; x: number; y: number } }
interface Variable { name: string; type: string; query: string | { query: string }; definition?: string }
interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Variable[] } }

const loadDashboard = async (): Promise<Dashboard> => JSON.parse(await readFile(dashboardFile, 'utf8')) as Dashboard
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])])
const targetsOf = (d: Dashboard): { panel: Panel; target: Target }[] =>
  allPanels(d).flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })))
const variableQuery = (v: Variable): string => typeof v.query === 'string' ? v.query : v.query.query

/** Grafana's variables in an expression, replaced by the values a user would have picked. */
function substitute(expr: string, values: Record<string, string>): string {
  const builtIn: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '1h', ...values }
  const out = expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b) as string
    const v = builtIn[name]
    if (v === undefined) throw new Error(`${expr}: no value for the variable ${m}`)
    return v
  })
  return out
}

/** Grafana's label_values(selector, label) as the PromQL that lists the same values. */
function labelValuesQuery(q: string): { promql: string; label: string } {
  const m = /^label_values\((.*),\s*(\w+)\)$/s.exec(q.trim())
  if (m === null) throw new Error(`not a label_values query: ${q}`)
  return { promql: `group by (${m[2]}) (${m[1]})`, label: m[2] as string }
}

describe('the Grafana dashboard', () => {
  it('is one importable dashboard: a datasource variable, a route variable, panels that use them, recorded series the rules define', async () => {
    const d = await loadDashboard()
    expect(d.uid).toBe('modelsplit')
    const vars = new Map(d.templating.list.map((v) => [v.name, v]))
    expect(vars.get('datasource')?.type).toBe('datasource')
    expect(vars.get('route')?.type).toBe('query')
    const ids = allPanels(d).map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    const titles = allPanels(d).filter((p) => p.type !== 'row').map((p) => p.title)
    expect(new Set(titles).size).toBe(titles.length)
    // Every panel the issue lists is there.
    for (const want of [/Requests per second/, /5xx ratio/, /p50 and p99/, /agreement/i, /\|diff\|/, /rate or mean/, /lift/, /Sample ratio/, /Rollout step/, /Rollout state/, /Records written and dropped/, /Config reloads/]) {
      expect(titles.some((t) => want.test(t)), String(want)).toBe(true)
    }
    const rules = await readFile(rulesFile, 'utf8')
    const recorded = new Set([...rules.matchAll(/^\s*- record: (\S+)$/gm)].map((m) => m[1]))
    const targets = targetsOf(d)
    expect(targets.length).toBeGreaterThanOrEqual(25)
    for (const { panel, target } of targets) {
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}')
      expect(target.expr.trim(), panel.title).not.toBe('')
      for (const m of target.expr.matchAll(/\$\{?(\w+)/g)) {
        if (!(m[1] as string).startsWith('__')) expect(vars.has(m[1] as string), `${panel.title}: $${m[1]}`).toBe(true)
      }
      // A route's panels are that route's: every modelsplit series with a route label is selected by it.
      for (const m of target.expr.matchAll(/(modelsplit_\w+)\{([^}]*)\}/g)) {
        if (!['modelsplit_records_total', 'modelsplit_config_reloads_total', 'modelsplit_config_info', 'modelsplit_records_spooled_bytes'].includes(m[1] as string)) {
          expect(m[2], `${panel.title}: ${m[0]}`).toContain('route="$route"')
        }
      }
      for (const m of target.expr.matchAll(/\b(modelsplit:[\w:]+)/g)) expect(recorded.has(m[1]), `${panel.title}: ${m[1]}`).toBe(true)
    }
  })
})

describe.skipIf(prometheusBin === '')('the Grafana dashboard against a real Prometheus scraping a router with traffic', () => {
  const ups: Upstream[] = []
  let r: RunningRouter
  let prom: RunningPrometheus
  let config: string
  const sent = { churnOutcomes: 0, upsellOutcomes: 0 }

  const userNumber = (headers: Record<string, unknown>): number => Number(String(headers['x-user-id'] ?? 'user-0').slice(5))
  const json = (res: ServerResponse, body: string, status = 200): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }

  beforeAll(async () => {
    const control = await startUpstream((_req, res) => json(res, '{"predictions":[0.2]}'))
    // The candidate answers 500 to one user in ten and resets the connection of one in 33.
    const candidate = await startUpstream((req, res, raw) => {
      const n = userNumber(req.headers)
      if (n % 33 === 1) raw.socket.destroy()
      else if (n % 10 === 0) json(res, '{"error":"boom"}', 500)
      else json(res, '{"predictions":[0.2]}')
    })
    // The shadow agrees (within the tolerance), disagrees, answers what is not JSON, and fails.
    const shadow = await startUpstream((req, res) => {
      const n = userNumber(req.headers)
      if (n % 13 === 0) json(res, '{"error":"down"}', 500)
      else if (n % 9 === 0) json(res, 'not json')
      else if (n % 4 === 0) json(res, '{"predictions":[0.5]}')
      else json(res, '{"predictions":[0.2005]}')
    })
    const armA = await startUpstream((_req, res) => json(res, '{"predictions":[1]}'))
    const armB = await startUpstream((_req, res) => json(res, '{"predictions":[2]}'))
    ups.push(control, candidate, shadow, armA, armB)
    config = `evaluation: { interval: 1h }
recording: { path: ./records.jsonl }
limits: { max_mirror_body_bytes: 256 }
models:
  churn-v1: { url: "${control.url}" }
  churn-v2: { url: "${candidate.url}" }
  churn-v3: { url: "${shadow.url}" }
  up-a: { url: "${armA.url}" }
  up-b: { url: "${armB.url}" }
routes:
  - name: churn
    path: /models/churn
    record: true
    split: [{ model: churn-v1, weight: 100 }, { model: churn-v2, weight: 0 }]
    shadow: [{ model: churn-v3 }]
    metrics: [{ name: converted, type: binary }]
    rollout:
      candidate: churn-v2
      steps: [50, 100]
      step_interval: 1s
      min_requests: 100000
      gates: { max_error_rate_increase: null, max_p99_latency_ratio: null }
  - name: upsell
    path: /models/upsell
    record: true
    split: [{ model: up-a, weight: 50 }, { model: up-b, weight: 50 }]
    metrics: [{ name: bought, type: binary }]
    bandit: { metric: bought }
`
    r = await startRouter(config)
    prom = await startPrometheus([new URL(r.adminUrl).host], [new URL(rulesFile).pathname])
    // Counters created after the first scrape have a sample before their increments.
    await vi.waitFor(async () => expect((await prom.query('up{job="modelsplit"} == 1')).length).toBe(1), { timeout: 15_000, interval: 200 })
  }, 30_000)

  afterAll(async () => {
    await prom?.close()
    await r?.close()
    await Promise.all(ups.map((u) => u.close()))
  })

  async function wave(first: number): Promise<void> {
    const outcomes: unknown[] = []
    const churn = Array.from({ length: 120 }, (_, k) => first + k)
    for (let i = 0; i < churn.length; i += 30) {
      await Promise.all(churn.slice(i, i + 30).map(async (n) => {
        // One body in 20 is over limits.max_mirror_body_bytes: its mirror is dropped.
        const body = JSON.stringify({ x: n, pad: n % 20 === 0 ? 'p'.repeat(400) : '' })
        const res = await fetch(`${r.url}/models/churn/predict`, { method: 'POST', headers: { 'x-user-id': `user-${n}`, 'content-type': 'application/json' }, body })
        await res.arrayBuffer()
        const model = res.headers.get('x-modelsplit-model')
        if (res.status === 200) outcomes.push({ route: 'churn', request_id: res.headers.get('x-request-id'), metric: 'converted', value: (n * 31) % 100 < (model === 'churn-v2' ? 35 : 20) ? 1 : 0 })
      }))
    }
    // A path that could climb out of the model's base path: refused by the router itself.
    expect((await fetch(`${r.url}/models/churn/a%2fb`)).status).toBe(400)
    const fb = await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(outcomes) })
    expect(fb.status, await fb.text()).toBe(200)
    sent.churnOutcomes += outcomes.length
    const bought = Array.from({ length: 40 }, (_, k) => ({ route: 'upsell', model: k % 2 === 0 ? 'up-a' : 'up-b', metric: 'bought', value: k % 2 === 0 ? k % 3 === 0 ? 1 : 0 : k % 5 === 0 ? 1 : 0 }))
    await Promise.all(Array.from({ length: 40 }, async (_, k) => (await fetch(`${r.url}/models/upsell`, { headers: { 'x-user-id': `user-${first + k}` } })).arrayBuffer()))
    expect((await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bought) })).status).toBe(200)
    sent.upsellOutcomes += bought.length
    await new Promise((resolve) => setTimeout(resolve, 1100)) // a scrape between waves
  }

  it('evaluates every expression of the dashboard, with its variables substituted, to data', async () => {
    await wave(0)
    // A refused reload (then the good file back) so the reload panel has a failure to show.
    await r.writeConfig('routes: [')
    expect((await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })).status).toBe(422)
    await r.writeConfig(config)
    await wave(1000)
    // The decisions of this boundary: the rollout holds (too few requests), the bandit reweighs.
    await r.router.decisions.tick(Date.now())
    await wave(2000)
    await wave(3000)
    await r.router.flush()

    // Wait for a scrape after the last wave and an evaluation of the rules after it.
    await vi.waitFor(async () => {
      expect(Number((await prom.query('sum(modelsplit_outcomes_total{metric="converted"})'))[0]?.value[1])).toBe(sent.churnOutcomes)
      expect(Number((await prom.query('sum(modelsplit_outcomes_total{metric="bought"})'))[0]?.value[1])).toBe(sent.upsellOutcomes)
      expect(await prom.query('modelsplit:srm_chi2:increase1h{route="churn"}')).not.toHaveLength(0)
      expect(await prom.query('modelsplit_bandit_probability_best{route="upsell"}')).not.toHaveLength(0)
    }, { timeout: 20_000, interval: 250 })

    const d = await loadDashboard()
    const perRoute: Record<string, Record<string, string>> = {
      churn: { route: 'churn', control: 'churn-v1', metric: 'converted', datasource: 'prometheus' },
      upsell: { route: 'upsell', control: 'up-a', metric: 'bought', datasource: 'prometheus' },
    }
    // The variables' own queries list what a user picks from.
    const vars = new Map(d.templating.list.map((v) => [v.name, v]))
    for (const [name, values] of [['route', ['churn', 'upsell']], ['control', ['churn-v1', 'churn-v2']], ['metric', ['converted']]] as const) {
      const { promql, label } = labelValuesQuery(substitute(variableQuery(vars.get(name) as Variable), perRoute.churn as Record<string, string>))
      const got = (await prom.query(promql)).map((s) => s.metric[label]).sort()
      expect(got, name).toEqual(values)
    }

    const failures: string[] = []
    const results = new Map<string, Sample[]>()
    for (const { panel, target } of targetsOf(d)) {
      // The bandit's panel shows a bandit route; every other one the route with the rollout,
      // shadows, records and outcomes. Each expression must at least parse for both routes.
      const main = target.expr.includes('bandit') ? 'upsell' : 'churn'
      for (const route of ['churn', 'upsell']) {
        const q = substitute(target.expr, perRoute[route] as Record<string, string>)
        let got: Sample[]
        try {
          got = await prom.query(q)
        } catch (err) {
          failures.push(`${panel.title} [${target.refId}] (${route}): ${(err as Error).message}`)
          continue
        }
        if (route !== main) continue
        results.set(`${panel.title}/${target.refId}`, got)
        if (!got.some((s) => Number.isFinite(Number(s.value[1])))) failures.push(`${panel.title} [${target.refId}] (${route}) returned no number: ${q} -> ${JSON.stringify(got)}`)
      }
    }
    expect(failures).toEqual([])

    // A few numbers a person would check on the dashboard.
    const byLabel = (key: string, label: string): Record<string, number> =>
      Object.fromEntries((results.get(key) ?? []).map((s) => [s.metric[label] ?? '', Number(s.value[1])]))
    const errors = byLabel('5xx ratio by model/A', 'model')
    expect(errors['churn-v1']).toBe(0)
    expect(errors['churn-v2']).toBeGreaterThan(0.05)
    const agreement = byLabel('Shadow agreement with the primary/A', 'primary')
    expect(agreement['churn-v1']).toBeGreaterThan(0.3)
    expect(agreement['churn-v1']).toBeLessThan(0.9)
    const lift = byLabel('$metric: lift of each model over $control/A', 'model')
    expect(lift['churn-v1']).toBeCloseTo(0, 12)
    expect(lift['churn-v2']).toBeGreaterThan(0.3)
    expect(byLabel('Rollout state/A', 'state')).toEqual({ running: 1 })
    expect(byLabel('Rollout step: the candidate\'s percent in force/A', 'x')['']).toBe(50)
    const reloads = byLabel('Config reloads and the configs in force/A', 'result')
    expect(Object.keys(reloads).sort()).toEqual(['failure', 'success'])
    expect(byLabel('Records written and dropped per second/A', 'result').written).toBeGreaterThan(0)
  }, 60_000)
})
