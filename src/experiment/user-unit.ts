import { msprtFromVariance, remainingSamples, studentQuantile, studentTwoSidedP, zCritical } from '../stats/index.js'
import { adjustedResiduals, cuped, liftDf, ratioCovariance, ratioEstimate, residualsOf, varianceOfVariance, type BucketSeries, type RatioEstimate, type Residuals } from './estimate.js'
import { MIN_GROUPS, MIN_OUTCOMES, POWER, finite, modelBase, pair, type Raw } from './per-unit.js'
import { guardrailOf, runningMin, tau2Of } from './sequential.js'
import type { ExperimentInput, MetricSpec } from './types.js'
import type { ComparisonReport, ModelReport } from './report.js'

// The unit of analysis is the user: outcomes summed per bucket of users, estimates and their
// variances by the delta method, CUPED where a metric names a covariate.

/** The per-bucket series of a metric on an arm: a ratio metric divides two metrics' sums, any other its sum by its count. */
export function seriesOf(input: ExperimentInput, metric: MetricSpec, model: string): BucketSeries {
  if (metric.type === 'ratio') {
    return { num: input.cells(model, metric.numerator as string).sum, den: input.cells(model, metric.denominator as string).sum }
  }
  const c = input.cells(model, metric.name)
  return { num: c.sum, den: c.count }
}

function outcomesOf(input: ExperimentInput, metric: MetricSpec, model: string): number {
  const c = input.cells(model, metric.type === 'ratio' ? metric.numerator as string : metric.name).count
  let n = 0
  for (let i = 0; i < c.length; i++) n += c[i] as number
  return n
}

/** Each arm's estimate of a metric and its interval, from the per-bucket series (delta method). */
export function userModels(input: ExperimentInput, metric: MetricSpec): { reports: Record<string, ModelReport>; controlMean: number } {
  const reports: Record<string, ModelReport> = {}
  let controlMean = Number.NaN
  for (const arm of input.arms) {
    const r = ratioEstimate(seriesOf(input, metric, arm.model))
    if (arm.model === input.control) controlMean = r.estimate
    const se = Math.sqrt(r.variance)
    const t = studentQuantile(1 - input.analysis.alpha / 2, r.groups - 1)
    const value = finite(r.estimate)
    reports[arm.model] = {
      ...modelBase(arm, outcomesOf(input, metric, arm.model)),
      ...(metric.type === 'binary' ? { rate: value } : { mean: value }),
      ci: pair(r.estimate - t * se, r.estimate + t * se),
      se: finite(se),
      buckets: r.groups,
    }
  }
  return { reports, controlMean }
}

/** One candidate's lift on a metric at the user level (CUPED-adjusted where the metric names a covariate), before any test. */
export interface UserLift {
  readonly a: RatioEstimate
  readonly b: RatioEstimate
  readonly diff: number
  readonly variance: number
  readonly varA: number
  readonly varB: number
  readonly controlN: number
  readonly candidateN: number
  readonly groupsOk: boolean
  /** Enough data for a look to join the running minimum. */
  readonly ready: boolean
  readonly cuped: ComparisonReport['cuped']
  /** The buckets' scores behind each arm's variance (for the degrees of freedom), made on demand. */
  residuals(): [Residuals, Residuals]
}

/** A candidate's lift against the control at the user level, CUPED-adjusted where the metric names a covariate. */
export function userLift(input: ExperimentInput, metric: MetricSpec, candidate: string): UserLift {
  const sa = seriesOf(input, metric, input.control)
  const sb = seriesOf(input, metric, candidate)
  const a = ratioEstimate(sa)
  const b = ratioEstimate(sb)
  let diff = b.estimate - a.estimate
  let variance = a.variance + b.variance
  let varA = a.variance
  let varB = b.variance
  let residuals = (): [Residuals, Residuals] => [residualsOf(sa, a), residualsOf(sb, b)]
  let cupedReport: ComparisonReport['cuped']
  if (metric.cuped !== null) {
    const cov = input.metrics.find((m) => m.name === metric.cuped)
    if (cov !== undefined) {
      const xa = seriesOf(input, cov, input.control)
      const xb = seriesOf(input, cov, candidate)
      const ea = ratioEstimate(xa)
      const eb = ratioEstimate(xb)
      const c = cuped({ y: a, x: ea, cov: ratioCovariance(sa, a, xa, ea) }, { y: b, x: eb, cov: ratioCovariance(sb, b, xb, eb) })
      if (Number.isFinite(c.theta) && Number.isFinite(c.variance) && c.variance > 0) {
        cupedReport = { covariate: cov.name, theta: c.theta, unadjusted_abs_lift: finite(diff), unadjusted_se: finite(Math.sqrt(variance)), variance_reduction: finite(c.reduction) }
        diff = c.diff
        variance = c.variance
        varA = c.controlVariance
        varB = c.candidateVariance
        residuals = () => [
          adjustedResiduals(residualsOf(sa, a), residualsOf(xa, ea), c.theta),
          adjustedResiduals(residualsOf(sb, b), residualsOf(xb, eb), c.theta),
        ]
      } else {
        cupedReport = { covariate: cov.name, theta: null, unadjusted_abs_lift: finite(diff), unadjusted_se: finite(Math.sqrt(variance)), variance_reduction: null }
      }
    }
  }
  const controlN = outcomesOf(input, metric, input.control)
  const candidateN = outcomesOf(input, metric, candidate)
  const minGroups = Math.min(MIN_GROUPS, input.analysis.buckets)
  const groupsOk = a.groups >= minGroups && b.groups >= minGroups
  // Only a look with enough data joins the running minimum: with a handful of users the variance
  // itself is noise (a few all-zero buckets make it 0), and one such look would decide for good.
  const ready = groupsOk && controlN >= MIN_OUTCOMES && candidateN >= MIN_OUTCOMES
  return { a, b, diff, variance, varA, varB, controlN, candidateN, groupsOk, ready, cuped: cupedReport, residuals }
}

/** One candidate's test of a metric at the user level, before the family's adjustment. */
export function userComparison(input: ExperimentInput, metric: MetricSpec, candidate: string, mde: number): Raw {
  const alpha = input.analysis.alpha
  const lift = userLift(input, metric, candidate)
  const { a, b, diff, variance, varA, varB, controlN, candidateN, groupsOk, ready, cuped: cupedReport } = lift
  const [resA, resB] = lift.residuals()
  const se = Math.sqrt(variance)
  const df = liftDf(varA, a.groups, varB, b.groups, varianceOfVariance(resA), varianceOfVariance(resB))
  const t = diff / se
  const p = studentTwoSidedP(t, df)
  const tc = studentQuantile(1 - alpha / 2, df)
  const zc = zCritical(1 - alpha)
  // The relative lift's interval: the delta method on the ratio of the two estimates.
  const ratio = (a.estimate + diff) / a.estimate
  const seRatio = Math.sqrt(b.variance + ratio * ratio * a.variance) / Math.abs(a.estimate)
  const snapshot = msprtFromVariance(diff, variance, tau2Of(mde))
  const pSeq = ready ? runningMin(input, `${metric.name}\u0000${candidate}\u0000diff`, snapshot) : snapshot
  // Outcomes per arm for the MDE: the per-outcome variance including the users' clustering
  // (each arm's Var(R)·n), so the design effect is in the answer.
  const perOutcome = (a.variance * controlN + b.variance * candidateN) / 2
  const zAlpha = zCritical(1 - alpha)
  const zBeta = zCritical(2 * POWER - 1)
  const required = mde > 0 && Number.isFinite(perOutcome) ? Math.ceil((2 * perOutcome * (zAlpha + zBeta) ** 2) / (mde * mde) - 1e-9) : Number.NaN
  return {
    metric,
    candidate,
    diff,
    se,
    df,
    p,
    pSequential: pSeq,
    controlN,
    candidateN,
    groupsOk,
    required,
    report: {
      abs_lift: finite(diff),
      abs_lift_ci: pair(diff - tc * se, diff + tc * se),
      rel_lift: finite(ratio - 1),
      rel_lift_ci: pair(ratio - 1 - zc * seRatio, ratio - 1 + zc * seRatio),
      se: finite(se),
      df: finite(df),
      p_value: finite(p),
      p_value_sequential: finite(pSeq),
      required_per_arm: finite(required),
      remaining: finite(remainingSamples(required, Math.min(controlN, candidateN))),
      ...(cupedReport !== undefined ? { cuped: cupedReport } : {}),
      ...guardrailOf(input, metric, candidate, diff, variance, df, mde, ready),
    },
  }
}
