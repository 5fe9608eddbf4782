import type { RolloutConfig } from '../config/decisions.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import type { WinTally } from '../stats/index.js'
import { baselineOf, followOperators, reconcile } from './fleet-sync.js'
import type { DecisionContext } from './host.js'
import { PrometheusData } from './prometheus.js'
import { promotionTick } from './promotion-tick.js'
import { EMPTY_WINDOW, decideRollout, rolloutPercent, rolloutWeights, type GuardrailResult, type RolloutState } from './rollout.js'
import type { RouteDecisions } from './state.js'
import { note } from './visibility.js'

/**
 * A route's rollout as of `boundary`: gathers the step's figures (window, guardrails, judge),
 * lets decideRollout judge them, and once the rollout is done looks for a shadow to promote.
 * True when the route's weights changed.
 */
export async function rolloutTick(ctx: DecisionContext, route: RouteRuntime, cfg: RolloutConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
  let followed = false
  const data = ctx.data()
  if (data instanceof PrometheusData) {
    // The fleet's state as of the boundary: a replica that missed a decision (down across a
    // boundary, started from an older state) takes it before deciding this one like the others.
    const fleet = await data.rollout(route.name, boundary)
    if (typeof fleet !== 'string') {
      followed = followOperators(ctx, route.name, d, fleet, boundary)
      followed = await reconcile(ctx, route, d, fleet, boundary) || followed
    }
  }
  let state = d.rollout as RolloutState
  const live = { ...cfg, candidate: state.candidate }
  // An operator's resume after the boundary restarted the step later than the boundary's data.
  if (state.stepStartedAt > boundary && (state.status === 'running' || state.status === 'holding')) {
    note(ctx.host, route.name, d, { kind: 'rollout', result: 'hold', reason: `holding at ${rolloutPercent(cfg.steps, state)}%: the step restarted at ${new Date(state.stepStartedAt).toISOString()}, after this boundary; its figures are judged from the next one` }, boundary)
    return followed
  }
  // At 100 % the control serves nobody: only its figures from the step before are judged.
  let noBaseline: string | null = null
  if ((cfg.steps[state.step] ?? 0) >= 100 && state.baseline == null && (state.status === 'running' || state.status === 'holding') && data instanceof PrometheusData) {
    const baseline = await baselineOf(ctx, route, state)
    if (typeof baseline === 'string') noBaseline = `the control's figures from the step before 100% are not known (${baseline})`
    else d.rollout = state = { ...state, baseline }
  }
  const window = await ctx.data().window(route, state.stepStartedAt, boundary)
  const missing = typeof window === 'string' ? window : noBaseline
  const control = (typeof window === 'string' ? undefined : window.get(state.control)) ?? EMPTY_WINDOW
  const candidate = (typeof window === 'string' ? undefined : window.get(state.candidate)) ?? EMPTY_WINDOW
  const guardrails: GuardrailResult[] = []
  let guardMissing: string | null = null
  // The gates' guardrails, and every metric declared with a non-inferiority margin.
  const guarded = [...new Set([...cfg.gates.guardrails, ...route.metrics.filter((m) => m.guardrail !== null).map((m) => m.name)])]
  for (const metric of guarded) {
    const g = await guardrail(ctx, route, metric, state.candidate, boundary)
    if (typeof g === 'string') guardMissing ??= g
    else guardrails.push(g)
  }
  // The judge's verdicts on the candidate, mirrored the control's requests (cumulative: a win rate
  // is the model's, not the step's, and the sequential p holds at every look).
  let judged: WinTally | undefined
  if (cfg.gates.min_win_rate !== null || cfg.gates.judge_guardrail) {
    const t = await ctx.data().judged?.(route, state.control, state.candidate, boundary)
    if (typeof t === 'string') guardMissing ??= `the judge's verdicts cannot be read (${t})`
    else judged = t
  }
  const inputs = { control, candidate, guardrails, missing: missing ?? guardMissing, ...(judged !== undefined ? { judged } : {}) }
  const before = JSON.stringify(rolloutWeights(route.plan.config.split, live, state))
  const decision = decideRollout(live, state, inputs, boundary)
  state = decision.state
  d.rollout = state
  if (decision.result === 'advance') ctx.data().startWindow(route.name, state.stepStartedAt)
  note(ctx.host, route.name, d, { kind: 'rollout', result: decision.result, reason: decision.reason, inputs: { control, candidate, guardrails, ...(judged !== undefined ? { judged } : {}), step: cfg.steps[state.step], status: state.status } }, boundary)
  let changed = followed || JSON.stringify(rolloutWeights(route.plan.config.split, live, state)) !== before
  // A finished rollout makes room for a shadow that has proven itself.
  if (state.status === 'promoted' || state.status === 'rolled_back') changed = await promotionTick(ctx, route, cfg, d, boundary) || changed
  return changed
}

/**
 * A guardrail read from the experiment's own analysis (the user-level numbers every reader
 * shows): worse when the candidate is significantly worse (adjusted sequential p, in the
 * metric's direction); with a margin, whether non-inferiority is shown yet.
 */
async function guardrail(ctx: DecisionContext, route: RouteRuntime, metric: string, candidate: string, boundary: number): Promise<GuardrailResult | string> {
  const exp = await ctx.data().experiment(route, boundary)
  if (typeof exp === 'string') return exp
  const m = exp.metrics[metric]
  const c = m?.comparisons[candidate]
  if (m === undefined || c === undefined) return { metric, p: null, worse: false, nonInferior: null }
  const higher = route.metrics.find((x) => x.name === metric)?.higher_is_better ?? true
  const lift = c.abs_lift ?? 0
  return {
    metric,
    p: c.p_value_sequential_adjusted,
    worse: higher ? lift < 0 : lift > 0,
    nonInferior: c.guardrail === undefined ? null : c.guardrail.non_inferior,
  }
}
