import { analyseExperiment, moments, type ExperimentReport, type ModelTotals, type Sample } from '../stats/index.js'
import type { MetricConfig } from '../config/index.js'
import type { RoutePlan } from '../plan/index.js'

/** The per-arm numbers an experiment is analysed from: one Tally, or the merge of every worker's. */
export interface TallyView {
  assignments(route: string, model: string): number
  outcomes(route: string, model: string, metric: string): Sample
  /** Whose numbers these are, when not the listener's default scope. */
  readonly scope?: string
  /** Assignments expected under the weights in force when they were made (rollouts, bandits). */
  expected?(route: string, model: string): number | undefined
  /** The running minimum of a sequential p over the experiment. */
  runningMin?(route: string, metric: string, candidate: string, p: number): number
}

/** A route's experiment as /admin/experiments and MLflow show it: the plan's weights, the tally's numbers. */
export function experimentOf(route: RoutePlan, tally: TallyView): RouteExperiment {
  return analyseRoute({
    route: route.name,
    control: route.control,
    weights: Object.fromEntries(route.assigner.models.map((m, i) => [m, route.assigner.weights[i] ?? 0])),
    metrics: route.metrics,
    assignments: (model) => tally.assignments(route.name, model),
    outcomes: (model, metric) => tally.outcomes(route.name, model, metric),
    ...(tally.expected?.(route.name, route.control) !== undefined ? { expected: (model: string) => tally.expected?.(route.name, model) ?? 0 } : {}),
    ...(tally.runningMin !== undefined ? { runningMin: (metric: string, candidate: string, p: number) => tally.runningMin?.(route.name, metric, candidate, p) ?? p } : {}),
  })
}

/** What one route's experiment needs: its split, control, metrics and the totals per arm. */
export interface ExperimentData {
  readonly route: string
  readonly control: string
  readonly weights: Readonly<Record<string, number>>
  readonly metrics: readonly MetricConfig[]
  assignments(model: string): number
  /** The outcomes' totals: stable `Totals` from the tally or the report (raw sums are accepted too). */
  outcomes(model: string, metric: string): Sample
  /** Assignments expected under the weights in force when they were made (for the sample-ratio check). */
  expected?(model: string): number
  /** Keeps the running minimum of a candidate's sequential p on a metric. */
  runningMin?(metric: string, candidate: string, p: number): number
}

export interface RouteExperiment {
  readonly route: string
  readonly control: string
  readonly metrics: Record<string, ExperimentReport>
}

/** Default minimum detectable effect: 1 point of rate, or 5% of the control's mean. */
export function defaultMde(metric: MetricConfig, controlMean: number): number {
  if (metric.mde !== null) return metric.mde
  if (metric.type === 'binary') return 0.01
  const m = Math.abs(controlMean)
  return Number.isFinite(m) && m > 0 ? 0.05 * m : 1
}

/** Per metric: each arm's rate or mean with its interval, each candidate against the control, SRM, verdict. */
export function analyseRoute(data: ExperimentData): RouteExperiment {
  const models = Object.keys(data.weights)
  const metrics: Record<string, ExperimentReport> = {}
  for (const metric of data.metrics) {
    const totals: Record<string, ModelTotals> = {}
    for (const model of models) {
      totals[model] = { ...data.outcomes(model, metric.name), assignments: data.assignments(model) }
    }
    const control = totals[data.control]
    const controlMean = control !== undefined ? moments(control).mean : NaN
    metrics[metric.name] = analyseExperiment({
      type: metric.type,
      control: data.control,
      models: totals,
      weights: data.weights,
      mde: defaultMde(metric, controlMean),
      higherIsBetter: metric.higher_is_better,
      ...(data.expected !== undefined ? { expected: Object.fromEntries(models.map((m) => [m, (data.expected as (model: string) => number)(m)])) } : {}),
      ...(data.runningMin !== undefined ? { runningMin: (candidate: string, p: number) => (data.runningMin as NonNullable<ExperimentData['runningMin']>)(metric.name, candidate, p) } : {}),
    })
  }
  return { route: data.route, control: data.control, metrics }
}
