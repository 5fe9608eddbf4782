import type { AnalysisConfig, MetricConfig } from '../config/types.js'
import type { Sample } from '../stats/index.js'
import type { BucketSeries } from './estimate.js'

/** What an outcome's statistics are computed per: each user (hashed into buckets), or each outcome on its own. */
export type AnalysisUnit = 'user' | 'request'

/** A route's analysis settings: the `analysis` key, defaults filled in (config/types.ts documents each). */
export type AnalysisSpec = AnalysisConfig

/** One metric as the analysis needs it: the route's `metrics` entry, defaults filled in. */
export type MetricSpec = MetricConfig

/** One arm of a route's experiment: its weight and how many requests and users it was assigned. */
export interface ArmCounts {
  readonly model: string
  /** The weight in force, as a share (0..1) or in the config's units: only its ratio to the others matters. */
  readonly weight: number
  /** Requests assigned by hash. */
  readonly requests: number
  /** Requests expected under the weights in force when they were made; default: `weight`'s share. */
  readonly expectedRequests?: number
  /** Sampled users first exposed to this arm (unit user), and how many were expected. */
  readonly users?: number
  readonly expectedUsers?: number
}

/** Everything the analysis of one route reads: its settings, arms, and totals per arm and metric. */
export interface ExperimentInput {
  readonly route: string
  readonly control: string
  readonly analysis: AnalysisSpec
  readonly arms: readonly ArmCounts[]
  readonly metrics: readonly MetricSpec[]
  /** Per-bucket sums and counts of a metric's outcomes on an arm (unit user). */
  cells(model: string, metric: string): { readonly sum: ArrayLike<number>; readonly count: ArrayLike<number> }
  /** Stable totals of a metric's outcomes on an arm (unit request). */
  totals(model: string, metric: string): Sample
  /**
   * The running minimum of a sequential p over the experiment's checkpoints (the caller keeps
   * them); `key` names the metric, candidate and test. Absent: the snapshot p alone.
   */
  runningMin?(key: string, p: number): number
  /** Fraction of users in the user sample (1, 1/2, 1/4, …), for display. */
  readonly userSampleFraction?: number
}

export type { BucketSeries }
