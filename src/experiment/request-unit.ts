import { analyseExperiment as analyseIndependent, moments } from '../stats/index.js'
import { welchDf } from './estimate.js'
import { MIN_OUTCOMES, defaultMde, finite, modelBase, type Raw } from './per-unit.js'
import { guardrailOf, runningMin } from './sequential.js'
import type { ExperimentInput, MetricSpec } from './types.js'
import type { ModelReport } from './report.js'

// The unit of analysis is the request: every outcome on its own (the analysis before units
// existed), through the stats module's independent-samples analysis.

/** Each arm's estimate of a metric and its interval, every outcome on its own. */
export function requestModels(input: ExperimentInput, metric: MetricSpec): { reports: Record<string, ModelReport>; controlMean: number } {
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

/** One candidate's test of a metric at the request level, before the family's adjustment. */
export function requestComparison(input: ExperimentInput, metric: MetricSpec, candidate: string, mde: number): Raw {
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
