import type { ArmCounts, MetricSpec } from './types.js'
import type { ComparisonReport } from './report.js'

// What the user-level and the request-level analyses share: the thresholds, the shape of one
// candidate's raw test, and the small helpers both reports are built with.

/** Outcomes each arm needs before any verdict, as before. */
export const MIN_OUTCOMES = 100
/** Non-empty buckets each arm needs before any verdict: fewer make the variance itself too noisy. */
export const MIN_GROUPS = 16
export const POWER = 0.8

/** Default minimum detectable effect: 1 point of rate, or 5% of the control's mean. */
export function defaultMde(metric: { readonly mde: number | null; readonly type: string }, controlMean: number): number {
  if (metric.mde !== null) return metric.mde
  if (metric.type === 'binary') return 0.01
  const m = Math.abs(controlMean)
  return Number.isFinite(m) && m > 0 ? 0.05 * m : 1
}

export const finite = (x: number): number | null => (Number.isFinite(x) ? x : null)
export const pair = (a: number, b: number): [number | null, number | null] => [finite(a), finite(b)]

/** One candidate's raw test of one metric, before the family's adjustment. */
export interface Raw {
  readonly metric: MetricSpec
  readonly candidate: string
  readonly diff: number
  readonly se: number
  readonly df: number
  readonly p: number
  readonly pSequential: number
  readonly controlN: number
  readonly candidateN: number
  readonly groupsOk: boolean
  readonly required: number
  readonly report: Omit<ComparisonReport, 'p_value_adjusted' | 'p_value_sequential_adjusted' | 'verdict'>
}

/** What an arm's report says whatever the unit: its weight, assignments, outcomes (and users). */
export function modelBase(arm: ArmCounts, outcomes: number): { weight: number; assignments: number; outcomes: number; users?: number } {
  return { weight: arm.weight, assignments: arm.requests, outcomes, ...(arm.users !== undefined ? { users: arm.users } : {}) }
}
