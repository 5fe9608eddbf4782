import type { Config } from '../config/index.js'
import { analyseRoute, type RouteExperiment } from '../evaluation/index.js'
import { asOutcomeRecord, asPredictionRecord } from '../record/index.js'
import { Accumulator } from '../stats/index.js'

const NO_OUTCOMES = new Accumulator().totals()

/**
 * Tallies what A/B statistics need from record files: requests assigned by hash per (route,
 * model), from prediction records, and stable totals (count, sum, Welford's mean and M2) per
 * (route, model, metric), from outcome records. Memory grows with the number of arms, not records.
 * Outcomes are added in file order, the order the router applied them, so the totals match its
 * own bit for bit.
 */
export class ExperimentAccumulator {
  readonly #assignments = new Map<string, number>()
  readonly #outcomes = new Map<string, Accumulator>()

  add(record: Record<string, unknown>): void {
    const prediction = asPredictionRecord(record)
    if (prediction !== undefined) {
      if (prediction.assignment === 'hash') {
        const key = `${prediction.route}\u0000${prediction.primary.model}`
        this.#assignments.set(key, (this.#assignments.get(key) ?? 0) + 1)
      }
      return
    }
    const outcome = asOutcomeRecord(record)
    if (outcome === undefined) return
    const key = `${outcome.route}\u0000${outcome.model}\u0000${outcome.metric}`
    let acc = this.#outcomes.get(key)
    if (acc === undefined) {
      acc = new Accumulator()
      this.#outcomes.set(key, acc)
    }
    acc.add(outcome.value)
  }

  /** The statistics of every route of `config` that declares metrics, over the records read. */
  result(config: Config): RouteExperiment[] {
    return config.routes.filter((r) => r.metrics.length > 0).map((r) => analyseRoute({
      route: r.name,
      control: r.control,
      weights: Object.fromEntries(r.split.map((s) => [s.model, s.weight])),
      metrics: r.metrics,
      assignments: (model) => this.#assignments.get(`${r.name}\u0000${model}`) ?? 0,
      outcomes: (model, metric) => this.#outcomes.get(`${r.name}\u0000${model}\u0000${metric}`)?.totals() ?? NO_OUTCOMES,
    }))
  }
}
