import type { Config, RouteConfig } from '../config/index.js'
import { RouteAccumulator, analyseExperiment, unitBucket, unitHash, type RouteExperiment } from '../experiment/index.js'
import { asOutcomeRecord, asPredictionRecord } from '../record/index.js'

/**
 * Replays records into one RouteAccumulator per route with metrics, as the router fed its own:
 * requests assigned by hash and users at first exposure from prediction records (the shares in
 * force recorded with each start the weight periods), outcomes with the bucket the router
 * recorded (older records: their user's or request's). Records are read in file order, the order
 * the router applied them, so the running minima of sequential p's are taken at the same
 * checkpoints and the numbers match /admin/experiments field for field. Memory grows with the
 * arms, buckets and the bounded user sample, not with the records.
 */
export class ExperimentAccumulator {
  readonly #routes = new Map<string, { config: RouteConfig; acc: RouteAccumulator }>()

  constructor(config: Config) {
    for (const r of config.routes) {
      if (r.metrics.length === 0) continue
      const models = r.split.map((s) => s.model)
      const acc = new RouteAccumulator(r.name, { identity: '', models, control: r.control, analysis: r.analysis, metrics: r.metrics })
      this.#routes.set(r.name, { config: r, acc })
    }
  }

  add(record: Record<string, unknown>): void {
    const prediction = asPredictionRecord(record)
    if (prediction !== undefined) {
      const route = this.#routes.get(prediction.route)
      if (route === undefined || prediction.assignment !== 'hash') return
      const { acc, config } = route
      const arm = acc.spec.models.indexOf(prediction.primary.model)
      if (arm < 0) return
      const recorded = prediction.shares
      const shares = recorded !== undefined && recorded !== null ? acc.spec.models.map((m) => recorded[m] ?? 0) : weightsOf(config)
      acc.setShares(shares, Date.parse(prediction.ts))
      acc.expose(arm, acc.spec.analysis.unit === 'user' && typeof prediction.user_id === 'string' ? unitHash(prediction.user_id) : null)
      return
    }
    const outcome = asOutcomeRecord(record)
    if (outcome === undefined || outcome.counted === false) return
    const route = this.#routes.get(outcome.route)
    if (route === undefined || !route.config.metrics.some((m) => m.name === outcome.metric)) return
    const { acc } = route
    if (acc.periods.length === 0) acc.setShares(weightsOf(route.config), Date.parse(outcome.ts))
    const unit = typeof outcome.user_id === 'string' ? outcome.user_id : typeof outcome.request_id === 'string' ? outcome.request_id : null
    const bucket = typeof outcome.bucket === 'number' ? outcome.bucket : unit !== null ? unitBucket(unit, acc.spec.analysis.buckets) : acc.nextBucket()
    acc.add(acc.cell(outcome.model, outcome.metric), outcome.value, bucket)
  }

  /** The statistics of every route of the config that declares metrics, over the records read. */
  result(config: Config): RouteExperiment[] {
    return config.routes.filter((r) => r.metrics.length > 0).map((r) => {
      const acc = this.#routes.get(r.name)?.acc
      if (acc !== undefined && acc.periods.length === 0) acc.setShares(weightsOf(r), 0)
      return analyseExperiment((acc as RouteAccumulator).input('read'))
    })
  }
}

function weightsOf(r: RouteConfig): number[] {
  const total = r.split.reduce((a, s) => a + s.weight, 0)
  return r.split.map((s) => (total > 0 ? s.weight / total : 0))
}
