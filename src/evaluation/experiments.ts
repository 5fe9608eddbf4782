import { analyseExperiment, type ExperimentInput, type RouteExperiment, type RouteSpec } from '../experiment/index.js'
import type { RoutePlan } from '../plan/index.js'

export type { RouteExperiment }

/**
 * Where a route's experiment numbers come from: this process's tally, the merge of every
 * worker's, or the fleet's through Prometheus. Each gives the analysis input; the analysis
 * itself is experiment/'s, the same for every reader.
 */
export interface TallyView {
  /** The route's experiment as of now, for the plan's route (undefined: nothing counted yet). */
  input(route: RoutePlan): ExperimentInput | undefined
  /** Whose numbers these are, when not the listener's default scope. */
  readonly scope?: string
}

/** The part of a route's plan the experiment follows (its identity and models come with it). */
export function specOf(route: RoutePlan): Omit<RouteSpec, 'identity' | 'models'> {
  return { control: route.control, analysis: route.config.analysis, metrics: route.metrics }
}

/** A route's experiment as every reader shows it: the plan's route, the view's numbers. */
export function experimentOf(route: RoutePlan, view: TallyView): RouteExperiment {
  return analyseExperiment(view.input(route) ?? emptyInput(route))
}

/** An experiment with nothing counted: every arm at zero. */
export function emptyInput(route: RoutePlan): ExperimentInput {
  const b = route.config.analysis.buckets
  const empty = { sum: new Float64Array(b), count: new Float64Array(b) }
  return {
    route: route.name,
    ...specOf(route),
    arms: route.assigner.models.map((model, i) => ({ model, weight: route.assigner.shares[i] ?? 0, requests: 0 })),
    cells: () => empty,
    totals: () => ({ n: 0, sum: 0, shift: 0, offset: 0, m2: 0 }),
  }
}
