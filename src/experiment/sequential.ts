import { msprtFromVariance, studentCdf } from '../stats/index.js'
import { finite } from './per-unit.js'
import type { ExperimentInput, MetricSpec } from './types.js'
import type { ComparisonReport } from './report.js'

// The always-valid side of a comparison: the mixture prior, the running minimum across looks, and
// the guardrails' non-inferiority tests.

/** The mixture prior's variance for a metric's minimum detectable effect. */
export function tau2Of(mde: number): number {
  return mde * mde
}

/**
 * Non-inferiority (a guardrail's margin m): H0 the candidate is worse by m or more. With s the
 * metric's direction (+1 when higher is better), the one-sided test is on s·Δ + m > 0: a t-test
 * for the fixed horizon, and the always-valid mixture test of s·Δ + m against 0 for the sequential
 * p (1 while s·Δ + m ≤ 0). Not adjusted across the family: a guardrail is shown non-inferior on its own.
 */
export function guardrailOf(input: ExperimentInput, metric: MetricSpec, candidate: string, diff: number, variance: number, df: number, mde: number, ready: boolean): { guardrail?: ComparisonReport['guardrail'] } {
  if (metric.guardrail === null) return {}
  const margin = metric.guardrail.margin
  const shifted = (metric.higher_is_better ? diff : -diff) + margin
  const se = Math.sqrt(variance)
  const p = 1 - studentCdf(shifted / se, df)
  const snapshot = nonInferiorSnapshot(metric, diff, variance, mde)
  const pSeq = ready ? runningMin(input, `${metric.name}\u0000${candidate}\u0000ni`, snapshot) : snapshot
  return { guardrail: { margin, p_value: finite(p), p_value_sequential: finite(pSeq), non_inferior: ready && Number.isFinite(pSeq) && pSeq < input.analysis.alpha } }
}

/** The always-valid p of non-inferiority now: the mixture test of s·Δ + m against 0 (1 while s·Δ + m ≤ 0). */
export function nonInferiorSnapshot(metric: MetricSpec, diff: number, variance: number, mde: number): number {
  const margin = metric.guardrail?.margin ?? 0
  const shifted = (metric.higher_is_better ? diff : -diff) + margin
  return shifted > 0 ? msprtFromVariance(shifted, variance, tau2Of(Math.max(mde, margin))) : 1
}

/** The running minimum of a sequential p under `key` (where the input keeps them), else the p itself. */
export function runningMin(input: ExperimentInput, key: string, p: number): number {
  return input.runningMin !== undefined && Number.isFinite(p) ? input.runningMin(key, p) : p
}
