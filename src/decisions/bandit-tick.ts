import type { BanditConfig } from '../config/decisions.js'
import type { ModelReport } from '../experiment/index.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import type { Summary } from '../stats/index.js'
import { thompson, type BanditResult } from './bandit.js'
import type { DecisionContext } from './host.js'
import { Random } from './random.js'
import type { RouteDecisions } from './state.js'
import { note } from './visibility.js'

/** A route's bandit as of `boundary`: new shares drawn from the arms' posteriors; true when they changed. */
export async function banditTick(ctx: DecisionContext, route: RouteRuntime, cfg: BanditConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
  if (d.bandit?.winner !== null && d.bandit?.winner !== undefined) {
    note(ctx.host, route.name, d, { kind: 'bandit', result: 'hold', reason: `stopped: all traffic to ${d.bandit.winner}` }, boundary)
    return false
  }
  const metric = route.metrics.find((m) => m.name === cfg.metric)
  const exp = await ctx.data().experiment(route, boundary)
  if (typeof exp === 'string') {
    note(ctx.host, route.name, d, { kind: 'bandit', result: 'hold', reason: `shares kept: ${exp}` }, boundary)
    return false
  }
  // The posterior of each arm's mean matches the experiment's estimate and its standard error at
  // the unit of analysis (users send correlated outcomes: an arm is no surer than its users).
  const models = exp.metrics[cfg.metric]?.models ?? {}
  const arms = route.arms.map((a) => ({ model: a.model, totals: effectiveSample(models[a.model], metric?.type === 'binary') }))
  // With no outcome yet every arm's posterior is the prior: shares drawn from it move on noise.
  if (arms.every((a) => a.totals.n === 0)) {
    note(ctx.host, route.name, d, { kind: 'bandit', result: 'hold', reason: `shares kept: no outcome of ${cfg.metric} on any arm yet, nothing to reweight on` }, boundary)
    return false
  }
  const r: BanditResult = thompson(cfg, metric?.type === 'binary' ? 'binary' : 'continuous', arms, metric?.higher_is_better ?? true, Random.seedFor(route.name, boundary))
  const before = JSON.stringify(d.bandit?.shares ?? null)
  d.bandit = {
    shares: Object.fromEntries(r.arms.map((a) => [a.model, a.share])),
    winner: r.winner,
    probability_best: Object.fromEntries(r.arms.map((a) => [a.model, a.probability_best])),
    expected_loss: Object.fromEntries(r.arms.map((a) => [a.model, a.expected_loss])),
  }
  const changed = JSON.stringify(d.bandit.shares) !== before
  note(ctx.host, route.name, d, { kind: 'bandit', result: r.winner !== null ? 'stop' : changed ? 'reweight' : 'hold', reason: r.reason, inputs: r.arms }, boundary)
  return changed
}

/**
 * Outcome totals whose moments give an arm's estimate and its standard error: for a rate p with
 * standard error se, the effective count p(1 − p)/se² (the outcomes over the design effect); for
 * a mean, the outcomes with the variance se²·n. Without an estimate, no outcomes.
 */
export function effectiveSample(m: ModelReport | undefined, binary: boolean): Summary {
  const value = m === undefined ? null : binary ? m.rate ?? null : m.mean ?? null
  const se = m?.se ?? null
  const outcomes = m?.outcomes ?? 0
  if (value === null || outcomes === 0) return { n: 0, sum: 0, sumSquares: 0 }
  if (binary) {
    const n = se !== null && se > 0 ? Math.min(outcomes, (value * (1 - value)) / (se * se)) : outcomes
    return { n, sum: value * n, sumSquares: value * n }
  }
  const n = outcomes
  const variance = se !== null && Number.isFinite(se) ? se * se * n : 0
  return { n, sum: value * n, sumSquares: (n - 1) * variance + value * value * n }
}
