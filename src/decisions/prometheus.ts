import type { PrometheusSource } from '../config/decisions.js'
import { queryVector, type VectorSample } from '../metrics/prom-query.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import type { Summary } from '../stats/index.js'
import type { DecisionData } from './engine.js'
import type { ShadowEvidence } from './promotion.js'
import { bucketQuantile } from './histogram.js'
import type { ArmWindow } from './rollout.js'


/** What Prometheus knows of a route's rollout across the fleet. */
export interface FleetRollout {
  readonly definition: string | null
  readonly candidate: string | null
  readonly control: string | null
  readonly percent: number | null
  readonly stepStartedAt: number | null
  readonly state: string | null
  readonly lastAction: { readonly action: string; readonly at: number } | null
}

/**
 * The fleet's figures from Prometheus: instant queries at the boundary's timestamp over the
 * metrics every replica exports, so every replica that reads the same Prometheus gets the same
 * numbers and takes the same decision, without talking to the others. A step's window is the
 * difference of the cumulative counters at its start and at the boundary; outcome totals are raw sums.
 */
export class PrometheusData implements DecisionData {
  readonly #source: PrometheusSource

  constructor(source: PrometheusSource) {
    this.#source = source
  }

  startWindow(): void {
    // Windows are ranges in the query: nothing to keep.
  }

  async window(route: RouteRuntime, since: number, boundary: number): Promise<Map<string, ArmWindow> | string> {
    const r = JSON.stringify(route.name)
    // Cumulative counts at the boundary minus those at the step's start. (increase() would lose
    // the first sample of a series born inside the window, such as a candidate's first requests.)
    const queries = [
      `sum by (model) (modelsplit_requests_total{route=${r}})`,
      `sum by (model) (modelsplit_requests_total{route=${r},code=~"5.."})`,
      `sum by (model, le) (modelsplit_request_duration_seconds_bucket{route=${r}})`,
    ]
    const at = await Promise.all([...queries.map((q) => this.#query(q, boundary)), ...queries.map((q) => this.#query(q, since))])
    for (const x of at) if (typeof x === 'string') return x
    const [reqB, errB, bucketsB, reqS, errS, bucketsS] = at as VectorSample[][]
    const byModel = (v: VectorSample[]): Map<string, number> => new Map(v.map((x) => [x.metric.model ?? '', Number(x.value[1])]))
    const buckets = (v: VectorSample[], model: string): Map<number, number> => new Map(v.filter((x) => x.metric.model === model).map((x) => [x.metric.le === '+Inf' ? Infinity : Number(x.metric.le), Number(x.value[1])]))
    const [rb, eb, rs, es] = [byModel(reqB as VectorSample[]), byModel(errB as VectorSample[]), byModel(reqS as VectorSample[]), byModel(errS as VectorSample[])]
    const out = new Map<string, ArmWindow>()
    for (const arm of route.targets) {
      const requests = (rb.get(arm.model) ?? 0) - (rs.get(arm.model) ?? 0)
      // A replica that restarted inside the window counts from zero again: the difference cannot
      // be trusted, so the decision holds rather than judge on it.
      if (requests < 0) return `counters of ${arm.model} went down inside the window (a replica restarted)`
      const b1 = buckets(bucketsB as VectorSample[], arm.model)
      const b0 = buckets(bucketsS as VectorSample[], arm.model)
      const bounds = [...b1.keys()].filter((le) => Number.isFinite(le)).sort((x, y) => x - y)
      let previous = 0
      const counts = bounds.map((le) => {
        const cumulative = (b1.get(le) ?? 0) - (b0.get(le) ?? 0)
        const c = cumulative - previous
        previous = cumulative
        return Math.max(0, c)
      })
      const total = (b1.get(Infinity) ?? 0) - (b0.get(Infinity) ?? 0)
      out.set(arm.model, { requests, errors: (eb.get(arm.model) ?? 0) - (es.get(arm.model) ?? 0), p99: bucketQuantile(bounds, counts, total, 0.99) })
    }
    return out
  }

  async outcomes(route: string, model: string, metric: string, boundary: number): Promise<Summary | string> {
    const sel = `{route=${JSON.stringify(route)},model=${JSON.stringify(model)},metric=${JSON.stringify(metric)}}`
    const [n, sum, squares] = await Promise.all([
      this.#scalar(`sum(modelsplit_outcomes_total${sel})`, boundary),
      this.#scalar(`sum(modelsplit_outcome_value_sum${sel})`, boundary),
      this.#scalar(`sum(modelsplit_outcome_value_squares_sum${sel})`, boundary),
    ])
    for (const x of [n, sum, squares]) if (typeof x === 'string') return x
    return { n: n as number, sum: sum as number, sumSquares: squares as number }
  }

  async shadow(route: RouteRuntime, shadow: string, control: string, boundary: number): Promise<ShadowEvidence | string> {
    const r = JSON.stringify(route.name)
    const s = JSON.stringify(shadow)
    const c = JSON.stringify(control)
    const [agreed, compared, requests, errors, shadowP99, controlP99] = await Promise.all([
      this.#scalar(`sum(modelsplit_shadow_comparisons_total{route=${r},primary=${c},shadow=${s},result="agree"})`, boundary),
      this.#scalar(`sum(modelsplit_shadow_comparisons_total{route=${r},primary=${c},shadow=${s},result=~"agree|disagree"})`, boundary),
      this.#scalar(`sum(modelsplit_shadow_requests_total{route=${r},model=${s}})`, boundary),
      this.#scalar(`sum(modelsplit_shadow_requests_total{route=${r},model=${s},code=~"5.."})`, boundary),
      this.#scalar(`histogram_quantile(0.99, sum by (le) (modelsplit_shadow_duration_seconds_bucket{route=${r},model=${s}}))`, boundary),
      this.#scalar(`histogram_quantile(0.99, sum by (le) (modelsplit_request_duration_seconds_bucket{route=${r},model=${c}}))`, boundary),
    ])
    for (const x of [agreed, compared, requests, errors, shadowP99, controlP99]) if (typeof x === 'string') return x
    const finite = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null)
    return { agreed: agreed as number, compared: compared as number, requests: requests as number, errors: errors as number, shadowP99: finite(shadowP99), controlP99: finite(controlP99) }
  }

  async #scalar(query: string, boundary: number): Promise<number | string> {
    const v = await this.#query(query, boundary)
    if (typeof v === 'string') return v
    // No series (nothing counted yet) is zero, not missing data.
    return v.length === 0 ? 0 : Number(v[0]?.value[1])
  }

  /**
   * The fleet's rollout on a route as of a time: what a new replica resumes (its step, state,
   * candidate and when the step began) and the latest operator action on any replica.
   */
  async rollout(route: string, at: number): Promise<FleetRollout | string> {
    const r = JSON.stringify(route)
    const [info, step, started, state, action] = await Promise.all([
      this.#query(`max by (definition, candidate, control) (modelsplit_rollout_info{route=${r}})`, at),
      this.#query(`max(modelsplit_rollout_step{route=${r}})`, at),
      this.#query(`max(modelsplit_rollout_step_started_seconds{route=${r}})`, at),
      this.#query(`max by (state) (modelsplit_rollout_state{route=${r}}) == 1`, at),
      this.#query(`max by (action) (modelsplit_rollout_operator_action_seconds{route=${r}})`, at),
    ])
    for (const x of [info, step, started, state, action]) if (typeof x === 'string') return x
    const first = (v: VectorSample[] | string): VectorSample | undefined => (v as VectorSample[])[0]
    const latest = (action as VectorSample[]).reduce<VectorSample | undefined>((a, b) => (a === undefined || Number(b.value[1]) > Number(a.value[1]) ? b : a), undefined)
    return {
      definition: first(info)?.metric.definition ?? null,
      candidate: first(info)?.metric.candidate ?? null,
      control: first(info)?.metric.control ?? null,
      percent: first(step) === undefined ? null : Number(first(step)?.value[1]),
      stepStartedAt: first(started) === undefined ? null : 1000 * Number(first(started)?.value[1]),
      state: first(state)?.metric.state ?? null,
      lastAction: latest === undefined ? null : { action: latest.metric.action ?? '', at: 1000 * Number(latest.value[1]) },
    }
  }

  /** An instant query at a time (ms); a string says why it failed. */
  #query(query: string, at: number): Promise<VectorSample[] | string> {
    return queryVector(this.#source.url, query, at)
  }
}
