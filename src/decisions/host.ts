import type { Metrics } from '../metrics/index.js'
import type { RoutePlan } from '../plan/index.js'
import type { RouteRuntime, Runtime } from '../proxy/runtime.js'
import type { DecisionRecord } from '../record/schema.js'
import type { WinTally } from '../stats/index.js'
import type { ExperimentInput, RouteExperiment } from '../experiment/index.js'
import type { TallyView } from '../evaluation/index.js'
import type { ShadowEvidence } from './promotion.js'
import type { ArmWindow } from './rollout.js'

/** What the engine needs of the router; no transport, so a test drives it with a fake clock. */
export interface DecisionHost {
  /** The runtime in force (its arms carry the counters the local data come from). */
  runtime(): Runtime
  /** This replica's numbers of a route's experiment (the tally's). */
  experiment(route: RoutePlan): ExperimentInput | undefined
  /** The fleet's numbers through Prometheus as of a time (evaluation.prometheus). */
  fleet?(url: string, at: number): Promise<TallyView | string>
  /** The judge's verdicts on a shadow against a primary, this process's (api: openai routes with a judge). */
  judged?(route: string, primary: string, shadow: string): WinTally | undefined
  /** Rebuilds the plan in force with the engine's weights (after a decision changed them). */
  refresh(): Promise<{ ok: true } | { ok: false; error: string }>
  record(record: DecisionRecord): void
  log(level: 'info' | 'warn', message: string): void
  readonly metrics: Metrics
  now(): number
}

/** One decision as the admin API, the records and the log show it. */
export interface DecisionEntry {
  readonly at: string
  readonly kind: 'rollout' | 'bandit' | 'promotion' | 'operator'
  readonly result: string
  readonly reason: string
  readonly inputs?: unknown
}

export type OperatorAction = 'pause' | 'resume' | 'abort' | 'promote'

/**
 * Where decisions read their figures as of a boundary. A string answer says why there are none
 * (the decision then holds).
 */
export interface DecisionData {
  /** Marks the start of a step's window (sources that keep their own snapshots). */
  startWindow(route: string, at: number): void
  /** Per model: requests, 5xx and p99 from `since` to `boundary`. */
  window(route: RouteRuntime, since: number, boundary: number): Promise<Map<string, ArmWindow> | string>
  /** The route's experiment (experiment/'s analysis of this replica's or the fleet's numbers), as of the boundary. */
  experiment(route: RouteRuntime, boundary: number): Promise<RouteExperiment | string>
  /** A shadow's comparisons with the control and its own figures, as of the boundary. */
  shadow(route: RouteRuntime, shadow: string, control: string, boundary: number): Promise<ShadowEvidence | string>
  /** The judge's verdicts on a shadow against a primary, as of the boundary (none counted: zeros). */
  judged?(route: RouteRuntime, primary: string, shadow: string, boundary: number): Promise<WinTally | string>
}

/** What one route's decision works with, handed to it by the engine. */
export interface DecisionContext {
  readonly host: DecisionHost
  /** Where figures come from as of the plan in force (asked anew at each use: a reload may change it). */
  data(): DecisionData
  /** Routes whose rollout this process started afresh (no saved state): a fleet may be ahead. */
  readonly fresh: Set<string>
}
