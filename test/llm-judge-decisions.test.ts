// The judge's verdicts deciding: a shadow promoted on its judged win rate, a rollout step held
// until the candidate's win rate is shown and rolled back when the judge prefers the control, all
// in a real router with fake OpenAI-compatible models and a fake judge that reads its prompt.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { sumShadows } from '../src/cli/cluster-admin.js'
import { compile } from '../src/plan/index.js'
import { startRouter, type RunningRouter } from './helpers/router.js'
import { fakeJudge, startFakeOpenAi } from './helpers/openai.js'
import { prometheusBin, startPrometheus } from './helpers/prometheus.js'
import { closedPort, startUpstream } from './helpers/upstream.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

const CONTROL_TEXT = 'Paris is the capital of France.'
const CANDIDATE_TEXT = 'The capital of France is Paris, on the Seine.'

/** A judge model that prefers the candidate's answer (or the control's), wherever it was placed. */
function judgePrefers(side: 'candidate' | 'control') {
  return fakeJudge((a) => (side === 'candidate') === a.includes(CANDIDATE_TEXT) ? 'A' : 'B', 100)
}

interface ModelUrls { readonly control: string; readonly candidate: string; readonly judge: string }

async function models(side: 'candidate' | 'control'): Promise<ModelUrls> {
  const control = await startFakeOpenAi(() => ({ tokens: [CONTROL_TEXT], promptTokens: 5 }))
  const candidate = await startFakeOpenAi(() => ({ tokens: [CANDIDATE_TEXT], promptTokens: 5 }))
  const judge = await startUpstream(judgePrefers(side))
  open.push(control, candidate, judge)
  return { control: control.url, candidate: candidate.url, judge: `${judge.url}/v1` }
}

async function ask(router: RunningRouter, user: string): Promise<void> {
  const res = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', stream: true, user, messages: [{ role: 'user', content: `capital of France? (${user})` }] }),
  })
  expect(res.status).toBe(200)
  await res.text()
}

/** Sends one request per user, then waits until the judge has given a verdict on every mirrored pair. */
async function traffic(router: RunningRouter, users: number): Promise<{ wins: number; ties: number; losses: number }> {
  for (let i = 0; i < users; i++) await ask(router, `user-${i}`)
  await router.router.flush()
  let judged = { wins: 0, ties: 0, losses: 0 }
  await vi.waitFor(() => {
    const pair = router.router.shadowCounts()[0]?.pairs.find((p) => p.shadow === 'candidate-model')
    judged = pair?.judged ?? judged
    expect(judged.wins + judged.ties + judged.losses).toBe((pair?.agree ?? -1) + (pair?.disagree ?? 0) + (pair?.error ?? 0))
  }, { timeout: 15_000, interval: 20 })
  return judged
}

interface Status { state: string; candidate: string; percent: number; step_started_at: string; decisions: { kind: string; result: string; reason: string; inputs?: unknown }[] }
const status = async (r: RunningRouter): Promise<Status> => (await fetch(`${r.adminUrl}/admin/rollouts/chat`)).json() as Promise<Status>

const modelsYaml = (u: ModelUrls, evaluation = 'evaluation: { interval: 1h }'): string => `${evaluation}
models:
  control-model: { url: "${u.control}" }
  other-model: { url: "${u.control}" }
  candidate-model: { url: "${u.candidate}" }
  judge-model: { url: "${u.judge}", timeout_ms: 5000 }
`

/** A route whose shadow is promoted on the judge's win rate once the first rollout is done. */
const PROMOTE_ROUTE = `routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: control-model, weight: 100 }, { model: other-model, weight: 0 }, { model: candidate-model, weight: 0 }]
    rollout: { candidate: other-model, steps: [50, 100], step_interval: 1s, min_requests: 5, gates: { max_p99_latency_ratio: null } }
    shadow: [{ model: candidate-model, promote_when: { min_compared: 1, min_agreement: 0, min_win_rate: 0.6, min_judged: 10 } }]
    judge: { model: judge-model }
`

/** A route rolling the shadowed candidate out behind the gates given. */
const gateRoute = (gates: string): string => `routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: control-model, weight: 100 }, { model: candidate-model, weight: 0 }]
    rollout: { candidate: candidate-model, steps: [50, 100], step_interval: 1s, min_requests: 1, gates: { max_p99_latency_ratio: null, ${gates} } }
    shadow: [{ model: candidate-model }]
    judge: { model: judge-model }
`

/** A router on `yaml`, closed after the test. */
async function router(yaml: string): Promise<RunningRouter> {
  const r = await startRouter(yaml)
  open.push(r)
  return r
}

/** Aborts the first rollout of PROMOTE_ROUTE: the shadow's promotion is what is left to decide. */
async function abort(r: RunningRouter): Promise<void> {
  expect((await r.router.decisions.act('chat', 'abort')).ok).toBe(true)
}

/** A router on PROMOTE_ROUTE with its first rollout aborted. */
async function awaitingPromotion(yaml: string): Promise<RunningRouter> {
  const r = await router(yaml)
  await abort(r)
  return r
}

/** When the rollout's current step started (ms): the boundary one step later judges it. */
const stepStart = async (r: RunningRouter): Promise<number> => Date.parse((await status(r)).step_started_at)

/** Takes the router's decisions as of `boundary` (ms) and reads the route's status after them. */
async function decideAt(r: RunningRouter, boundary: number): Promise<Status> {
  await r.router.decisions.tick(boundary)
  return status(r)
}

describe('the judge\'s win rate in promote_when', () => {
  it('promotes a shadow the judge prefers once min_judged verdicts show a win rate whose lower bound clears min_win_rate', async () => {
    const r = await awaitingPromotion(modelsYaml(await models('candidate')) + PROMOTE_ROUTE)
    // Too few verdicts: the shadow waits, and the decision says for what.
    expect(await traffic(r, 6)).toEqual({ wins: 6, ties: 0, losses: 0 })
    let s = await decideAt(r, 7_200_000)
    expect(s).toMatchObject({ candidate: 'other-model', state: 'rolled_back' })
    expect(s.decisions.at(-1)?.reason).toContain('candidate-model: 6 of 10 judged pairs decided (6 wins, 0 ties, 0 losses)')
    // 12 wins of 12: Wilson 95 % lower bound 1 / (1 + 1.96² / 12) = 75.75 % ≥ 60 %.
    expect(await traffic(r, 6)).toEqual({ wins: 12, ties: 0, losses: 0 })
    s = await decideAt(r, 10_800_000)
    expect(s).toMatchObject({ candidate: 'candidate-model', state: 'running' })
    expect(s.decisions.at(-1)).toMatchObject({ kind: 'promotion', result: 'start_rollout' })
    expect(s.decisions.at(-1)?.reason).toContain('judged win rate 100.00% (12 wins, 0 ties, 0 losses), 95% lower bound 75.75% ≥ 60.00%')
    // /admin/shadows shows the same verdicts with their interval and p-values.
    const shadows = await (await fetch(`${r.adminUrl}/admin/shadows`)).json() as { routes: { pairs: { shadow: string; judged?: Record<string, unknown> }[] }[] }
    const judged = shadows.routes[0]?.pairs.find((p) => p.shadow === 'candidate-model')?.judged
    expect(judged).toMatchObject({ wins: 12, ties: 0, losses: 0, decided: 12 })
    expect((judged?.ci as number[])[0]).toBeCloseTo(1 / (1 + 1.959963984540054 ** 2 / 12), 9)
  })

  it('never promotes a shadow the judge prefers the control to, whatever its agreement', async () => {
    const r = await awaitingPromotion(modelsYaml(await models('control')) + PROMOTE_ROUTE)
    expect(await traffic(r, 12)).toEqual({ wins: 0, ties: 0, losses: 12 })
    const s = await decideAt(r, 7_200_000)
    expect(s).toMatchObject({ candidate: 'other-model', state: 'rolled_back' })
    expect(s.decisions.at(-1)?.reason).toContain('candidate-model: judged win rate 0.00% (0 wins, 0 ties, 12 losses), 95% lower bound 0.00% < 60.00%')
  })
})

describe('the judge\'s win rate as a rollout gate', () => {
  it('holds the step until the candidate\'s judged win rate is shown, then steps up', async () => {
    const r = await router(modelsYaml(await models('candidate')) + gateRoute('min_win_rate: 0.6, min_judged: 10'))
    // 8 users: only the control's are mirrored and judged, so fewer than 10 verdicts; the step holds.
    const first = await traffic(r, 8)
    expect(first.wins).toBeLessThan(10)
    const start = await stepStart(r)
    let s = await decideAt(r, start + 1000)
    expect(s).toMatchObject({ state: 'running', percent: 50 })
    expect(s.decisions.at(-1)?.reason).toContain(`holding at 50%: candidate-model: ${first.wins} of 10 judged pairs decided`)
    expect((await traffic(r, 40)).wins).toBeGreaterThanOrEqual(10)
    s = await decideAt(r, start + 2000)
    expect(s).toMatchObject({ state: 'running', percent: 100 })
    expect(s.decisions.at(-1)).toMatchObject({ result: 'advance' })
    // The decision names the verdicts it read, in its reason and its inputs.
    const judged = r.router.shadowCounts()[0]?.pairs.find((p) => p.shadow === 'candidate-model')?.judged
    expect(s.decisions.at(-1)?.inputs).toMatchObject({ judged })
    expect(s.decisions.at(-1)?.reason).toContain(`judged win rate 100.00% (${judged?.wins} wins, 0 ties, 0 losses)`)
  })

  it('with judge_guardrail, rolls back a candidate the judge significantly prefers the control to', async () => {
    const r = await router(modelsYaml(await models('control')) + gateRoute('judge_guardrail: true'))
    // Losses only: the sequential p is 2^-l · (l + 1), under 0.05 from 8 losses on.
    const judged = await traffic(r, 40)
    expect(judged.losses).toBeGreaterThanOrEqual(8)
    const start = await stepStart(r)
    const s = await decideAt(r, start + 1000)
    expect(s).toMatchObject({ state: 'rolled_back' })
    const p = (judged.losses + 1) / 2 ** judged.losses
    expect(s.decisions.at(-1)?.reason).toContain(`the judge prefers the control significantly (0 wins, 0 ties, ${judged.losses} losses; sequential p = ${p.toPrecision(3)} < 0.05)`)
  })
})

describe('serve --workers: the judge\'s verdicts summed', () => {
  it('adds every worker\'s wins, ties and losses per pair, as the comparisons', () => {
    const pair = (agree: number, judged?: { wins: number; ties: number; losses: number }) => ({ primary: 'a', shadow: 'b', agree, disagree: 0, error: 0, ...(judged !== undefined ? { judged } : {}) })
    const sum = sumShadows([
      [{ route: 'chat', pairs: [pair(1, { wins: 3, ties: 1, losses: 2 })] }],
      [{ route: 'chat', pairs: [pair(2)] }],
      [{ route: 'chat', pairs: [pair(4, { wins: 10, ties: 0, losses: 5 })] }],
    ])
    expect(sum).toEqual([{ route: 'chat', pairs: [{ ...pair(7), judged: { wins: 13, ties: 1, losses: 7 } }] }])
  })
})

describe('the win-rate keys\' validation', () => {
  const base = (route: string) => `models:
  v1: { url: "http://127.0.0.1:9001/v1" }
  v2: { url: "http://127.0.0.1:9002/v1" }
  judge-model: { url: "http://127.0.0.1:9003/v1" }
routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
${route}`
  const problemsOf = (text: string) => {
    const r = compile(text, 'router.yaml')
    return r.ok ? [] : r.problems.map((p) => ({ line: p.line, path: p.path, message: p.message }))
  }

  it('accepts the keys on a route with a judge that mirrors the candidate, with their defaults', () => {
    const r = compile(base(`    rollout: { candidate: v2, steps: [50, 100], gates: { min_win_rate: 0.45, judge_guardrail: true } }
    shadow: [{ model: v2 }]
    judge: { model: judge-model }
`), 'router.yaml')
    expect(r.ok ? [] : r.problems).toEqual([])
    if (r.ok) expect(r.plan.config.routes[0]?.rollout?.gates).toMatchObject({ min_win_rate: 0.45, min_judged: 100, judge_guardrail: true })
  })

  it.each([
    ['a win-rate gate without a judge', '    rollout: { candidate: v2, steps: [50, 100], gates: { min_win_rate: 0.5 } }\n    shadow: [{ model: v2 }]\n', 10, 'routes[0].rollout.gates.min_win_rate', /reads the judge's verdicts: add judge: \{ model: \.\.\. \}/],
    ['judge_guardrail on a candidate that is no shadow', '    rollout: { candidate: v2, steps: [50, 100], gates: { judge_guardrail: true } }\n    judge: { model: judge-model }\n', 10, 'routes[0].rollout.gates.judge_guardrail', /only a shadow gets: add shadow: \[\{ model: v2 \}\]/],
    ['a win rate over 1', '    rollout: { candidate: v2, steps: [50, 100], gates: { min_win_rate: 1.5 } }\n', 10, 'routes[0].rollout.gates.min_win_rate', /1/],
    ['min_judged not a whole number', '    rollout: { candidate: v2, steps: [50, 100] }\n    shadow: [{ model: v2, promote_when: { min_win_rate: 0.5, min_judged: 2.5 } }]\n    judge: { model: judge-model }\n', 11, 'routes[0].shadow[0].promote_when.min_judged', /integer|whole/],
    ['promote_when.min_win_rate without a judge', '    rollout: { candidate: v2, steps: [50, 100] }\n    shadow: [{ model: v2, promote_when: { min_win_rate: 0.5 } }]\n', 11, 'routes[0].shadow[0].promote_when.min_win_rate', /reads the judge's verdicts/],
  ])('names %s with its line and key path', (_name, route, line, path, message) => {
    expect(problemsOf(base(route))).toContainEqual({ line, path, message: expect.stringMatching(message) })
  })
})

describe.skipIf(prometheusBin === '')('the fleet\'s verdicts, through Prometheus', () => {
  it('promotes on the verdicts of every replica summed, which neither replica has alone', async () => {
    const u = await models('candidate')
    const port = await closedPort()
    const promUrl = `http://127.0.0.1:${port}`
    const yaml = modelsYaml(u, `evaluation:\n  interval: 1h\n  prometheus: { url: "${promUrl}", scrape_interval: 1s, lookback: 1h }`) + PROMOTE_ROUTE
    const replicas = [await router(yaml), await router(yaml)]
    const prom = await startPrometheus(replicas.map((r) => new URL(r.adminUrl).host), [], port)
    open.push(prom)
    for (const r of replicas) await abort(r)
    // 6 verdicts on each replica: short of min_judged 10 alone, 12 together.
    for (const r of replicas) expect(await traffic(r, 6)).toEqual({ wins: 6, ties: 0, losses: 0 })
    const wins = async (): Promise<number> => {
      const res = await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(modelsplit_llm_judge_verdicts_total{route="chat",verdict="win"})')}`)).json() as { data: { result: { value: [number, string] }[] } }
      return Number(res.data.result[0]?.value[1] ?? 0)
    }
    await vi.waitFor(async () => expect(await wins()).toBe(12), { timeout: 20_000, interval: 200 })
    const first = replicas[0] as RunningRouter
    const s = await decideAt(first, Date.now())
    expect(s).toMatchObject({ candidate: 'candidate-model', state: 'running' })
    expect(s.decisions.at(-1)?.reason).toContain('judged win rate 100.00% (12 wins, 0 ties, 0 losses), 95% lower bound 75.75% ≥ 60.00%')
  }, 60_000)
})
