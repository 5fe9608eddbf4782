import type { Metrics } from '../metrics/index.js'
import { Accumulator, type Totals } from '../stats/index.js'

/** Stable totals of one metric on one arm: count, sum, and Welford's shifted mean and M2 (see stats `Totals`). */
export type OutcomeTotals = Totals

interface Cell {
  readonly acc: Accumulator
  readonly count: ReturnType<Metrics['outcomes']['labels']>
  readonly valueSum: ReturnType<Metrics['outcomeSum']['labels']>
  readonly squares: ReturnType<Metrics['outcomeSquares']['labels']>
}

interface Experiment {
  readonly identity: string
  /** Weight periods: from which route-wide assignment count on, which shares were in force. */
  readonly periods: { readonly from: number; readonly at: number; readonly shares: Readonly<Record<string, number>> }[]
  /** Running minima of sequential p-values, by metric and candidate. */
  readonly minima: Map<string, number>
}

const NO_OUTCOMES: Totals = Object.freeze(new Accumulator().totals())

/**
 * A validated batch of outcomes grouped by (route, model, metric). The caller builds it a slice at
 * a time (the string keys are looked up here, not when it is applied) and hands it to Tally.apply.
 */
export class OutcomeBatch {
  readonly #index = new Map<string, number>()
  /** The distinct cells of the batch. */
  readonly keys: { readonly route: string; readonly model: string; readonly metric: string }[] = []
  /** Per outcome, its cell's index in `keys`, and its value. */
  readonly cells: number[] = []
  readonly values: number[] = []

  /** Adds one outcome whose value passed validation (finite, 0 ≤ value ≤ MAX_OUTCOME_VALUE). */
  add(route: string, model: string, metric: string, value: number): void {
    const key = `${route}\u0000${model}\u0000${metric}`
    let cell = this.#index.get(key)
    if (cell === undefined) {
      cell = this.keys.length
      this.keys.push({ route, model, metric })
      this.#index.set(key, cell)
    }
    this.cells.push(cell)
    this.values.push(value)
  }

  get size(): number {
    return this.values.length
  }
}

/**
 * Per-process experiment totals that survive reloads: assignments per (route, model) and
 * outcome totals per (route, model, metric). The statistics read Welford's totals, which keep
 * their precision where Σx² − (Σx)²/n would not; Prometheus gets the raw count, sum and sum of
 * squares as counters, so PromQL over all replicas can compute the same figures (less precisely).
 */
export class Tally {
  readonly #metrics: Metrics
  readonly #assignments = new Map<string, { count: number }>()
  readonly #outcomes = new Map<string, Cell>()
  /** Per route: what identifies its experiment (arms, control, salt), and its weight periods. */
  readonly #experiments = new Map<string, Experiment>()

  constructor(metrics: Metrics) {
    this.#metrics = metrics
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

  /**
   * Applies a whole batch in one synchronous step, so no reader sees half of it. Nothing here can
   * throw for a validated batch: the label names are fixed, and every increment is finite and ≥ 0
   * (values are at most 1e15, so even their squares summed over any batch stay finite).
   */
  apply(batch: OutcomeBatch): void {
    const cells = batch.keys.map((k) => this.#cell(k.route, k.model, k.metric))
    const counts = cells.map(() => 0)
    const sums = cells.map(() => 0)
    const squares = cells.map(() => 0)
    const { cells: index, values } = batch
    for (let i = 0; i < values.length; i++) {
      const c = index[i] as number
      const v = values[i] as number
      ;(cells[c] as Cell).acc.add(v)
      counts[c] = (counts[c] as number) + 1
      sums[c] = (sums[c] as number) + v
      squares[c] = (squares[c] as number) + v * v
    }
    cells.forEach((cell, c) => {
      cell.count.inc(counts[c])
      cell.valueSum.inc(sums[c])
      cell.squares.inc(squares[c])
    })
  }

  /** Applies one outcome (a batch of one). */
  addOutcome(route: string, model: string, metric: string, value: number): void {
    const batch = new OutcomeBatch()
    batch.add(route, model, metric, value)
    this.apply(batch)
  }

  outcomes(route: string, model: string, metric: string): OutcomeTotals {
    return this.#outcomes.get(`${route}\u0000${model}\u0000${metric}`)?.acc.totals() ?? NO_OUTCOMES
  }

  /** Every arm's assignment count, as [route, model, count] (cluster snapshots; not the request path). */
  assignmentEntries(): [string, string, number][] {
    return [...this.#assignments].map(([key, c]) => {
      const [route, model] = key.split('\u0000') as [string, string]
      return [route, model, c.count]
    })
  }

  /** Every cell's totals, as [route, model, metric, totals] (cluster snapshots; not the request path). */
  outcomeEntries(): [string, string, string, OutcomeTotals][] {
    return [...this.#outcomes].map(([key, cell]) => {
      const [route, model, metric] = key.split('\u0000') as [string, string, string]
      return [route, model, metric, cell.acc.totals()]
    })
  }

  /**
   * Follows a route's plan as it changes. A new experiment (other arms, control or salt) starts
   * from nothing, since numbers of two experiments must not mix; new weights (a rollout's step, a
   * bandit's shares, an edited weight) start a new period of the sample-ratio check instead.
   */
  observe(route: string, identity: string, models: readonly string[], shares: ArrayLike<number>): void {
    let e = this.#experiments.get(route)
    if (e === undefined || e.identity !== identity) {
      if (e !== undefined) this.#reset(route)
      e = { identity, periods: [], minima: new Map() }
      this.#experiments.set(route, e)
    }
    const last = e.periods[e.periods.length - 1]
    const next = Object.fromEntries(models.map((m, i) => [m, shares[i] ?? 0]))
    if (last !== undefined && JSON.stringify(last.shares) === JSON.stringify(next)) return
    e.periods.push({ from: this.#routeAssignments(route), at: Date.now(), shares: next })
  }

  /** A route's weight periods: when each began (ms) and its shares (for fleet-wide expectations). */
  periods(route: string): readonly { readonly at: number; readonly shares: Readonly<Record<string, number>> }[] {
    return this.#experiments.get(route)?.periods ?? []
  }

  /**
   * Assignments a model was expected to get: each period's assignments times its share then.
   * Without periods (a tally not following a plan), undefined.
   */
  expected(route: string, model: string): number | undefined {
    const e = this.#experiments.get(route)
    if (e === undefined || e.periods.length === 0) return undefined
    const total = this.#routeAssignments(route)
    let sum = 0
    e.periods.forEach((p, i) => {
      const to = e.periods[i + 1]?.from ?? total
      sum += (to - p.from) * (p.shares[model] ?? 0)
    })
    return sum
  }

  /** The running minimum of a candidate's sequential p on a metric, over the experiment. */
  runningMin(route: string, metric: string, candidate: string, p: number): number {
    const e = this.#experiments.get(route)
    if (e === undefined) return p
    const key = `${metric}\u0000${candidate}`
    const min = Math.min(e.minima.get(key) ?? p, p)
    e.minima.set(key, min)
    return min
  }

  #routeAssignments(route: string): number {
    let total = 0
    const prefix = `${route}\u0000`
    for (const [key, c] of this.#assignments) if (key.startsWith(prefix)) total += c.count
    return total
  }

  #reset(route: string): void {
    const prefix = `${route}\u0000`
    // The counters are shared with the arms that increment them: zero them in place.
    for (const [key, c] of this.#assignments) if (key.startsWith(prefix)) c.count = 0
    for (const [key, cell] of this.#outcomes) if (key.startsWith(prefix)) this.#outcomes.set(key, { ...cell, acc: new Accumulator() })
  }

  #cell(route: string, model: string, metric: string): Cell {
    const key = `${route}\u0000${model}\u0000${metric}`
    let cell = this.#outcomes.get(key)
    if (cell === undefined) {
      const labels = { route, model, metric }
      cell = {
        acc: new Accumulator(),
        count: this.#metrics.outcomes.labels(labels),
        valueSum: this.#metrics.outcomeSum.labels(labels),
        squares: this.#metrics.outcomeSquares.labels(labels),
      }
      this.#outcomes.set(key, cell)
    }
    return cell
  }
}
