// The unit of analysis through a real router: users who send many correlated outcomes must not
// make identical models look different, a real lift must still be found, and the offline report
// must say what /admin/experiments says, also when the effect flips and the weights change.
import { PassThrough } from 'node:stream'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { jsonEcho } from './helpers/upstream.js'
import { router, upstream } from './helpers/servers.js'
import type { RunningRouter } from './helpers/router.js'
import { runCli } from '../src/cli/run.js'
import { Random } from '../src/decisions/random.js'

/** A seeded PRNG (the bandit's), so every run sends the same users and outcomes. */
function prng(seed: number): () => number {
  const r = new Random(seed)
  return () => r.next()
}

async function feedback(r: RunningRouter, outcomes: unknown[]): Promise<void> {
  const res = await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(outcomes) })
  expect(res.status).toBe(200)
  await res.text()
}

interface Comparison { verdict: string; p_value: number | null; p_value_sequential_adjusted: number | null; abs_lift: number | null }
interface Experiment { route: string; unit: string; metrics: Record<string, { comparisons: Record<string, Comparison>; srm: { unit: string; mismatch: boolean } }> }

async function experiments(r: RunningRouter): Promise<Experiment[]> {
  return ((await (await fetch(`${r.adminUrl}/admin/experiments`)).json()) as { routes: Experiment[] }).routes
}

const routeYaml = (name: string, unit: 'user' | 'request'): string => `  - name: ${name}
    path: /${name}
    user_id: [header:x-user-id]
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
    analysis: { unit: ${unit} }
    metrics:
      - { name: clicked, type: binary, mde: 0.05 }
`

/**
 * Outcomes of 300 users on a route, each user with a propensity drawn from Beta(1, 3) (plus `lift`
 * in arm b, judged by the router's own assignment) and 20 binary outcomes fed back by user id.
 */
function outcomesFor(route: string, rnd: () => number, assign: (user: string) => 'a' | 'b', lift = 0): unknown[] {
  const out: unknown[] = []
  for (let u = 0; u < 300; u++) {
    const user = `${route}-user-${u}`
    const p = Math.min(1, 1 - Math.cbrt(rnd()) + (assign(user) === 'b' ? lift : 0))
    for (let k = 0; k < 20; k++) out.push({ route, user_id: user, metric: 'clicked', value: rnd() < p ? 1 : 0 })
  }
  return out
}

describe('the unit of analysis', () => {
  it('on identical models with users who send many outcomes, analysing users keeps verdicts at the allowed rate where analysing requests does not', async () => {
    const m = await upstream(jsonEcho('m'))
    const names = Array.from({ length: 20 }, (_, i) => i)
    const yaml = `models:
  a: { url: "${m.url}" }
  b: { url: "${m.url}" }
routes:
${names.map((i) => routeYaml(`u${i}`, 'user') + routeYaml(`q${i}`, 'request')).join('')}`
    const r = await router(yaml)
    const rnd = prng(17)
    for (const i of names) {
      // The same users and outcomes on both routes of a pair: only the unit of analysis differs.
      const batch = outcomesFor(`u${i}`, rnd, () => 'a')
      await feedback(r, batch)
      await feedback(r, batch.map((o) => ({ ...(o as object), route: `q${i}`, user_id: (o as { user_id: string }).user_id.replace(/^u/, 'q') })))
    }
    const all = await experiments(r)
    const decided = (unit: string): string[] => all.filter((e) => e.unit === unit && ['candidate better', 'candidate worse'].includes(e.metrics.clicked?.comparisons.b?.verdict ?? '')).map((e) => e.route)
    // 20 A/A routes at alpha 0.05 allow about one; the request-level analysis, which ignores that a
    // user's outcomes are correlated (design effect about 6 here), finds "differences" on many.
    expect(decided('user').length).toBeLessThanOrEqual(2)
    expect(decided('request').length).toBeGreaterThanOrEqual(4)
  })

  it('finds a planted lift at the user level', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(`models:
  a: { url: "${a.url}" }
  b: { url: "${b.url}" }
routes:
${routeYaml('lift', 'user')}`)
    const assigned = new Map<string, 'a' | 'b'>()
    for (let u = 0; u < 300; u++) {
      const res = await fetch(`${r.url}/lift/predict`, { method: 'POST', headers: { 'x-user-id': `lift-user-${u}` }, body: '{}' })
      await res.text()
      assigned.set(`lift-user-${u}`, res.headers.get('x-modelsplit-model') as 'a' | 'b')
    }
    await feedback(r, outcomesFor('lift', prng(5), (user) => assigned.get(user) ?? 'a', 0.15))
    const [e] = await experiments(r)
    expect(e?.metrics.clicked?.comparisons.b?.verdict).toBe('candidate better')
    // Every user sent one request, so the check on users sees exactly the split.
    expect(e?.metrics.clicked?.srm).toMatchObject({ unit: 'user', mismatch: false })
  })

  it('modelsplit report equals /admin/experiments field for field when the effect flips half-way and the weights change', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const yaml = (wb: number): string => `recording: { path: ./records.jsonl }
models:
  a: { url: "${a.url}" }
  b: { url: "${b.url}" }
routes:
  - name: flip
    path: /flip
    user_id: [header:x-user-id]
    record: true
    split: [{ model: a, weight: 50 }, { model: b, weight: ${wb} }]
    metrics:
      - { name: clicked, type: binary, mde: 0.05 }
      - { name: revenue, type: continuous, cuped: revenue_pre }
      - { name: revenue_pre, type: continuous, role: covariate }
`
    const r = await router(yaml(50))
    const rnd = prng(99)
    const phase = async (from: number, to: number, better: 'a' | 'b'): Promise<void> => {
      const outcomes: unknown[] = []
      for (let u = from; u < to; u++) {
        const user = `flip-${u}`
        const res = await fetch(`${r.url}/flip/predict`, { method: 'POST', headers: { 'x-user-id': user }, body: '{}' })
        await res.text()
        const model = res.headers.get('x-modelsplit-model')
        const requestId = res.headers.get('x-request-id')
        const base = 10 + 5 * rnd()
        outcomes.push({ route: 'flip', user_id: user, metric: 'revenue_pre', value: base })
        for (let k = 0; k < 8; k++) {
          outcomes.push({ route: 'flip', request_id: requestId, metric: 'clicked', value: rnd() < (model === better ? 0.5 : 0.2) ? 1 : 0 })
          outcomes.push({ route: 'flip', request_id: requestId, metric: 'revenue', value: base + 3 * rnd() })
        }
      }
      await feedback(r, outcomes)
    }
    await phase(0, 300, 'b')
    const early = await experiments(r)
    await r.writeConfig(yaml(150))
    expect((await r.router.reload()).result).toBe('success')
    await phase(300, 900, 'a')
    await r.router.flush()
    const [live] = await experiments(r)
    // The sequential p is a running minimum: the early verdict is not withdrawn by the flip.
    expect(early[0]?.metrics.clicked?.comparisons.b?.verdict).toBe('candidate better')
    expect(live?.metrics.clicked?.comparisons.b?.p_value_sequential_adjusted).toBeLessThan(0.05)
    const out = new PassThrough()
    let text = ''
    out.on('data', (c: Buffer) => { text += c.toString() })
    const code = await runCli(['report', '--json', '--config', r.configFile, join(dirname(r.configFile), 'records.jsonl')], { out, err: new PassThrough() })
    expect(code).toBe(0)
    const { scope: _scope, ...liveStats } = live as Experiment & { scope?: string }
    expect((JSON.parse(text) as { experiments: unknown[] }).experiments[0]).toEqual(liveStats)
  })
})
