import type { Metrics } from '../metrics/index.js'

/** Count, sum and sum of squares of one metric on one arm: all that means, rates and variances need. */
export interface OutcomeTotals {
  n: number
  sum: number
  sumSquares: number
}

interface Cell extends OutcomeTotals {
  readonly count: ReturnType<Metrics['outcomes']['labels']>
  readonly valueSum: ReturnType<Metrics['outcomeSum']['labels']>
  readonly squares: ReturnType<Metrics['outcomeSquares']['labels']>
}

/**
 * Per-process experiment totals that survive reloads: assignments per (route, model) and
 * outcome totals per (route, model, metric). Prometheus gets the same numbers as counters, so
 * PromQL over all replicas and /admin/experiments on one replica compute the same statistics.
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

  addOutcome(route: string, model: string, metric: string, value: number): void {
    const key = `${route}\u0000${model}\u0000${metric}`
    let cell = this.#outcomes.get(key)
    if (cell === undefined) {
      const labels = { route, model, metric }
      cell = {
        n: 0, sum: 0, sumSquares: 0,
        count: this.#metrics.outcomes.labels(labels),
        valueSum: this.#metrics.outcomeSum.labels(labels),
        squares: this.#metrics.outcomeSquares.labels(labels),
      }
      this.#outcomes.set(key, cell)
    }
    cell.n++
    cell.sum += value
    cell.sumSquares += value * value
    cell.count.inc()
    // Feedback validation admits only values >= 0: Prometheus counters must never decrease.
    cell.valueSum.inc(value)
    cell.squares.inc(value * value)
  }

  outcomes(route: string, model: string, metric: string): OutcomeTotals {
    const c = this.#outcomes.get(`${route}\u0000${model}\u0000${metric}`)
    return c === undefined ? { n: 0, sum: 0, sumSquares: 0 } : { n: c.n, sum: c.sum, sumSquares: c.sumSquares }
  }
}
