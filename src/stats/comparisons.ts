import { normalTwoSidedP, studentQuantile, studentTwoSidedP, zCritical } from './distributions.js'
import { meanDifference, moments } from './summary.js'
import type { Sample } from './summary.js'

/** One arm of a binary metric. */
export interface Proportion {
  readonly n: number
  readonly successes: number
}

/** Lift of candidate over control: absolute (difference) and relative (ratio − 1), each with an interval. */
export interface Lift {
  readonly absLift: number
  readonly absLiftLow: number
  readonly absLiftHigh: number
  readonly relLift: number
  readonly relLiftLow: number
  readonly relLiftHigh: number
}

/** Result of the pooled two-proportion z-test. */
export interface ZTestResult extends Lift {
  readonly controlRate: number
  readonly candidateRate: number
  readonly z: number
  readonly pValue: number
}

/** Result of Welch's unequal-variance t-test. */
export interface WelchResult extends Lift {
  readonly controlMean: number
  readonly candidateMean: number
  readonly t: number
  readonly df: number
  readonly pValue: number
}

/**
 * Two-sided pooled z-test for p_candidate = p_control, with the absolute lift's unpooled Wald CI
 * and the relative lift's CI from the delta method on log(p_candidate / p_control) (Katz et al. 1978).
 */
export function twoProportionZTest(control: Proportion, candidate: Proportion, confidence = 0.95): ZTestResult {
  const pA = control.successes / control.n
  const pB = candidate.successes / candidate.n
  const pooled = (control.successes + candidate.successes) / (control.n + candidate.n)
  // Under H0 both arms share one rate, so the test's standard error uses the pooled rate
  // (this makes z² equal Pearson's X² for the 2×2 table, i.e. R's prop.test(correct = FALSE)).
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / candidate.n))
  const diff = pB - pA
  const z = diff / sePooled
  const zc = zCritical(confidence)
  // The interval is not computed under H0, so it uses each arm's own variance (Wald).
  const seWald = Math.sqrt((pA * (1 - pA)) / control.n + (pB * (1 - pB)) / candidate.n)
  const ratio = pB / pA
  const seLog = Math.sqrt((1 - pA) / (control.n * pA) + (1 - pB) / (candidate.n * pB))
  const logRatio = Math.log(ratio)
  return {
    controlRate: pA,
    candidateRate: pB,
    z,
    pValue: normalTwoSidedP(z),
    absLift: diff,
    absLiftLow: diff - zc * seWald,
    absLiftHigh: diff + zc * seWald,
    relLift: ratio - 1,
    relLiftLow: Math.exp(logRatio - zc * seLog) - 1,
    relLiftHigh: Math.exp(logRatio + zc * seLog) - 1,
  }
}

/**
 * Welch's t-test (Welch 1947) on candidate − control with Welch–Satterthwaite df; the relative lift's
 * CI uses the delta method on the ratio of means (Deng, Knoblich & Lu 2018), with normal quantiles.
 * Means and variances come from `moments`, so stable `Totals` keep every digit of the difference.
 */
export function welchTTest(control: Sample, candidate: Sample, confidence = 0.95): WelchResult {
  const a = moments(control)
  const b = moments(candidate)
  const vA = a.variance / a.n
  const vB = b.variance / b.n
  const se = Math.sqrt(vA + vB)
  const diff = meanDifference(a, b)
  const t = diff / se
  const df = ((vA + vB) * (vA + vB)) / ((vA * vA) / (a.n - 1) + (vB * vB) / (b.n - 1))
  const tc = studentQuantile(1 - (1 - confidence) / 2, df)
  const zc = zCritical(confidence)
  const ratio = b.mean / a.mean
  // Var(Ȳb/Ȳa) ≈ Var(Ȳb)/Ȳa² + Ȳb²·Var(Ȳa)/Ȳa⁴; unlike the log form it allows means ≤ 0.
  const seRatio = Math.sqrt(vB + ratio * ratio * vA) / Math.abs(a.mean)
  return {
    controlMean: a.mean,
    candidateMean: b.mean,
    t,
    df,
    pValue: studentTwoSidedP(t, df),
    absLift: diff,
    absLiftLow: diff - tc * se,
    absLiftHigh: diff + tc * se,
    relLift: ratio - 1,
    relLiftLow: ratio - 1 - zc * seRatio,
    relLiftHigh: ratio - 1 + zc * seRatio,
  }
}
