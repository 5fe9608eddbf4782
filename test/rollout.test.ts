// Rollouts in a running router: the decided weights are the weights in force, each decision is a
// record and a metric, operators can pause and abort, and a restart resumes where it was.
import { readFile, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { jsonEcho } from './helpers/upstream.js'
import { runCli } from '../src/cli/run.js'

// The scheduler's interval is long: these tests take each decision themselves (tick), at the
// boundary they choose, so nothing depends on the wall clock.
const config = (v1: string, v2: string, extra = '') => `evaluation: { interval: 1h }
recording: { path: ./records.jsonl }
models:
  v1: { url: "${v1}" }
  v2: { url: "${v2}" }
routes:
  - name: churn
    path: /churn
    record: true
    split:
      - { model: v1, weight: 100 }
      - { model: v2, weight: 0 }
    rollout:
      candidate: v2
      steps: [10, 50, 100]
      step_interval: 1s
      min_requests: 20
      gates: { max_error_rate_increase: 0.01, max_p99_latency_ratio: 100 }
${extra}`

interface Status { state: string; percent: number; step_started_at: string; effective_shares: Record<string, number>; decisions: { kind: string; result: string; reason: string }[] }
const status = async (r: RunningRouter): Promise<Status> => (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json() as Promise<Status>

/** Sends one request per user and counts who answered. */
async function traffic(r: RunningRouter, users: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {}
  await Promise.all(Array.from({ length: users }, async (_, i) => {
    const res = await fetch(`${r.url}/churn`, { headers: { 'x-user-id': `user-${i}` } })
    const m = res.headers.get('x-modelsplit-model') ?? '?'
    seen[m] = (seen[m] ?? 0) + 1
  }))
  return seen
}

/** Takes the decision due one step interval after the current step began. */
async function nextBoundary(r: RunningRouter): Promise<Status> {
  const s = await status(r)
  await r.router.decisions.tick(Date.parse(s.step_started_at) + 1000)
  return status(r)
}

describe('progressive rollout in the router', () => {
  it('walks a healthy candidate from 10% to 100%, moving users only into it, and promotes it', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const r = await router(config(v1.url, v2.url))
    expect(await status(r)).toMatchObject({ state: 'running', percent: 10, effective_shares: { v1: 0.9, v2: 0.1 } })
    const inCanary = new Set<number>()
    let before = await traffic(r, 400)
    expect(before.v2).toBeGreaterThan(20)
    for (const expected of [50, 100]) {
      const users = await Promise.all(Array.from({ length: 400 }, async (_, i) => (await fetch(`${r.url}/churn`, { headers: { 'x-user-id': `user-${i}` } })).headers.get('x-modelsplit-model')))
      users.forEach((m, i) => { if (m === 'v2') inCanary.add(i) })
      const s = await nextBoundary(r)
      expect(s).toMatchObject({ state: 'running', percent: expected })
      const after = await Promise.all(Array.from({ length: 400 }, async (_, i) => (await fetch(`${r.url}/churn`, { headers: { 'x-user-id': `user-${i}` } })).headers.get('x-modelsplit-model')))
      // A step up only moves users into the candidate.
      for (const i of inCanary) expect(after[i]).toBe('v2')
      before = await traffic(r, 400)
    }
    const done = await nextBoundary(r)
    expect(done.state).toBe('promoted')
    expect(await traffic(r, 100)).toEqual({ v2: 100 })
    expect(done.decisions.map((d) => d.result)).toEqual(['start', 'advance', 'advance', 'promote'])
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_rollout_state{route="churn",state="promoted"}')).toBe(1)
    expect(m.get('modelsplit_rollout_step{route="churn"}')).toBe(100)
    expect(m.get('modelsplit_split_weight{route="churn",model="v2"}')).toBe(1)
    expect(m.get('modelsplit_decisions_total{route="churn",kind="rollout",result="advance"}')).toBe(2)
    await r.router.flush()
    const records = (await readFile(join(dirname(r.configFile), 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; result?: string; reason?: string })
    expect(records.filter((x) => x.type === 'decision').map((x) => x.result)).toEqual(['start', 'advance', 'advance', 'promote'])
    // /admin/config shows the intent; the rollout, what is in force.
    const cfg = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { config: { routes: { split: { weight: number }[] }[] } }
    expect(cfg.config.routes[0]?.split.map((s) => s.weight)).toEqual([100, 0])
  })

  it('rolls a candidate with errors back at the first judged step, naming the gate', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2', 500))
    const r = await router(config(v1.url, v2.url))
    await traffic(r, 400)
    const s = await nextBoundary(r)
    expect(s.state).toBe('rolled_back')
    expect(s.decisions.at(-1)?.reason).toMatch(/error rate 100\.00% vs control 0\.00%/)
    expect(await traffic(r, 100)).toEqual({ v1: 100 })
  })

  it('writes no decision state for a config without decisions', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const r = await router(`models: { v1: { url: "${v1.url}" } }
routes: [{ name: plain, path: /p, split: [{ model: v1, weight: 1 }] }]
`)
    await r.router.decisions.tick(Date.now())
    // Not even the directory of the default recording.path (./data), next to the config.
    expect(await readdir(dirname(r.configFile))).toEqual(['router.yaml'])
  })

  it('says 100% once an operator promotes the candidate from its first step', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const r = await router(config(v1.url, v2.url))
    expect((await fetch(`${r.adminUrl}/admin/rollouts/churn/promote`, { method: 'POST' })).status).toBe(200)
    expect(await status(r)).toMatchObject({ state: 'promoted', percent: 100, effective_shares: { v1: 0, v2: 1 } })
  })

  it('judges a step by what happened on it, even when the plan was rebound at its start', async () => {
    // The control fails its first 5 requests, then never again: those errors belong to the first
    // step. The second step starts with a rebind (new weights); its window must not subtract them
    // from a list of status codes the new arms have not seen yet (which made the control's error
    // rate negative and rolled a healthy candidate back).
    let served = 0
    const v1 = await upstream((_req, res) => {
      const status = ++served <= 5 ? 500 : 200
      const body = JSON.stringify({ predictions: ['v1'] })
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
    const v2 = await upstream(jsonEcho('v2'))
    const r = await router(config(v1.url, v2.url))
    await traffic(r, 400)
    expect(await nextBoundary(r)).toMatchObject({ state: 'running', percent: 50 })
    await traffic(r, 400)
    const s = await nextBoundary(r)
    expect(s.decisions.at(-1)?.reason).not.toMatch(/gate failed/)
    expect(s).toMatchObject({ state: 'running', percent: 100 })
  })

  it('holds with too few requests, and lets an operator pause, resume and abort', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const r = await router(config(v1.url, v2.url))
    expect(await nextBoundary(r)).toMatchObject({ state: 'running', percent: 10 })
    const post = (action: string) => fetch(`${r.adminUrl}/admin/rollouts/churn/${action}`, { method: 'POST' })
    expect((await post('pause')).status).toBe(200)
    expect((await status(r)).state).toBe('paused')
    await traffic(r, 400)
    expect(await nextBoundary(r)).toMatchObject({ state: 'paused', percent: 10 })
    const conflict = await post('pause')
    expect(conflict.status).toBe(409)
    expect(await conflict.json()).toMatchObject({ code: 'MS_ROLLOUT_CONFLICT' })
    expect((await post('resume')).status).toBe(200)
    expect((await post('abort')).status).toBe(200)
    // percent is what is in force: none of the users once rolled back, whatever step it was on.
    expect(await status(r)).toMatchObject({ state: 'rolled_back', percent: 0, effective_shares: { v1: 1, v2: 0 } })
    expect((await post('dance')).status).toBe(400)
    // The CLI goes through the same API.
    const out: string[] = []
    const err: string[] = []
    const io = { out: { write: (x: string) => out.push(x) }, err: { write: (x: string) => err.push(x) } } as never
    expect(await runCli(['rollout', 'status', 'churn', '--admin', r.adminUrl], io)).toBe(0)
    expect(out.join('')).toMatch(/^churn: rollout of v2 against v1: rolled_back at 0% \(step 1 of 3\)/)
    expect(out.join('')).toContain('operator abort: abort by an operator')
    expect(await runCli(['rollout', 'pause', 'churn', '--admin', r.adminUrl], io)).toBe(1)
    expect(err.join('')).toContain('409 MS_ROLLOUT_CONFLICT: the rollout is rolled_back; only a running one can be paused')
    expect((await fetch(`${r.adminUrl}/admin/rollouts/nope`)).status).toBe(404)
  })

  it('resumes at the step it was on after a restart, and starts over when the rollout block changes', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const first = await startRouter(config(v1.url, v2.url))
    await traffic(first, 400)
    expect((await nextBoundary(first)).percent).toBe(50)
    // Same directory, same state file: a new process.
    await first.router.close()
    const { buildServer } = await import('../src/server.js')
    const again = await buildServer({ configFile: first.configFile, watch: false, defaultMetrics: false })
    const urls = await again.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0 })
    try {
      const s = await (await fetch(`${urls.adminUrl}/admin/rollouts/churn`)).json() as Status
      expect(s).toMatchObject({ state: 'running', percent: 50 })
      await first.writeConfig(config(v1.url, v2.url).replace('steps: [10, 50, 100]', 'steps: [20, 100]'))
      expect((await again.reload()).result).toBe('success')
      expect(await (await fetch(`${urls.adminUrl}/admin/rollouts/churn`)).json()).toMatchObject({ state: 'running', percent: 20 })
    } finally {
      await again.close()
      await first.close()
    }
  })
})

describe('bandit and shadow promotion in the router', () => {
  it('moves traffic to the arm that converts more, keeping min_share on the other, and stops on stop_when', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(`evaluation: { interval: 1h }
recording: { path: ./records.jsonl }
models:
  a: { url: "${a.url}" }
  b: { url: "${b.url}" }
routes:
  - name: churn
    path: /churn
    metrics: [{ name: converted, type: binary }]
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
    bandit: { metric: converted, min_share: 0.1, stop_when: { probability_best: 0.99, max_expected_loss: 0.01 } }
`)
    const shares = async () => ((await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json()) as { effective_shares: Record<string, number>; bandit?: { winner: string | null } })
    let boundary = 3_600_000
    let user = 0
    for (let round = 0; round < 6; round++) {
      // 300 users; b converts 40%, a 10% (deterministic by user number).
      const outcomes: string[] = []
      await Promise.all(Array.from({ length: 300 }, async () => {
        const id = `u${user++}`
        const res = await fetch(`${r.url}/churn`, { headers: { 'x-user-id': id } })
        const model = res.headers.get('x-modelsplit-model') as string
        const n = Number(id.slice(1))
        outcomes.push(JSON.stringify({ route: 'churn', model, metric: 'converted', value: (model === 'b' ? n % 10 < 4 : n % 10 < 1) ? 1 : 0 }))
      }))
      expect((await fetch(`${r.url}/feedback`, { method: 'POST', body: outcomes.join('\n') })).status).toBe(200)
      await r.router.decisions.tick(boundary += 3_600_000)
      const s = await shares()
      if (s.bandit?.winner == null) expect(s.effective_shares.a).toBeGreaterThanOrEqual(0.1 - 1e-9)
    }
    const last = await shares()
    expect(last.bandit?.winner).toBe('b')
    expect(last.effective_shares).toEqual({ a: 0, b: 1 })
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_bandit_probability_best{route="churn",model="b"}')).toBeGreaterThan(0.99)
  })

  it('starts a rollout of a shadow that agrees with the control once the first rollout is done, and not of one that disagrees', async () => {
    const v1 = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"predictions":[1]}') })
    const good = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"predictions":[1]}') })
    const bad = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"predictions":[2]}') })
    const yaml = (shadow: string) => `evaluation: { interval: 1h }
models:
  v1: { url: "${v1.url}" }
  v2: { url: "${v1.url}" }
  v3: { url: "${shadow}" }
routes:
  - name: churn
    path: /churn
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }, { model: v3, weight: 0 }]
    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 5, gates: { max_p99_latency_ratio: null } }
    shadow: [{ model: v3, promote_when: { min_compared: 100, min_agreement: 0.9 } }]
`
    for (const [shadow, promoted] of [[good.url, true], [bad.url, false]] as const) {
      const r = await router(yaml(shadow))
      expect((await r.router.decisions.act('churn', 'abort')).ok).toBe(true)
      // Users on v1 are mirrored to v3 and compared.
      await Promise.all(Array.from({ length: 200 }, (_, i) => fetch(`${r.url}/churn`, { headers: { 'x-user-id': `u${i}` } }).then((x) => x.text())))
      await r.router.flush()
      await r.router.decisions.tick(7_200_000)
      const s = await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json() as { candidate: string; state: string; decisions: { kind: string; reason: string }[] }
      if (promoted) {
        expect(s).toMatchObject({ candidate: 'v3', state: 'running' })
        expect(s.decisions.at(-1)).toMatchObject({ kind: 'promotion' })
        expect(s.decisions.at(-1)?.reason).toMatch(/v3: 200 comparisons, agreement lower bound 9\d\.\d\d% ≥ 90\.00%/)
      } else {
        expect(s).toMatchObject({ candidate: 'v2', state: 'rolled_back' })
      }
      await r.close()
    }
  })
})
