import type { Config } from '../config/index.js'
import { analyseRoute, type RouteExperiment } from '../evaluation/index.js'

interface Totals { n: number; sum: number; sumSquares: number }

/**
 * Tallies what A/B statistics need from record files: requests assigned by hash per (route,
 * model), from prediction records, and count/sum/sum of squares per (route, model, metric), from
 * outcome records. Memory grows with the number of arms, not records.
 */
export class ExperimentAccumulator {
  readonly #assignments = new Map<string, number>()
  readonly #outcomes = new Map<string, Totals>()

  add(record: Record<string, unknown>): void {
    const { type, route } = record
    if (typeof route !== 'string') return
    if (type === 'prediction') {
      const model = (record.primary as { model?: unknown } | undefined)?.model
      if (record.assignment === 'hash' && typeof model === 'string') {
        const key = `${route}\u0000${model}`
        this.#assignments.set(key, (this.#assignments.get(key) ?? 0) + 1)
      }
      return
    }
    if (type === 'outcome' && typeof record.model === 'string' && typeof record.metric === 'string' && typeof record.value === 'number' && Number.isFinite(record.value)) {
      const key = `${route}\u0000${record.model}\u0000${record.metric}`
      let t = this.#outcomes.get(key)
      if (t === undefined) {
        t = { n: 0, sum: 0, sumSquares: 0 }
        this.#outcomes.set(key, t)
      }
      t.n++
      t.sum += record.value
      t.sumSquares += record.value * record.value
    }
  }

  /** The statistics of every route of `config` that declares metrics, over the records read. */
  result(config: Config): RouteExperiment[] {
    return config.routes.filter((r) => r.metrics.length > 0).map((r) => analyseRoute({
      route: r.name,
      control: r.control,
      weights: Object.fromEntries(r.split.map((s) => [s.model, s.weight])),
      metrics: r.metrics,
      assignments: (model) => this.#assignments.get(`${r.name}\u0000${model}`) ?? 0,
      outcomes: (model, metric) => this.#outcomes.get(`${r.name}\u0000${model}\u0000${metric}`) ?? { n: 0, sum: 0, sumSquares: 0 },
    }))
  }
}
