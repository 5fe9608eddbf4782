import type { Metrics } from '../metrics/index.js'
import { RouteAccumulator, unitBucket, type ExperimentInput, type RouteSpec, type UserSample } from '../experiment/index.js'
import type { RoutePlan } from '../plan/index.js'
import { Accumulator, type Totals } from '../stats/index.js'

/** Stable totals of one metric on one arm: count, sum, and Welford's shifted mean and M2 (see stats `Totals`). */
export type OutcomeTotals = Totals

type CounterChild = ReturnType<Metrics['outcomes']['labels']>

/** Prometheus children of one metric on one arm: the raw totals, and per bucket the sum and count. */
interface Exposed {
  readonly count: CounterChild
  readonly valueSum: CounterChild
  readonly squares: CounterChild
  readonly bucketSum: (CounterChild | undefined)[]
  readonly bucketCount: (CounterChild | undefined)[]
}

const NO_OUTCOMES: Totals = Object.freeze(new Accumulator().totals())

/**
 * A validated batch of outcomes grouped by (route, model, metric), each with its unit's bucket. The
 * caller builds it a slice at a time (the string keys are looked up here, not when it is applied)
 * and hands it to Tally.apply.
 */
export class OutcomeBatch {
  readonly #index = new Map<string, number>()
  /** The distinct cells of the batch. */
  readonly keys: { readonly route: string; readonly model: string; readonly metric: string }[] = []
  /** Per outcome, its cell's index in `keys`, its value and its unit's bucket. */
  readonly cells: number[] = []
  readonly values: number[] = []
  readonly buckets: number[] = []

  /** Adds one outcome whose value passed validation (finite, 0 ≤ value ≤ MAX_OUTCOME_VALUE). */
  add(route: string, model: string, metric: string, value: number, bucket = 0): void {
    const key = `${route}\u0000${model}\u0000${metric}`
    let cell = this.#index.get(key)
    if (cell === undefined) {
      cell = this.keys.length
      this.keys.push({ route, model, metric })
      this.#index.set(key, cell)
    }
    this.cells.push(cell)
    this.values.push(value)
    this.buckets.push(bucket)
  }

  get size(): number {
    return this.values.length
  }
}

/**
 * Per-process experiment totals that survive reloads: one RouteAccumulator per route (the owner
 * of its numbers: requests and users per arm, per-bucket and stable outcome totals, weight
 * periods, running minima), bound to the Prometheus counters every replica exports (raw count,
 * sum and sum of squares per arm, and per bucket the sum and count, which add up across replicas).
 */
export class Tally {
  readonly #metrics: Metrics
  readonly #assignments = new Map<string, { count: number }>()
  readonly #routes = new Map<string, RouteAccumulator>()
  readonly #exposed = new Map<string, Exposed>()
  readonly #slots = new Map<string, { sample: UserSample | null }>()

  constructor(metrics: Metrics) {
    this.#metrics = metrics
    metrics.usersSource = () => this.#usersByArm()
  }

  /** The mutable assignment counter of one arm; the request path increments it directly. */
  assignmentCounter(route: string, model: string): { count: number } {
    const key = `${route}\u0000${model}`
    let c = this.#assignments.get(key)
    if (c === undefined) {
      c = { count: 0 }
      this.#assignments.set(key, c)
    }
    return c
  }

  assignments(route: string, model: string): number {
    return this.#assignments.get(`${route}\u0000${model}`)?.count ?? 0
  }

  /** The route's experiment as it accumulates (undefined before a plan named it). */
  route(route: string): RouteAccumulator | undefined {
    return this.#routes.get(route)
  }

  /**
   * Where the request path counts a route's users at first exposure: a slot per route that observe
   * fills with the experiment's sample (null when its unit is not the user), so arms bound before
   * the swap count into the experiment that is in force after it.
   */
  userSlot(route: string): { readonly sample: UserSample | null } {
    let slot = this.#slots.get(route)
    if (slot === undefined) {
      const acc = this.#routes.get(route)
      this.#slots.set(route, slot = { sample: acc !== undefined && countsUsers(acc) ? acc.users : null })
    }
    return slot
  }

  /**
   * The bucket of an outcome's unit (its user id, else its request id), or, for an outcome with
   * neither, the next in turn (each such outcome is a unit of its own). Recorded with the outcome.
   */
  bucketOf(route: string, unit: string | null): number {
    const acc = this.#routes.get(route)
    if (acc === undefined) return 0
    return unit === null ? acc.nextBucket() : unitBucket(unit, acc.spec.analysis.buckets)
  }

  /**
   * Applies a whole batch in one synchronous step, so no reader sees half of it. Nothing here can
   * throw for a validated batch: the label names are fixed, and every increment is finite and ≥ 0
   * (values are at most 1e15, so even their squares summed over any batch stay finite).
   */
  apply(batch: OutcomeBatch): void {
    const accs = batch.keys.map((k) => this.#accumulator(k.route))
    const cells = batch.keys.map((k, i) => accs[i]?.cell(k.model, k.metric))
    const exposed = batch.keys.map((k) => this.#expose(k.route, k.model, k.metric))
    const counts = cells.map(() => 0)
    const sums = cells.map(() => 0)
    const squares = cells.map(() => 0)
    const perBucket = new Map<number, number[]>()
    const { cells: index, values, buckets } = batch
    for (let i = 0; i < values.length; i++) {
      const c = index[i] as number
      const v = values[i] as number
      const b = buckets[i] as number
      const cell = cells[c]
      if (cell !== undefined) (accs[c] as RouteAccumulator).add(cell, v, b)
      counts[c] = (counts[c] as number) + 1
      sums[c] = (sums[c] as number) + v
      squares[c] = (squares[c] as number) + v * v
      const k = c * 1024 + b
      const t = perBucket.get(k)
      if (t === undefined) perBucket.set(k, [v, 1])
      else { t[0] = (t[0] as number) + v; t[1] = (t[1] as number) + 1 }
    }
    exposed.forEach((e, c) => {
      e.count.inc(counts[c])
      e.valueSum.inc(sums[c])
      e.squares.inc(squares[c])
    })
    for (const [k, [sum, count]] of perBucket) {
      const c = Math.floor(k / 1024)
      const b = k % 1024
      const e = exposed[c] as Exposed
      const { route, model, metric } = batch.keys[c] as OutcomeBatch['keys'][number]
      const labels = { route, model, metric, bucket: String(b) }
      ;(e.bucketSum[b] ??= this.#metrics.outcomeBucketSum.labels(labels)).inc(sum)
      ;(e.bucketCount[b] ??= this.#metrics.outcomeBucketCount.labels(labels)).inc(count)
    }
  }

  /** Applies one outcome (a batch of one). */
  addOutcome(route: string, model: string, metric: string, value: number, bucket = 0): void {
    const batch = new OutcomeBatch()
    batch.add(route, model, metric, value, bucket)
    this.apply(batch)
  }

  outcomes(route: string, model: string, metric: string): OutcomeTotals {
    return this.#routes.get(route)?.cells.get(`${model}\u0000${metric}`)?.acc.totals() ?? NO_OUTCOMES
  }

  /** Every arm's assignment count, as [route, model, count] (not the request path). */
  assignmentEntries(): [string, string, number][] {
    return [...this.#assignments].map(([key, c]) => {
      const [route, model] = key.split('\u0000') as [string, string]
      return [route, model, c.count]
    })
  }

  /** A route's experiment as the analysis reads it now (the TallyView of this process). */
  input(route: RoutePlan): ExperimentInput | undefined {
    return this.#routes.get(route.name)?.input('read')
  }

  /** Every route's experiment. */
  routes(): RouteAccumulator[] {
    return [...this.#routes.values()]
  }

  /**
   * Follows a route's plan as it changes. A new experiment (other arms, control, salt, unit or
   * buckets) starts from nothing, since numbers of two experiments must not mix; new weights (a
   * rollout's step, a bandit's shares, an edited weight) start a new weight period instead.
   */
  observe(route: string, identity: string, models: readonly string[], shares: ArrayLike<number>, spec?: Omit<RouteSpec, 'identity' | 'models'>): void {
    let acc = this.#routes.get(route)
    if (acc === undefined || acc.spec.identity !== identity) {
      // The counters are shared with the arms that increment them: zero them in place.
      const prefix = `${route}\u0000`
      if (acc !== undefined) for (const [key, c] of this.#assignments) if (key.startsWith(prefix)) c.count = 0
      const full: RouteSpec = { identity, models, control: spec?.control ?? models[0] ?? '', analysis: spec?.analysis ?? { unit: 'request', buckets: 64, correction: 'holm', alpha: 0.05 }, metrics: spec?.metrics ?? [] }
      acc = new RouteAccumulator(route, full, models.map((m) => this.assignmentCounter(route, m)))
      this.#routes.set(route, acc)
    } else if (spec !== undefined) {
      acc.spec = { ...acc.spec, ...spec }
    }
    const slot = this.#slots.get(route)
    if (slot !== undefined) slot.sample = countsUsers(acc) ? acc.users : null
    acc.setShares(shares, Date.now())
  }

  /** A route's weight periods: when each began (ms) and its shares by model (for fleet-wide expectations). */
  periods(route: string): readonly { readonly at: number; readonly shares: Readonly<Record<string, number>> }[] {
    const acc = this.#routes.get(route)
    if (acc === undefined) return []
    return acc.periods.map((p) => ({ at: p.at, shares: Object.fromEntries(acc.spec.models.map((m, i) => [m, p.shares[i] ?? 0])) }))
  }

  /** Assignments a model was expected to get under the weights in force when they were made; undefined without periods. */
  expected(route: string, model: string): number | undefined {
    const acc = this.#routes.get(route)
    const i = acc?.spec.models.indexOf(model) ?? -1
    return acc === undefined || i < 0 ? undefined : acc.expectedRequests(i)
  }

  /** The running minimum of a sequential p (fleet readers keep theirs here, at every read). */
  runningMin(route: string, key: string, p: number): number {
    const acc = this.#routes.get(route)
    if (acc === undefined) return p
    const min = Math.min(acc.minima.get(key) ?? p, p)
    acc.minima.set(key, min)
    return min
  }

  #accumulator(route: string): RouteAccumulator {
    let acc = this.#routes.get(route)
    if (acc === undefined) {
      // A tally not following a plan (tests, tools): a request-unit experiment of the models seen.
      acc = new RouteAccumulator(route, { identity: '', models: [], control: '', analysis: { unit: 'request', buckets: 64, correction: 'holm', alpha: 0.05 }, metrics: [] })
      this.#routes.set(route, acc)
    }
    return acc
  }

  #expose(route: string, model: string, metric: string): Exposed {
    const key = `${route}\u0000${model}\u0000${metric}`
    let e = this.#exposed.get(key)
    if (e === undefined) {
      const labels = { route, model, metric }
      e = {
        count: this.#metrics.outcomes.labels(labels),
        valueSum: this.#metrics.outcomeSum.labels(labels),
        squares: this.#metrics.outcomeSquares.labels(labels),
        bucketSum: [],
        bucketCount: [],
      }
      this.#exposed.set(key, e)
    }
    return e
  }

  /** Sampled users and their expected count per arm, for the Prometheus gauges. */
  #usersByArm(): { route: string; model: string; users: number; expected: number }[] {
    const out: { route: string; model: string; users: number; expected: number }[] = []
    for (const acc of this.#routes.values()) {
      if (acc.spec.analysis.unit !== 'user') continue
      const input = acc.input('none')
      for (const a of input.arms) out.push({ route: acc.route, model: a.model, users: a.users ?? 0, expected: a.expectedUsers ?? 0 })
    }
    return out
  }
}

/** Users are counted where an experiment is analysed by user: a route with metrics and unit user (others pay nothing). */
function countsUsers(acc: RouteAccumulator): boolean {
  return acc.spec.analysis.unit === 'user' && acc.spec.metrics.length > 0
}
