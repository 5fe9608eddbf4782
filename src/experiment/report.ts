import type { JsonInterval, Verdict } from '../stats/index.js'
import type { Correction } from './corrections.js'
import type { AnalysisUnit } from './types.js'

/** One model's row of a metric (JSON-ready: null where undefined). */
export interface ModelReport {
  readonly weight: number
  /** Requests assigned by hash. */
  readonly assignments: number
  readonly outcomes: number
  /** Sampled users first exposed to the arm (unit user). */
  readonly users?: number
  /** Success rate (binary) or mean (continuous, ratio). */
  readonly rate?: number | null
  readonly mean?: number | null
  readonly ci: JsonInterval
  /** Standard error of the rate or mean (at the unit of analysis). */
  readonly se?: number | null
  /** Non-empty buckets (unit user). */
  readonly buckets?: number
}

/** One candidate against the control on one metric. */
export interface ComparisonReport {
  readonly abs_lift: number | null
  readonly abs_lift_ci: JsonInterval
  readonly rel_lift: number | null
  readonly rel_lift_ci: JsonInterval
  readonly se?: number | null
  readonly df?: number | null
  readonly p_value: number | null
  /** p_value adjusted across the route's metrics × candidates (analysis.correction). */
  readonly p_value_adjusted: number | null
  /** Always-valid p: the running minimum of the mixture SPRT's p over the experiment. */
  readonly p_value_sequential: number | null
  /** p_value_sequential adjusted across the family: what the verdict reads. */
  readonly p_value_sequential_adjusted: number | null
  readonly required_per_arm: number | null
  readonly remaining: number | null
  readonly verdict: Verdict
  /** CUPED: the covariate, θ, the lift and standard error before adjustment, and the variance removed. */
  readonly cuped?: {
    readonly covariate: string
    readonly theta: number | null
    readonly unadjusted_abs_lift: number | null
    readonly unadjusted_se: number | null
    readonly variance_reduction: number | null
  }
  /** Guardrail: the one-sided non-inferiority test at the metric's margin. */
  readonly guardrail?: {
    readonly margin: number
    readonly p_value: number | null
    readonly p_value_sequential: number | null
    readonly non_inferior: boolean
  }
}

/** The sample-ratio check: observed users (or requests) per arm against the weights in force when they came. */
export interface SrmReport {
  readonly unit: AnalysisUnit
  readonly chi2: number
  readonly df: number
  readonly p_value: number
  readonly mismatch: boolean
  readonly observed: Record<string, number>
  /** Unit user: the share of users the sample holds (1, 1/2, 1/4, …). */
  readonly sampled_fraction?: number
}

/** One metric of a route's experiment. */
export interface MetricReport {
  readonly type: 'binary' | 'continuous' | 'ratio'
  readonly role: 'outcome' | 'covariate'
  readonly unit: AnalysisUnit
  readonly control: string
  readonly alpha: number
  readonly mde: number
  readonly models: Record<string, ModelReport>
  readonly comparisons: Record<string, ComparisonReport>
  readonly srm: SrmReport
  readonly verdict: Verdict
  readonly guardrail_margin?: number
}

/** A route's experiment as every reader shows it. */
export interface RouteExperiment {
  readonly route: string
  readonly control: string
  readonly unit: AnalysisUnit
  readonly buckets: number | null
  readonly correction: Correction
  readonly alpha: number
  /** Tests in the family the correction adjusts over (metrics × candidates). */
  readonly family: number
  readonly srm: SrmReport
  readonly metrics: Record<string, MetricReport>
  readonly verdict: Verdict
}
