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
