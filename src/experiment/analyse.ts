import {
  analyseExperiment as analyseIndependent,
  moments,
  msprtFromVariance,
  remainingSamples,
  srmTest,
  studentCdf,
  studentQuantile,
  studentTwoSidedP,
  verdict as verdictOf,
  combineVerdicts,
  zCritical,
  type Verdict,
} from '../stats/index.js'
import { adjustPValues } from './corrections.js'
import { adjustedResiduals, cuped, liftDf, ratioCovariance, ratioEstimate, residualsOf, varianceOfVariance, welchDf, type BucketSeries, type RatioEstimate, type Residuals } from './estimate.js'
import type { ArmCounts, ExperimentInput, MetricSpec } from './types.js'
import type { ComparisonReport, MetricReport, ModelReport, RouteExperiment, SrmReport } from './report.js'

/** Outcomes each arm needs before any verdict, as before. */
const MIN_OUTCOMES = 100
/** Non-empty buckets each arm needs before any verdict: fewer make the variance itself too noisy. */
const MIN_GROUPS = 16
const POWER = 0.8

/** Default minimum detectable effect: 1 point of rate, or 5% of the control's mean. */
export function defaultMde(metric: { readonly mde: number | null; readonly type: string }, controlMean: number): number {
  if (metric.mde !== null) return metric.mde
  if (metric.type === 'binary') return 0.01
  const m = Math.abs(controlMean)
  return Number.isFinite(m) && m > 0 ? 0.05 * m : 1
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null)
const pair = (a: number, b: number): [number | null, number | null] => [finite(a), finite(b)]

/** One candidate's raw test of one metric, before the family's adjustment. */
interface Raw {
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

/**
 * A route's experiment, every metric × candidate against the control: per-arm estimates and
 * intervals, lifts, fixed-horizon and always-valid p-values adjusted across the route's family
 * (Holm by default), CUPED where a metric names a covariate, guardrails' non-inferiority tests,
 * the sample-ratio check (on users, or on requests) and verdicts from the adjusted sequential p.
 * Pure: every reader (admin, console, decisions, MLflow, report, fleet) gets its numbers here.
 */
export function analyseExperiment(given: ExperimentInput): RouteExperiment {
  // Metrics from older callers may lack the newer keys: they default as the config does.
  const input: ExperimentInput = { ...given, metrics: given.metrics.map(withDefaults) }
  const { analysis } = input
  const alpha = analysis.alpha
  const arms = input.arms
  const control = arms.find((a) => a.model === input.control)
  if (control === undefined) throw new RangeError(`analyseExperiment: control "${input.control}" is not one of the arms; add it to arms`)
  const srm = srmOf(input)
  const tested = input.metrics.filter((m) => m.role === 'outcome')
  const raws: Raw[] = []
  const models: Record<string, Record<string, ModelReport>> = {}
  const mdes: Record<string, number> = {}
  for (const metric of input.metrics) {
    const perArm = analysis.unit === 'user' ? userModels(input, metric) : requestModels(input, metric)
    models[metric.name] = perArm.reports
    mdes[metric.name] = defaultMde(metric, perArm.controlMean)
    if (metric.role !== 'outcome') continue
    for (const arm of arms) {
      if (arm.model === input.control) continue
      raws.push(analysis.unit === 'user' ? userComparison(input, metric, arm.model, mdes[metric.name] as number) : requestComparison(input, metric, arm.model, mdes[metric.name] as number))
    }
  }
  const adjusted = adjustPValues(raws.map((r) => r.p), analysis.correction)
  const adjustedSeq = adjustPValues(raws.map((r) => r.pSequential), analysis.correction)
  const metrics: Record<string, MetricReport> = {}
  for (const metric of input.metrics) {
    const comparisons: Record<string, ComparisonReport> = {}
    raws.forEach((r, i) => {
      if (r.metric !== metric) return
      const pSeqAdj = adjustedSeq[i] as number
      const v: Verdict = !r.groupsOk && !srm.mismatch ? 'collecting data' : verdictOf({
        srmMismatch: srm.mismatch,
        controlOutcomes: r.controlN,
        candidateOutcomes: r.candidateN,
        pSequential: pSeqAdj,
        absLift: r.diff,
        requiredPerArm: r.required,
        alpha,
        minSamplePerArm: MIN_OUTCOMES,
        higherIsBetter: metric.higher_is_better,
      })
      comparisons[r.candidate] = { ...r.report, p_value_adjusted: finite(adjusted[i] as number), p_value_sequential_adjusted: finite(pSeqAdj), verdict: v }
    })
    const verdicts = Object.values(comparisons).map((c) => c.verdict)
    metrics[metric.name] = {
      type: metric.type,
      role: metric.role,
      unit: analysis.unit,
      control: input.control,
      alpha,
      mde: mdes[metric.name] as number,
      models: models[metric.name] as Record<string, ModelReport>,
      comparisons,
      srm,
      verdict: srm.mismatch ? 'sample ratio mismatch: investigate' : metric.role === 'outcome' ? combineVerdicts(verdicts) : 'collecting data',
      ...(metric.guardrail !== null ? { guardrail_margin: metric.guardrail.margin } : {}),
    }
  }
  return {
    route: input.route,
    control: input.control,
    unit: analysis.unit,
    buckets: analysis.unit === 'user' ? analysis.buckets : null,
    correction: analysis.correction,
    alpha,
    family: raws.length,
    srm,
    metrics,
    verdict: srm.mismatch ? 'sample ratio mismatch: investigate' : combineVerdicts(tested.flatMap((m) => Object.values(metrics[m.name]?.comparisons ?? {}).map((c) => c.verdict))),
  }
}

function withDefaults(m: MetricSpec): MetricSpec {
  return { ...m, role: m.role ?? 'outcome', numerator: m.numerator ?? null, denominator: m.denominator ?? null, cuped: m.cuped ?? null, guardrail: m.guardrail ?? null }
}

// --- the sample-ratio check ---------------------------------------------------------------------

function srmOf(input: ExperimentInput): SrmReport {
  const arms = input.arms
  const byUser = input.analysis.unit === 'user' && arms.some((a) => a.users !== undefined)
  const observed = arms.map((a) => (byUser ? a.users ?? 0 : a.requests))
  const expected = arms.map((a) => (byUser ? a.expectedUsers : a.expectedRequests) ?? Number.NaN)
  const weights = expected.every((e) => Number.isFinite(e)) && expected.some((e) => e > 0) ? expected : arms.map((a) => a.weight)
  const t = srmTest(observed, weights)
  return {
    unit: byUser ? 'user' : 'request',
    chi2: t.chi2,
    df: t.df,
    p_value: t.pValue,
    mismatch: t.mismatch,
    observed: Object.fromEntries(arms.map((a, i) => [a.model, observed[i] as number])),
    ...(byUser && input.userSampleFraction !== undefined ? { sampled_fraction: input.userSampleFraction } : {}),
  }
}

// --- unit: user (bucketed, delta method) --------------------------------------------------------

/** The per-bucket series of a metric on an arm: a ratio metric divides two metrics' sums, any other its sum by its count. */
function seriesOf(input: ExperimentInput, metric: MetricSpec, model: string): BucketSeries {
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

function modelBase(arm: ArmCounts, outcomes: number): { weight: number; assignments: number; outcomes: number; users?: number } {
  return { weight: arm.weight, assignments: arm.requests, outcomes, ...(arm.users !== undefined ? { users: arm.users } : {}) }
}

function userModels(input: ExperimentInput, metric: MetricSpec): { reports: Record<string, ModelReport>; controlMean: number } {
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

function tau2Of(mde: number): number {
  return mde * mde
}

/** One candidate's lift on a metric at the user level (CUPED-adjusted where the metric names a covariate), before any test. */
interface UserLift {
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

function userLift(input: ExperimentInput, metric: MetricSpec, candidate: string): UserLift {
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

/**
 * A checkpoint: folds every sequential p of the route into its running minima, without the rest
 * of the analysis (intervals, fixed-horizon tests), which no look needs. The same numbers as
 * analyseExperiment's sequential p's, so a read after it finds the same minima.
 */
export function foldLooks(given: ExperimentInput): void {
  const input: ExperimentInput = { ...given, metrics: given.metrics.map(withDefaults) }
  if (input.analysis.unit !== 'user') {
    analyseExperiment(given)
    return
  }
  for (const metric of input.metrics) {
    if (metric.role !== 'outcome') continue
    const mde = defaultMde(metric, ratioEstimate(seriesOf(input, metric, input.control)).estimate)
    for (const arm of input.arms) {
      if (arm.model === input.control) continue
      const l = userLift(input, metric, arm.model)
      if (!l.ready) continue
      runningMin(input, `${metric.name}\u0000${arm.model}\u0000diff`, msprtFromVariance(l.diff, l.variance, tau2Of(mde)))
      if (metric.guardrail !== null) runningMin(input, `${metric.name}\u0000${arm.model}\u0000ni`, nonInferiorSnapshot(metric, l.diff, l.variance, mde))
    }
  }
}

function userComparison(input: ExperimentInput, metric: MetricSpec, candidate: string, mde: number): Raw {
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

/**
 * Non-inferiority (a guardrail's margin m): H0 the candidate is worse by m or more. With s the
 * metric's direction (+1 when higher is better), the one-sided test is on s·Δ + m > 0: a t-test
 * for the fixed horizon, and the always-valid mixture test of s·Δ + m against 0 for the sequential
 * p (1 while s·Δ + m ≤ 0). Not adjusted across the family: a guardrail is shown non-inferior on its own.
 */
function guardrailOf(input: ExperimentInput, metric: MetricSpec, candidate: string, diff: number, variance: number, df: number, mde: number, ready: boolean): { guardrail?: ComparisonReport['guardrail'] } {
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
function nonInferiorSnapshot(metric: MetricSpec, diff: number, variance: number, mde: number): number {
  const margin = metric.guardrail?.margin ?? 0
  const shifted = (metric.higher_is_better ? diff : -diff) + margin
  return shifted > 0 ? msprtFromVariance(shifted, variance, tau2Of(Math.max(mde, margin))) : 1
}

function runningMin(input: ExperimentInput, key: string, p: number): number {
  return input.runningMin !== undefined && Number.isFinite(p) ? input.runningMin(key, p) : p
}

// --- unit: request (every outcome on its own: the analysis before units existed) ----------------

function requestModels(input: ExperimentInput, metric: MetricSpec): { reports: Record<string, ModelReport>; controlMean: number } {
  const report = independent(input, metric, defaultMde(metric, moments(input.totals(input.control, metric.name)).mean))
  const reports: Record<string, ModelReport> = {}
  for (const arm of input.arms) {
    const m = report.models[arm.model]
    const t = input.totals(arm.model, metric.name)
    const mm = moments(t)
    const se = metric.type === 'binary' ? Math.sqrt((mm.mean * (1 - mm.mean)) / t.n) : Math.sqrt(mm.variance / t.n)
    reports[arm.model] = { ...modelBase(arm, t.n), ...(m?.rate !== undefined ? { rate: m.rate } : { mean: m?.mean ?? null }), ci: m?.ci ?? [null, null], se: finite(se) }
  }
  return { reports, controlMean: moments(input.totals(input.control, metric.name)).mean }
}

/** Each metric's request-level analysis, once per analysis (models and every candidate read it). */
const independentCache = new WeakMap<ExperimentInput, Map<string, ReturnType<typeof analyseIndependent>>>()

function independent(input: ExperimentInput, metric: MetricSpec, mde: number): ReturnType<typeof analyseIndependent> {
  let cache = independentCache.get(input)
  if (cache === undefined) independentCache.set(input, cache = new Map())
  const key = `${metric.name}\u0000${mde}`
  let r = cache.get(key)
  if (r === undefined) cache.set(key, r = analyseOnce(input, metric, mde))
  return r
}

function analyseOnce(input: ExperimentInput, metric: MetricSpec, mde: number): ReturnType<typeof analyseIndependent> {
  return analyseIndependent({
    type: metric.type === 'binary' ? 'binary' : 'continuous',
    control: input.control,
    models: Object.fromEntries(input.arms.map((a) => [a.model, { ...input.totals(a.model, metric.name), assignments: a.requests }])),
    weights: Object.fromEntries(input.arms.map((a) => [a.model, a.weight])),
    mde,
    alpha: input.analysis.alpha,
    higherIsBetter: metric.higher_is_better,
    ...(input.runningMin !== undefined ? {
      runningMin: (candidate: string, p: number) => {
        // As for users: only a look with enough outcomes in both arms joins the running minimum.
        const ready = input.totals(input.control, metric.name).n >= MIN_OUTCOMES && input.totals(candidate, metric.name).n >= MIN_OUTCOMES
        return ready ? runningMin(input, `${metric.name}\u0000${candidate}\u0000diff`, p) : p
      },
    } : {}),
  })
}

function requestComparison(input: ExperimentInput, metric: MetricSpec, candidate: string, mde: number): Raw {
  const report = independent(input, metric, mde)
  const c = report.comparisons[candidate]
  const a = moments(input.totals(input.control, metric.name))
  const b = moments(input.totals(candidate, metric.name))
  const binary = metric.type === 'binary'
  const va = binary ? (a.mean * (1 - a.mean)) / a.n : a.variance / a.n
  const vb = binary ? (b.mean * (1 - b.mean)) / b.n : b.variance / b.n
  const diff = c?.abs_lift ?? Number.NaN
  const df = binary ? Number.POSITIVE_INFINITY : welchDf(va, a.n, vb, b.n)
  const required = c?.required_per_arm ?? Number.NaN
  return {
    metric,
    candidate,
    diff,
    se: Math.sqrt(va + vb),
    df,
    p: c?.p_value ?? Number.NaN,
    pSequential: c?.p_value_sequential ?? Number.NaN,
    controlN: a.n,
    candidateN: b.n,
    groupsOk: true,
    required,
    report: {
      abs_lift: c?.abs_lift ?? null,
      abs_lift_ci: c?.abs_lift_ci ?? [null, null],
      rel_lift: c?.rel_lift ?? null,
      rel_lift_ci: c?.rel_lift_ci ?? [null, null],
      se: finite(Math.sqrt(va + vb)),
      df: finite(df),
      p_value: c?.p_value ?? null,
      p_value_sequential: c?.p_value_sequential ?? null,
      required_per_arm: c?.required_per_arm ?? null,
      remaining: c?.remaining ?? null,
      ...guardrailOf(input, metric, candidate, diff, va + vb, df, mde, a.n >= MIN_OUTCOMES && b.n >= MIN_OUTCOMES),
    },
  }
}

export type { RatioEstimate }
