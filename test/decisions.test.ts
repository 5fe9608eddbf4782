// The decision core without a clock or a transport: rollouts, the bandit and shadow promotion are
// pure functions of the config, the state and the data as of a boundary.
import { describe, expect, it } from 'vitest'
import type { BanditConfig, RolloutConfig } from '../src/config/decisions.js'
import { floorShares, thompson } from '../src/decisions/bandit.js'
import { counterIncrease } from '../src/decisions/counters.js'
import { bucketQuantile } from '../src/decisions/histogram.js'
import { checkPromotion } from '../src/decisions/promotion.js'
import { Random } from '../src/decisions/random.js'
import { applyAction, decideRollout, isAhead, rolloutWeights, startRollout, stepOf, type ArmWindow, type RolloutInputs, type RolloutState, type RolloutStatus } from '../src/decisions/rollout.js'
import { Accumulator } from '../src/stats/index.js'

const CFG: RolloutConfig = {
  candidate: 'v2', steps: [1, 5, 10, 25, 50, 100], step_interval_ms: 600_000, min_requests: 1000,
  gates: { max_error_rate_increase: 0.005, max_p99_latency_ratio: 1.25, guardrails: ['converted'], min_win_rate: null, min_judged: 100, judge_guardrail: false }, on_failure: 'rollback', promote: true,
}
const SPLIT = [{ model: 'v1', weight: 100 }, { model: 'v2', weight: 0 }]
const arm = (requests: number, errors: number, p99: number): ArmWindow => ({ requests, errors, p99 })
const healthy = (): RolloutInputs => ({ control: arm(5000, 10, 0.05), candidate: arm(5000, 12, 0.052), guardrails: [{ metric: 'converted', p: 0.6, worse: false }], missing: null })

/** Runs decisions at every interval boundary from t0 with the same data until a terminal state or n boundaries. */
function walk(cfg: RolloutConfig, data: (s: RolloutState) => RolloutInputs, n: number, interval = 60_000) {
  let state = startRollout(cfg, 'def', 'v1', 0)
  const trail: { t: number; result: string; percent: number; reason: string }[] = []
  for (let t = interval; t <= n * interval; t += interval) {
    const d = decideRollout(cfg, state, data(state), t)
    state = d.state
    trail.push({ t, result: d.result, percent: rolloutWeights(SPLIT, cfg, state)[1] as number, reason: d.reason })
    if (state.status === 'promoted' || state.status === 'rolled_back') break
  }
  return { state, trail }
}

describe('a counter\'s growth over a window, across restarts', () => {
  it.each([
    ['no restart: the last value minus the start', 100, [110, 130, 160], 60],
    ['a series born inside the window counts its first sample', undefined, [5, 9], 9],
    ['a restart counts from zero: growth before it, then all of the new value', 100, [120, 3, 10], 30],
    ['a replica that died inside the window keeps what it served', 100, [140], 40],
    ['two restarts', 50, [60, 2, 7, 1, 4], 10 + 2 + 5 + 1 + 3],
    ['nothing after the start', 100, [], 0],
  ])('%s', (_name, start, samples, growth) => {
    expect(counterIncrease(start, samples)).toBe(growth)
  })
})

describe('which replica\'s rollout is the fleet\'s', () => {
  const mine = (status: RolloutStatus, stepStartedAt: number): RolloutState => ({ ...startRollout(CFG, 'def', 'v1', stepStartedAt), status })
  it.each([
    ['a later step start (an advance, a resume, a new candidate)', 'running', 120, 'paused', 60, true],
    ['an earlier step start, whatever its status', 'promoted', 60, 'running', 120, false],
    ['the same step, paused there', 'paused', 60, 'running', 60, true],
    ['the same step, rolled back there', 'rolled_back', 60, 'holding', 60, true],
    ['the same step, promoted after a pause', 'promoted', 60, 'paused', 60, true],
    ['the same step and status', 'running', 60, 'running', 60, false],
    ['the same step, running against holding (the same progress)', 'running', 60, 'holding', 60, false],
    ['the same step, running where this one paused', 'running', 60, 'paused', 60, false],
  ] as const)('%s', (_name, status, at, myStatus, myAt, ahead) => {
    expect(isAhead({ status, stepStartedAt: at }, mine(myStatus, myAt))).toBe(ahead)
  })

  it('reads the step from the share in force, which is a fraction', () => {
    expect([0, 1, 19.999999999, 20.000000000000004, 60, 100].map((p) => stepOf([1, 20, 60, 100], p))).toEqual([0, 0, 1, 1, 2, 3])
  })
})

describe('progressive rollout', () => {
  it('walks a healthy candidate through every step, each held step_interval, and promotes it at 100%', () => {
    const { state, trail } = walk(CFG, healthy, 100)
    expect(state.status).toBe('promoted')
    const advances = trail.filter((x) => x.result === 'advance')
    expect(advances.map((x) => x.percent)).toEqual([5, 10, 25, 50, 100])
    // Each step lasts the step interval: 10 boundaries of 1 minute.
    expect(advances.map((x) => x.t)).toEqual([600_000, 1_200_000, 1_800_000, 2_400_000, 3_000_000])
    expect(trail.at(-1)).toMatchObject({ result: 'promote', percent: 100, t: 3_600_000 })
    expect(rolloutWeights(SPLIT, CFG, state)).toEqual([0, 100])
    // The reason says the candidate is the control now, and so does the state.
    expect(state.control).toBe('v2')
  })

  it('rolls back at the first judged step when the candidate has +2% errors, naming the gate and its numbers', () => {
    const { state, trail } = walk(CFG, () => ({ ...healthy(), candidate: arm(5000, 110, 0.05) }), 100)
    expect(state.status).toBe('rolled_back')
    expect(trail).toHaveLength(1)
    expect(trail[0]?.reason).toMatch(/error rate 2\.20% vs control 0\.20%: \+2\.00% > max_error_rate_increase 0\.50%/)
    expect(rolloutWeights(SPLIT, CFG, state)).toEqual([100, 0])
  })

  it('rolls back on a p99 regression, and on a guardrail that is truly worse', () => {
    expect(walk(CFG, () => ({ ...healthy(), candidate: arm(5000, 10, 0.09) }), 100).trail[0]?.reason).toMatch(/p99 90\.0 ms vs control 50\.0 ms: ×1\.80 > max_p99_latency_ratio 1\.25/)
    const worse = walk(CFG, () => ({ ...healthy(), guardrails: [{ metric: 'converted', p: 0.001, worse: true }] }), 100)
    expect(worse.state.status).toBe('rolled_back')
    expect(worse.trail[0]?.reason).toMatch(/guardrail converted is significantly worse/)
    // Significantly *better* on a guardrail is no failure.
    expect(walk(CFG, () => ({ ...healthy(), guardrails: [{ metric: 'converted', p: 0.001, worse: false }] }), 100).state.status).toBe('promoted')
  })

  it('holds without moving while data is missing or short of min_requests, then goes on', () => {
    let missing = true
    const { trail } = walk(CFG, () => (missing ? { ...healthy(), missing: 'Prometheus unreachable (ECONNREFUSED)' } : healthy()), 12)
    expect(trail.slice(0, 12).every((x) => x.result === 'hold' && x.percent === 1)).toBe(true)
    expect(trail[0]?.reason).toContain('Prometheus unreachable')
    missing = false
    const few = walk(CFG, () => ({ ...healthy(), candidate: arm(40, 30, 1) }), 30)
    expect(few.state).toMatchObject({ status: 'running', step: 0 })
    expect(few.trail.every((x) => x.result === 'hold')).toBe(true)
    expect(few.trail[0]?.reason).toContain('candidate 40/1000')
  })

  it('pauses instead of rolling back with on_failure: pause, and holds while paused', () => {
    const cfg = { ...CFG, on_failure: 'pause' as const }
    const s0 = startRollout(cfg, 'def', 'v1', 0)
    const d = decideRollout(cfg, s0, { ...healthy(), candidate: arm(5000, 500, 0.05) }, 60_000)
    expect(d).toMatchObject({ result: 'pause', state: { status: 'paused', pausedBy: 'gate', step: 0 } })
    expect(decideRollout(cfg, d.state, healthy(), 10_000_000)).toMatchObject({ result: 'hold', state: { status: 'paused' } })
  })

  it('only moves users into the candidate on a step up and out of it on a rollback', () => {
    const split = [{ model: 'v1', weight: 70 }, { model: 'v2', weight: 0 }, { model: 'v0', weight: 30 }]
    const at = (step: number, status: RolloutState['status'] = 'running') => rolloutWeights(split, CFG, { ...startRollout(CFG, 'd', 'v1', 0), step, status })
    expect(at(0)).toEqual([69.3, 1, 29.7])
    for (let s = 1; s < CFG.steps.length; s++) {
      const [prev, next] = [at(s - 1), at(s)]
      expect(next[1]).toBeGreaterThan(prev[1] as number)
      expect(next[0]).toBeLessThan(prev[0] as number)
      // The others keep their proportions (at 100% they have nothing left to share).
      if ((next[1] as number) < 100) expect((next[0] as number) / (next[2] as number)).toBeCloseTo(70 / 30, 12)
    }
    expect(at(3, 'rolled_back')).toEqual([70, 0, 30])
  })
})

describe('operator actions', () => {
  it('apply only where the state allows them, at the action\'s own time', () => {
    const s0 = startRollout(CFG, 'def', 'v1', 0)
    const paused = applyAction(s0, 'pause', 5000)
    expect(paused).toMatchObject({ status: 'paused', pausedBy: 'operator', operatorAt: 5000 })
    expect(applyAction(s0, 'resume', 6000)).toBeNull()
    expect(applyAction(paused as RolloutState, 'resume', 7000)).toMatchObject({ status: 'running', stepStartedAt: 7000, pausedBy: null })
    const aborted = applyAction(s0, 'abort', 8000) as RolloutState
    expect(aborted.status).toBe('rolled_back')
    expect([applyAction(aborted, 'pause', 9000), applyAction(aborted, 'promote', 9000), applyAction(s0, 'dance', 9000)]).toEqual([null, null, null])
  })
})

describe('Thompson-sampling bandit', () => {
  const cfg: BanditConfig = { metric: 'converted', algorithm: 'thompson', min_share: 0.05, stop_when: { probability_best: 0.95, max_expected_loss: 0.001 } }
  const totals = (values: number[]) => {
    const a = new Accumulator()
    for (const v of values) a.add(v)
    return a.totals()
  }

  it('moves traffic to the truly best arm while every arm keeps min_share, and stops when stop_when holds', () => {
    const rates = { a: 0.1, b: 0.12, c: 0.2 }
    const rng = new Random(7)
    const data: Record<string, number[]> = { a: [], b: [], c: [] }
    let shares: Record<string, number> = { a: 1 / 3, b: 1 / 3, c: 1 / 3 }
    let stopped: string | null = null
    const history: Record<string, number>[] = []
    for (let boundary = 1; boundary <= 60 && stopped === null; boundary++) {
      for (let i = 0; i < 600; i++) {
        const u = rng.next()
        const m = u < (shares.a as number) ? 'a' : u < (shares.a as number) + (shares.b as number) ? 'b' : 'c'
        data[m]?.push(rng.next() < rates[m as keyof typeof rates] ? 1 : 0)
      }
      const r = thompson(cfg, 'binary', (['a', 'b', 'c'] as const).map((m) => ({ model: m, totals: totals(data[m] as number[]) })), true, Random.seedFor('route', boundary * 60_000))
      shares = Object.fromEntries(r.arms.map((x) => [x.model, x.share]))
      history.push(shares)
      if (r.winner === null) for (const x of r.arms) expect(x.share).toBeGreaterThanOrEqual(cfg.min_share - 1e-12)
      stopped = r.winner
    }
    expect(history.at(Math.min(5, history.length - 1))?.c).toBeGreaterThan(0.6)
    expect(stopped).toBe('c')
    expect(shares).toEqual({ a: 0, b: 0, c: 1 })
  })

  it('gives the same shares for the same data and boundary, on any replica', () => {
    const arms = [{ model: 'a', totals: totals([1, 0, 0, 1]) }, { model: 'b', totals: totals([1, 1, 1, 0]) }]
    const one = thompson(cfg, 'binary', arms, true, Random.seedFor('churn', 120_000))
    const two = thompson(cfg, 'binary', arms, true, Random.seedFor('churn', 120_000))
    expect(two).toEqual(one)
    expect(thompson(cfg, 'binary', arms, true, Random.seedFor('churn', 180_000))).not.toEqual(one)
  })

  it('uses a normal posterior for continuous metrics and respects higher_is_better: false', () => {
    const rng = new Random(3)
    const lo = totals(Array.from({ length: 400 }, () => 10 + rng.normal()))
    const hi = totals(Array.from({ length: 400 }, () => 11 + rng.normal()))
    const r = thompson({ ...cfg, stop_when: null }, 'continuous', [{ model: 'lo', totals: lo }, { model: 'hi', totals: hi }], false, 1)
    expect(r.arms[0]?.probability_best).toBeGreaterThan(0.99)
    expect(r.arms[0]?.share).toBeCloseTo(0.95, 2)
    expect(r.arms[1]?.share).toBeCloseTo(0.05, 12)
  })

  it('floors shares and keeps them summing to 1', () => {
    expect(floorShares([0.97, 0.02, 0.01], 0.05)).toEqual([0.9, 0.05, 0.05])
    const s = floorShares([0.5, 0.3, 0.2], 0.05)
    expect(s.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12)
  })
})

describe('shadow promotion', () => {
  const pw = { min_compared: 5000, min_agreement: 0.97, max_p99_latency_ratio: 1.2, max_error_rate: 0.001, min_win_rate: null, min_judged: 100 }
  it('promotes a shadow with 99% agreement, and never one with 90%', () => {
    expect(checkPromotion('v3', pw, { compared: 5000, agreed: 4950, requests: 5000, errors: 1, shadowP99: 0.05, controlP99: 0.05 })).toMatchObject({ ready: true })
    const r = checkPromotion('v3', pw, { compared: 50_000, agreed: 45_000, requests: 50_000, errors: 0, shadowP99: 0.05, controlP99: 0.05 })
    expect(r.ready).toBe(false)
    expect(r.reason).toMatch(/agreement 90\.00%, 95% lower bound 8\d\.\d\d% < 97\.00%/)
    expect(checkPromotion('v3', pw, { compared: 4999, agreed: 4999, requests: 5000, errors: 0, shadowP99: 0.05, controlP99: 0.05 }).ready).toBe(false)
    expect(checkPromotion('v3', pw, { compared: 5000, agreed: 5000, requests: 5000, errors: 0, shadowP99: 0.07, controlP99: 0.05 }).reason).toMatch(/p99 ×1\.40/)
  })
})

describe('histogram quantiles', () => {
  it('interpolate inside the bucket as histogram_quantile does', () => {
    expect(bucketQuantile([0.1, 0.2, 0.4], [50, 40, 10], 100, 0.5)).toBeCloseTo(0.1, 12)
    expect(bucketQuantile([0.1, 0.2, 0.4], [50, 40, 10], 100, 0.99)).toBeCloseTo(0.38, 12)
    expect(bucketQuantile([0.1, 0.2, 0.4], [0, 0, 0], 0, 0.99)).toBeNull()
  })
})
