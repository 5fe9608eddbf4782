import type { PrometheusSource } from '../config/decisions.js'
import { queryMatrix, queryVector, type VectorSample } from '../metrics/prom-query.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import { experimentOf, type RouteExperiment, type TallyView } from '../evaluation/index.js'
import type { DecisionData } from './host.js'
import type { ShadowEvidence } from './promotion.js'
import { counterIncrease, seriesKey } from './counters.js'
import { bucketQuantile } from './histogram.js'
import type { ArmWindow } from './rollout.js'
import type { WinTally } from '../stats/index.js'


/** One replica's rollout on a route, from the gauges it exports. */
export interface ReplicaRollout {
  readonly definition: string
  readonly candidate: string
  readonly control: string
  /** The candidate's share in force on that replica, percent. */
  readonly percent: number
  readonly stepStartedAt: number
  readonly state: string
}

/** What Prometheus knows of a route's rollout across the fleet. */
export interface FleetRollout {
  /** Every replica's rollout that Prometheus has as of the time asked (none: no replica exports one). */
  readonly replicas: readonly ReplicaRollout[]
  readonly lastAction: { readonly action: string; readonly at: number } | null
}

/**
 * The fleet's figures from Prometheus: instant queries at the boundary's timestamp over the
 * metrics every replica exports, so every replica that reads the same Prometheus gets the same
 * numbers and takes the same decision, without talking to the others. A step's window is each
 * counter's growth from its start to the boundary, across replica restarts; outcome totals are raw sums.
 */
export class PrometheusData implements DecisionData {
  readonly #source: PrometheusSource
  readonly #fleet: ((url: string, at: number) => Promise<TallyView | string>) | undefined

  /** `fleet` reads the experiments' totals every replica exports (the same reader /admin/experiments uses). */
  constructor(source: PrometheusSource, fleet?: (url: string, at: number) => Promise<TallyView | string>) {
    this.#source = source
    this.#fleet = fleet
  }

  startWindow(): void {
    // Windows are ranges in the query: nothing to keep.
  }

  async window(route: RouteRuntime, since: number, boundary: number): Promise<Map<string, ArmWindow> | string> {
    const r = `route=${JSON.stringify(route.name)}`
    const [requests, buckets] = await Promise.all([
      this.#increase('modelsplit_requests_total', r, since, boundary),
      this.#increase('modelsplit_request_duration_seconds_bucket', r, since, boundary),
    ])
    if (typeof requests === 'string') return requests
    if (typeof buckets === 'string') return buckets
    const out = new Map<string, ArmWindow>()
    for (const arm of route.targets) {
      let total = 0
      let errors = 0
      for (const s of requests) {
        if (s.metric.model !== arm.model) continue
        total += s.increase
        if (/^5\d\d$/.test(s.metric.code ?? '')) errors += s.increase
      }
      const cumulative = new Map<number, number>()
      for (const s of buckets) {
        if (s.metric.model !== arm.model) continue
        const le = s.metric.le === '+Inf' ? Infinity : Number(s.metric.le)
        cumulative.set(le, (cumulative.get(le) ?? 0) + s.increase)
      }
      const bounds = [...cumulative.keys()].filter((le) => Number.isFinite(le)).sort((x, y) => x - y)
      let previous = 0
      const counts = bounds.map((le) => {
        const c = (cumulative.get(le) ?? 0) - previous
        previous = cumulative.get(le) ?? 0
        return Math.max(0, c)
      })
      out.set(arm.model, { requests: total, errors, p99: bucketQuantile(bounds, counts, cumulative.get(Infinity) ?? 0, 0.99) })
    }
    return out
  }

  /**
   * Each series' growth over (since, boundary], counted across restarts (counters.ts). Most series
   * did not restart: their growth is the last value in the window minus the value at its start
   * (zero for a series born inside it). The series of a replica that restarted (resets(), or a
   * value below the start) are read sample by sample, one query per such replica.
   */
  async #increase(name: string, matchers: string, since: number, boundary: number): Promise<{ metric: Record<string, string>; increase: number }[] | string> {
    const width = Math.round(boundary - since)
    if (width <= 0) return []
    const sel = `${name}{${matchers}}`
    // resets() reaches back past the window's start to the sample the start value came from, so a
    // drop between that sample and the first one inside the window counts too.
    const reach = width + 2 * this.#source.scrape_interval_ms
    const [start, end, resets] = await Promise.all([
      this.#query(sel, since),
      this.#query(`last_over_time(${sel}[${width}ms])`, boundary),
      this.#query(`resets(${sel}[${reach}ms]) > 0`, boundary),
    ])
    if (typeof start === 'string') return start
    if (typeof end === 'string') return end
    if (typeof resets === 'string') return resets
    const startOf = new Map(start.map((s) => [seriesKey(s.metric), Number(s.value[1])]))
    const replica = (m: Record<string, string>): string => `job=${JSON.stringify(m.job ?? '')},instance=${JSON.stringify(m.instance ?? '')}`
    const restarted = new Set(resets.map((s) => replica(s.metric)))
    for (const s of end) {
      const v0 = startOf.get(seriesKey(s.metric))
      if (v0 !== undefined && Number(s.value[1]) < v0) restarted.add(replica(s.metric))
    }
    const out: { metric: Record<string, string>; increase: number }[] = []
    for (const s of end) {
      if (restarted.has(replica(s.metric))) continue
      out.push({ metric: s.metric, increase: Number(s.value[1]) - (startOf.get(seriesKey(s.metric)) ?? 0) })
    }
    const raw = await Promise.all([...restarted].map((who) => queryMatrix(this.#source.url, `${name}{${matchers},${who}}[${width}ms]`, boundary)))
    for (const series of raw) {
      if (typeof series === 'string') return series
      for (const s of series) {
        const after = s.values.filter(([t]) => 1000 * t > since).map(([, v]) => Number(v))
        out.push({ metric: s.metric, increase: counterIncrease(startOf.get(seriesKey(s.metric)), after) })
      }
    }
    return out
  }

  /** The fleet's experiment as of the boundary: the analysis of every replica's totals. */
  async experiment(route: RouteRuntime, boundary: number): Promise<RouteExperiment | string> {
    if (this.#fleet === undefined) return 'no fleet reader'
    const view = await this.#fleet(this.#source.url, boundary)
    return typeof view === 'string' ? view : experimentOf(route.plan, view)
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

  /**
   * The judge's verdicts across the fleet: every replica's (and worker's) verdict counters summed,
   * raw totals as the shadow's comparisons are.
   */
  async judged(route: RouteRuntime, primary: string, shadow: string, boundary: number): Promise<WinTally | string> {
    const sel = `route=${JSON.stringify(route.name)},primary=${JSON.stringify(primary)},shadow=${JSON.stringify(shadow)}`
    const v = await this.#query(`sum by (verdict) (modelsplit_llm_judge_verdicts_total{${sel}})`, boundary)
    if (typeof v === 'string') return v
    const of = (verdict: string): number => Number(v.find((x) => x.metric.verdict === verdict)?.value[1] ?? 0)
    return { wins: of('win'), ties: of('tie'), losses: of('loss') }
  }

  async #scalar(query: string, boundary: number): Promise<number | string> {
    const v = await this.#query(query, boundary)
    if (typeof v === 'string') return v
    // No series (nothing counted yet) is zero, not missing data.
    return v.length === 0 ? 0 : Number(v[0]?.value[1])
  }

  /**
   * The fleet's rollout on a route as of a time: each replica's (its step, state, candidate and
   * when the step began, read per scraped instance so one replica's figures are never mixed with
   * another's) and the latest operator action on any replica.
   */
  async rollout(route: string, at: number): Promise<FleetRollout | string> {
    const r = `{route=${JSON.stringify(route)}}`
    const [info, step, started, state, action] = await Promise.all([
      this.#query(`modelsplit_rollout_info${r}`, at),
      this.#query(`modelsplit_rollout_step${r}`, at),
      this.#query(`modelsplit_rollout_step_started_seconds${r}`, at),
      this.#query(`modelsplit_rollout_state${r} == 1`, at),
      this.#query(`max by (action) (modelsplit_rollout_operator_action_seconds${r})`, at),
    ])
    if (typeof info === 'string') return info
    for (const x of [step, started, state, action]) if (typeof x === 'string') return x
    const replica = (m: Record<string, string>): string => `${m.job ?? ''}/${m.instance ?? ''}`
    const of = (v: VectorSample[]): Map<string, VectorSample> => new Map(v.map((x) => [replica(x.metric), x]))
    const [steps, starts, states] = [of(step as VectorSample[]), of(started as VectorSample[]), of(state as VectorSample[])]
    const replicas: ReplicaRollout[] = []
    for (const i of info) {
      const who = replica(i.metric)
      const [p, s, st] = [steps.get(who), starts.get(who), states.get(who)]
      const { definition, candidate, control } = i.metric
      if (p === undefined || s === undefined || st === undefined || definition === undefined || candidate === undefined || control === undefined) continue
      replicas.push({ definition, candidate, control, percent: Number(p.value[1]), stepStartedAt: 1000 * Number(s.value[1]), state: st.metric.state ?? '' })
    }
    const latest = (action as VectorSample[]).reduce<VectorSample | undefined>((a, b) => (a === undefined || Number(b.value[1]) > Number(a.value[1]) ? b : a), undefined)
    return { replicas, lastAction: latest === undefined ? null : { action: latest.metric.action ?? '', at: 1000 * Number(latest.value[1]) } }
  }

  /** An instant query at a time (ms); a string says why it failed. */
  #query(query: string, at: number): Promise<VectorSample[] | string> {
    return queryVector(this.#source.url, query, at)
  }
}
