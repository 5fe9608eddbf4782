import { combineVerdicts, msprtFromVariance, verdict as verdictOf, type Verdict } from '../stats/index.js'
import { adjustPValues } from './corrections.js'
import { ratioEstimate, type RatioEstimate } from './estimate.js'
import { MIN_OUTCOMES, defaultMde, finite, type Raw } from './per-unit.js'
import { requestComparison, requestModels } from './request-unit.js'
import { nonInferiorSnapshot, runningMin, tau2Of } from './sequential.js'
import { srmOf } from './srm.js'
import type { ExperimentInput, MetricSpec } from './types.js'
import type { ComparisonReport, MetricReport, ModelReport, RouteExperiment } from './report.js'
import { seriesOf, userComparison, userLift, userModels } from './user-unit.js'

// A route's experiment from its parts: the sample-ratio check (srm.ts), each arm and candidate at
// the unit of analysis (user-unit.ts, request-unit.ts), the family's adjustment and the verdicts here.

export { defaultMde }

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

export type { RatioEstimate }
