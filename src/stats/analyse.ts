import { twoProportionZTest, welchTTest } from './comparisons.js'
import { meanInterval, wilsonInterval } from './intervals.js'
import { requiredSampleSize, remainingSamples } from './sample-size.js'
import { msprtPValue } from './sequential.js'
import { srmTest } from './srm.js'
import { moments } from './summary.js'
import { combineVerdicts, verdict } from './verdict.js'
import type { Lift } from './comparisons.js'
import type { Sample } from './summary.js'
import type { Verdict } from './verdict.js'

/** Per-model totals: assignments plus the outcomes' stable `Totals` (or raw sums, e.g. from PromQL). */
export type ModelTotals = Sample & { readonly assignments: number }

/** Metric kind: binary outcomes are 0/1, so sum = successes. */
export type MetricType = 'binary' | 'continuous'

/** Everything analyseExperiment needs. */
export interface ExperimentInput {
  readonly type: MetricType
  readonly control: string
  readonly models: Readonly<Record<string, ModelTotals>>
  /** Configured traffic weights; models without a weight count as weight 0. */
  readonly weights: Readonly<Record<string, number>>
  /** Minimum detectable effect, absolute (rate points for binary, metric units for continuous). */
  readonly mde: number
  readonly alpha?: number
  readonly power?: number
  readonly minSamplePerArm?: number
  readonly higherIsBetter?: boolean
  /** mSPRT mixing variance; defaults to mde². */
  readonly tau2?: number
  /**
   * Assignments each model was expected to get under the weights in force when they were made
   * (a rollout or bandit changes them); the sample-ratio check compares with these. Default: the
   * configured weights.
   */
  readonly expected?: Readonly<Record<string, number>>
  /**
   * The always-valid p-value is the running minimum of the snapshot over the experiment: given a
   * candidate and its snapshot p, returns the minimum so far (the caller keeps it), so a verdict
   * reached is not withdrawn.
   */
  readonly runningMin?: (candidate: string, p: number) => number
}

/** An interval as [low, high]; null where undefined (JSON has no NaN). */
export type JsonInterval = [number | null, number | null]

/** One model's row of the report. */
export interface ModelReport {
  readonly weight: number
  readonly assignments: number
  readonly outcomes: number
  /** Success rate (binary) or mean (continuous). */
  readonly rate?: number | null
  readonly mean?: number | null
  readonly ci: JsonInterval
}

/** One candidate against the control. */
export interface ComparisonReport {
  readonly abs_lift: number | null
  readonly abs_lift_ci: JsonInterval
  readonly rel_lift: number | null
  readonly rel_lift_ci: JsonInterval
  readonly p_value: number | null
  readonly p_value_sequential: number | null
  readonly required_per_arm: number | null
  readonly remaining: number | null
  readonly verdict: Verdict
}

/** SRM block of the report. */
export interface SrmReport {
  readonly chi2: number
  readonly df: number
  readonly p_value: number
  readonly mismatch: boolean
}

/** The JSON-ready analysis (snake_case keys, null instead of NaN). */
export interface ExperimentReport {
  readonly type: MetricType
  readonly control: string
  readonly alpha: number
  readonly mde: number
  readonly models: Record<string, ModelReport>
  readonly comparisons: Record<string, ComparisonReport>
  readonly srm: SrmReport
  readonly verdict: Verdict
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null
}

function interval(low: number, high: number): JsonInterval {
  return [finite(low), finite(high)]
}

/**
 * Analyses every candidate against the control: per-model estimates (Wilson or t intervals),
 * fixed-horizon test (pooled z or Welch), mSPRT p-value, required sample size for the MDE,
 * SRM over assignments, and a verdict per candidate plus one overall (see `verdict`, `combineVerdicts`).
 * No correction is made for several candidates.
 */
export function analyseExperiment(input: ExperimentInput): ExperimentReport {
  const alpha = input.alpha ?? 0.05
  const power = input.power ?? 0.8
  const control = input.models[input.control]
  if (control === undefined) {
    throw new RangeError(`analyseExperiment: control "${input.control}" has no totals; add it to models`)
  }
  const names = [...new Set([...Object.keys(input.weights), ...Object.keys(input.models)])]
  const empty: ModelTotals = { assignments: 0, n: 0, sum: 0, shift: 0, offset: 0, m2: 0 }
  const totals = (name: string): ModelTotals => input.models[name] ?? empty

  const models: Record<string, ModelReport> = {}
  for (const name of names) {
    const t = totals(name)
    const base = { weight: input.weights[name] ?? 0, assignments: t.assignments, outcomes: t.n }
    if (input.type === 'binary') {
      const w = wilsonInterval(t.sum, t.n)
      models[name] = { ...base, rate: finite(w.rate), ci: interval(w.low, w.high) }
    } else {
      const m = meanInterval(t)
      models[name] = { ...base, mean: finite(m.mean), ci: interval(m.low, m.high) }
    }
  }

  const srm = srmTest(
    names.map((name) => totals(name).assignments),
    names.map((name) => (input.expected ?? input.weights)[name] ?? 0),
  )

  const comparisons: Record<string, ComparisonReport> = {}
  for (const name of names) {
    if (name === input.control || input.models[name] === undefined) continue
    const candidate = totals(name)
    let lift: Lift & { readonly pValue: number }
    let required: number
    if (input.type === 'binary') {
      lift = twoProportionZTest({ n: control.n, successes: control.sum }, { n: candidate.n, successes: candidate.sum })
      required = requiredSampleSize({ baselineRate: control.sum / control.n, mde: input.mde, alpha, power })
    } else {
      lift = welchTTest(control, candidate)
      // Average of the two arms' variances, so 2σ² in the formula equals σ²_A + σ²_B.
      const sd = Math.sqrt((moments(control).variance + moments(candidate).variance) / 2)
      required = requiredSampleSize({ sd, mde: input.mde, alpha, power })
    }
    const snapshot = msprtPValue(control, candidate, input.tau2 === undefined ? { mde: input.mde } : { tau2: input.tau2 })
    const sequential = { pValue: input.runningMin !== undefined && Number.isFinite(snapshot.pValue) ? input.runningMin(name, snapshot.pValue) : snapshot.pValue }
    const v = verdict({
      srmMismatch: srm.mismatch,
      controlOutcomes: control.n,
      candidateOutcomes: candidate.n,
      pSequential: sequential.pValue,
      absLift: lift.absLift,
      requiredPerArm: required,
      alpha,
      minSamplePerArm: input.minSamplePerArm,
      higherIsBetter: input.higherIsBetter,
    })
    comparisons[name] = {
      abs_lift: finite(lift.absLift),
      abs_lift_ci: interval(lift.absLiftLow, lift.absLiftHigh),
      rel_lift: finite(lift.relLift),
      rel_lift_ci: interval(lift.relLiftLow, lift.relLiftHigh),
      p_value: finite(lift.pValue),
      p_value_sequential: finite(sequential.pValue),
      required_per_arm: finite(required),
      remaining: finite(remainingSamples(required, Math.min(control.n, candidate.n))),
      verdict: v,
    }
  }

  const perCandidate = Object.values(comparisons).map((c) => c.verdict)
  return {
    type: input.type,
    control: input.control,
    alpha,
    mde: input.mde,
    models,
    comparisons,
    srm: { chi2: srm.chi2, df: srm.df, p_value: srm.pValue, mismatch: srm.mismatch },
    verdict: srm.mismatch ? 'sample ratio mismatch: investigate' : combineVerdicts(perCandidate),
  }
}
