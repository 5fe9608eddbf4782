import { Accumulator, type Totals } from '../stats/index.js'
import { foldLooks } from './analyse.js'
import type { AnalysisSpec, ExperimentInput, MetricSpec } from './types.js'
import { UserSample, usersObservedExpected } from './users.js'

/** What identifies a route's experiment and how it is analysed: the plan's part of it. */
export interface RouteSpec {
  /** Arms, control, salt, registered versions and the unit's settings: a change starts a new experiment. */
  readonly identity: string
  /** The split's models, in split order (the arm index of exposures). */
  readonly models: readonly string[]
  readonly control: string
  readonly analysis: AnalysisSpec
  readonly metrics: readonly MetricSpec[]
}

/** One weight period: from which route-wide assignment count on, and when, which shares were in force. */
export interface WeightPeriod {
  readonly from: number
  readonly at: number
  readonly shares: readonly number[]
}

/** Totals of one metric on one arm: the stable totals (unit request) and the per-bucket sums and counts (unit user). */
export interface MetricCell {
  readonly acc: Accumulator
  readonly sum: Float64Array
  readonly count: Float64Array
}

/**
 * The sequential p's running minimum is taken at looks: at the route's 100th outcome, then each
 * time its outcomes have grown by another LOOK_GROWTH (5 %), in the order they were applied, and
 * (without keeping it) at every read. The offline report replays the records in the same order, so
 * it takes the same looks and finds the same minimum. A geometric schedule keeps a look's cost
 * per outcome falling as an experiment grows (about 150 looks up to 200 000 outcomes), so a large
 * feedback batch, applied in one step, does not hold the event loop for a look per 100 outcomes.
 */
export const FIRST_LOOK = 100
export const LOOK_GROWTH = 1.05

/** The outcome count of the look after the one at `n`. */
export function nextLook(n: number): number {
  return Math.max(n + 1, Math.ceil(n * LOOK_GROWTH))
}

const EMPTY_CELL_CACHE = new Map<number, { sum: Float64Array; count: Float64Array }>()

/**
 * One route's experiment as it accumulates, the one owner of its numbers: requests per arm,
 * users at first exposure (sampled, for the sample-ratio check), per-bucket outcome totals and
 * stable totals per arm and metric, weight periods and the running minima of sequential p's.
 * The live router and the offline report each feed one of these and read the analysis from it.
 */
export class RouteAccumulator {
  readonly route: string
  /** The plan's part: replaced (same identity) when a reload edits metrics, alpha or correction. */
  spec: RouteSpec
  /** Requests assigned by hash, per arm (objects, so the request path can hold one and count). */
  readonly assigned: { count: number }[]
  readonly periods: WeightPeriod[] = []
  readonly users: UserSample
  readonly cells = new Map<string, MetricCell>()
  readonly minima = new Map<string, number>()
  #outcomes = 0
  #nextLook = FIRST_LOOK
  #roundRobin = 0

  constructor(route: string, spec: RouteSpec, assigned?: { count: number }[]) {
    this.route = route
    this.spec = spec
    this.assigned = assigned ?? spec.models.map(() => ({ count: 0 }))
    this.users = new UserSample(spec.models.length)
  }

  /** Requests assigned by hash, on every arm. */
  get requests(): number {
    let n = 0
    for (const a of this.assigned) n += a.count
    return n
  }

  /**
   * Adopts the shares in force; a change starts a new weight period, from `from` requests on (default:
   * the requests so far; the totals a warehouse reduced give it). True when it did.
   */
  setShares(shares: ArrayLike<number>, at: number, from = this.requests): boolean {
    const next = Array.from({ length: this.spec.models.length }, (_, i) => shares[i] ?? 0)
    const last = this.periods[this.periods.length - 1]
    if (last !== undefined && last.shares.every((s, i) => s === next[i])) return false
    this.periods.push({ from, at, shares: next })
    this.users.newPeriod()
    return true
  }

  /** One request assigned by hash to arm `arm`, of the unit with hash `unitHash` (null: none known). */
  expose(arm: number, unitHash: number | null): void {
    const a = this.assigned[arm]
    if (a === undefined) return
    a.count++
    if (unitHash !== null) this.users.see(unitHash, arm)
  }

  /** A bucket for an outcome with no unit (no user id, no request id): in turn, each is its own unit. */
  nextBucket(): number {
    const b = this.#roundRobin
    this.#roundRobin = (b + 1) % this.spec.analysis.buckets
    return b
  }

  /** The cell of a metric on an arm, made on first use. */
  cell(model: string, metric: string): MetricCell {
    const key = `${model}\u0000${metric}`
    let c = this.cells.get(key)
    if (c === undefined) {
      const b = this.spec.analysis.buckets
      c = { acc: new Accumulator(), sum: new Float64Array(b), count: new Float64Array(b) }
      this.cells.set(key, c)
    }
    return c
  }

  /** Adds one outcome; a look at the sequential p's follows when the outcomes reach the next look (see FIRST_LOOK). */
  add(cell: MetricCell, value: number, bucket: number): void {
    cell.acc.add(value)
    const b = bucket % cell.sum.length
    cell.sum[b] = (cell.sum[b] as number) + value
    cell.count[b] = (cell.count[b] as number) + 1
    if (++this.#outcomes >= this.#nextLook) {
      this.#nextLook = nextLook(this.#outcomes)
      this.checkpoint()
    }
  }

  /** Folds every sequential p of the analysis now into the running minima. */
  checkpoint(): void {
    if (!this.spec.models.includes(this.spec.control)) return
    foldLooks(this.input('fold'))
  }

  /** Requests each arm was expected to get: each period's requests times its share then. */
  expectedRequests(arm: number): number | undefined {
    if (this.periods.length === 0) return undefined
    const total = this.requests
    let sum = 0
    this.periods.forEach((p, i) => {
      sum += ((this.periods[i + 1]?.from ?? total) - p.from) * (p.shares[arm] ?? 0)
    })
    return sum
  }

  /**
   * What the analysis reads. `minima`: 'fold' keeps each sequential p's minimum (checkpoints),
   * 'read' takes the minimum with the kept ones without keeping it (readers), 'none' the snapshot.
   */
  input(minima: 'fold' | 'read' | 'none' = 'read'): ExperimentInput {
    const models = this.spec.models
    const shares = this.periods[this.periods.length - 1]?.shares
    const users = usersObservedExpected(this.users, this.periods.map((p) => p.shares), models.length)
    const kept = this.minima
    return {
      route: this.route,
      control: this.spec.control,
      analysis: this.spec.analysis,
      metrics: this.spec.metrics,
      arms: models.map((model, i) => ({
        model,
        weight: shares?.[i] ?? 0,
        requests: this.assigned[i]?.count ?? 0,
        ...(this.periods.length > 0 ? { expectedRequests: this.expectedRequests(i) as number } : {}),
        ...(this.spec.analysis.unit === 'user' ? { users: users.observed[i] as number, expectedUsers: users.expected[i] as number } : {}),
      })),
      cells: (model, metric) => this.cells.get(`${model}\u0000${metric}`) ?? emptyCells(this.spec.analysis.buckets),
      totals: (model, metric) => this.cells.get(`${model}\u0000${metric}`)?.acc ?? EMPTY_TOTALS,
      ...(minima === 'none' ? {} : {
        runningMin: (key: string, p: number) => {
          const m = Math.min(kept.get(key) ?? p, p)
          if (minima === 'fold') kept.set(key, m)
          return m
        },
      }),
      userSampleFraction: 2 ** -this.users.level,
    }
  }
}

const EMPTY_TOTALS: Totals = Object.freeze(new Accumulator().totals())

function emptyCells(buckets: number): { sum: Float64Array; count: Float64Array } {
  let e = EMPTY_CELL_CACHE.get(buckets)
  if (e === undefined) EMPTY_CELL_CACHE.set(buckets, e = { sum: new Float64Array(buckets), count: new Float64Array(buckets) })
  return e
}
