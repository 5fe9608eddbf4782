import { isReadableSchema } from '../record/index.js'
import { wilsonInterval } from '../stats/index.js'
import { RESERVOIR_SIZE, Reservoir } from './quantiles.js'

/** Confidence of the agreement interval. */
export const CONFIDENCE = 0.95

/** p50 and p99 of a series in milliseconds (nearest rank); null when the series is empty. */
export interface LatencySummary {
  readonly n: number
  readonly p50: number | null
  readonly p99: number | null
}

/** Requests, errors and latency of one model's answers. */
export interface SideSummary {
  readonly model: string
  readonly requests: number
  readonly errors: number
  /** errors / requests; null when there are no requests. */
  readonly error_rate: number | null
  readonly latency_ms: LatencySummary
}

/** One model in a route's A/B split: every record whose primary it was. */
export interface PrimarySummary extends SideSummary {
  /** requests / the route's requests. */
  readonly share: number | null
  /** The MLflow registered versions recorded for this model (`model_version`), when any: more than one means their numbers are mixed here. */
  readonly model_versions?: readonly (string | null)[]
}

/** One primary with one of its shadows: the records where that shadow ran beside that primary. */
export interface PairSummary {
  readonly primary: string
  readonly shadow: string
  readonly requests: number
  /** Comparisons that were made (no `error`). */
  readonly compared: number
  /** Comparisons recorded as `{ error }`: a side failed or gave no prediction. */
  readonly comparison_errors: number
  readonly agree: number
  /** agree / compared with its Wilson score interval; nulls when nothing was compared. */
  readonly agreement: { readonly rate: number | null; readonly low: number | null; readonly high: number | null; readonly confidence: number }
  /** `comparison.abs_diff_max` over comparisons where it is a number (null for non-numeric predictions). */
  readonly abs_diff_max: { readonly n: number; readonly mean: number | null; readonly p99: number | null }
  readonly primary_side: SideSummary
  readonly shadow_side: SideSummary
}

export interface RouteSummary {
  readonly route: string
  readonly requests: number
  /** Earliest and latest `ts` on the route. */
  readonly from: string | null
  readonly to: string | null
  readonly primaries: readonly PrimarySummary[]
  readonly pairs: readonly PairSummary[]
}

/** What the accumulator found, keyed as in the `--json` output. */
export interface Report {
  readonly records: {
    /** Prediction records counted. */
    readonly predictions: number
    /** Records of other types (e.g. outcomes), ignored here. */
    readonly other: number
    /** Prediction records without a route, a primary model, with a malformed shadow list or a newer `schema`; ignored. */
    readonly invalid: number
  }
  readonly quantiles: {
    readonly method: 'nearest-rank'
    /** Values kept per series; up to this many, quantiles are exact. */
    readonly reservoir_size: number
    /** False when some series had more values than the reservoir and its quantiles were sampled. */
    readonly exact: boolean
  }
  readonly routes: readonly RouteSummary[]
}

class SideAcc {
  requests = 0
  errors = 0
  readonly latency: Reservoir
  /** `model_version` values seen, in order of first sight. */
  versions: (string | null)[] | undefined

  constructor(readonly model: string, capacity: number) {
    this.latency = new Reservoir(capacity)
  }

  add(side: Side): void {
    if (side.model_version !== undefined) {
      const v = typeof side.model_version === 'string' ? side.model_version : null
      if (this.versions === undefined) this.versions = [v]
      else if (!this.versions.includes(v)) this.versions.push(v)
    }
    this.requests++
    if (isError(side)) this.errors++
    if (typeof side.latency_ms === 'number' && Number.isFinite(side.latency_ms)) this.latency.add(side.latency_ms)
  }

  summary(): SideSummary {
    return { model: this.model, requests: this.requests, errors: this.errors, error_rate: ratio(this.errors, this.requests), latency_ms: latencyOf(this.latency) }
  }
}

class PairAcc {
  readonly primary: SideAcc
  readonly shadow: SideAcc
  compared = 0
  agree = 0
  comparisonErrors = 0
  readonly absDiffMax: Reservoir

  constructor(primary: string, shadow: string, capacity: number) {
    this.primary = new SideAcc(primary, capacity)
    this.shadow = new SideAcc(shadow, capacity)
    this.absDiffMax = new Reservoir(capacity)
  }

  add(primary: Side, shadow: Side): void {
    this.primary.add(primary)
    this.shadow.add(shadow)
    const c = shadow.comparison
    // Anything but a made comparison (`{ error }`, or missing) counts as a comparison error.
    if (!isObject(c) || typeof c.agree !== 'boolean') {
      this.comparisonErrors++
      return
    }
    this.compared++
    if (c.agree) this.agree++
    if (typeof c.abs_diff_max === 'number' && Number.isFinite(c.abs_diff_max)) this.absDiffMax.add(c.abs_diff_max)
  }

  summary(): PairSummary {
    const w = wilsonInterval(this.agree, this.compared, CONFIDENCE)
    return {
      primary: this.primary.model,
      shadow: this.shadow.model,
      requests: this.primary.requests,
      compared: this.compared,
      comparison_errors: this.comparisonErrors,
      agree: this.agree,
      agreement: { rate: finite(w.rate), low: finite(w.low), high: finite(w.high), confidence: CONFIDENCE },
      abs_diff_max: { n: this.absDiffMax.count, mean: finite(this.absDiffMax.mean), p99: finite(this.absDiffMax.quantile(0.99)) },
      primary_side: this.primary.summary(),
      shadow_side: this.shadow.summary(),
    }
  }

  get exact(): boolean {
    return this.primary.latency.exact && this.shadow.latency.exact && this.absDiffMax.exact
  }
}

class RouteAcc {
  requests = 0
  from: string | undefined
  to: string | undefined
  readonly primaries = new Map<string, SideAcc>()
  /** primary model → shadow model → pair. */
  readonly pairs = new Map<string, Map<string, PairAcc>>()

  constructor(readonly name: string) {}
}

/** One side (primary or shadow) of a record, as read: fields are checked before use. */
interface Side {
  readonly model: string
  readonly model_version?: unknown
  readonly status?: unknown
  readonly latency_ms?: unknown
  readonly error?: unknown
  readonly comparison?: unknown
  readonly dropped?: unknown
}

/**
 * A side errs when its status is 0 (no answer: timeout, refused) or ≥ 500, or its `error` is set.
 */
export function isError(side: { readonly status?: unknown; readonly error?: unknown }): boolean {
  const status = typeof side.status === 'number' ? side.status : 0
  return status === 0 || status >= 500 || (side.error !== null && side.error !== undefined)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isSide(v: unknown): v is Side {
  return isObject(v) && typeof v.model === 'string'
}

function ratio(a: number, b: number): number | null {
  return b > 0 ? a / b : null
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null
}

function latencyOf(r: Reservoir): LatencySummary {
  return { n: r.count, p50: finite(r.quantile(0.5)), p99: finite(r.quantile(0.99)) }
}

function byName<T>(map: Map<string, T>): T[] {
  return [...map.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, v]) => v)
}

/**
 * Tallies prediction records one at a time in bounded memory (see `Reservoir`): per route, the A/B
 * split by primary model and every (primary, shadow) pair. Other record types are counted and ignored.
 *
 * @example
 * const acc = new ReportAccumulator()
 * for await (const record of readRecords(files)) acc.add(record)
 * const report = acc.result()
 */
export class ReportAccumulator {
  readonly #capacity: number
  readonly #routes = new Map<string, RouteAcc>()
  #predictions = 0
  #other = 0
  #invalid = 0

  /** `reservoirSize`: values kept per series before sampling (tests make it small). */
  constructor(opts: { reservoirSize?: number } = {}) {
    this.#capacity = opts.reservoirSize ?? RESERVOIR_SIZE
  }

  add(record: Record<string, unknown>): void {
    if (record.type !== 'prediction') {
      this.#other++
      return
    }
    const { route, primary, ts } = record
    const shadows = record.shadows ?? []
    if (!isReadableSchema(record) || typeof route !== 'string' || !isSide(primary) || !Array.isArray(shadows) || !shadows.every(isSide)) {
      this.#invalid++
      return
    }
    this.#predictions++

    let r = this.#routes.get(route)
    if (r === undefined) {
      r = new RouteAcc(route)
      this.#routes.set(route, r)
    }
    r.requests++
    if (typeof ts === 'string') {
      // ISO 8601 timestamps in UTC order as strings.
      if (r.from === undefined || ts < r.from) r.from = ts
      if (r.to === undefined || ts > r.to) r.to = ts
    }

    let p = r.primaries.get(primary.model)
    if (p === undefined) {
      p = new SideAcc(primary.model, this.#capacity)
      r.primaries.set(primary.model, p)
    }
    p.add(primary)

    if (shadows.length === 0) return
    let pairs = r.pairs.get(primary.model)
    if (pairs === undefined) {
      pairs = new Map()
      r.pairs.set(primary.model, pairs)
    }
    for (const s of shadows as Side[]) {
      // A shadow selected but not sent (`dropped`: max_in_flight, unavailable…) made no request to compare.
      if (s.dropped !== undefined) continue
      let pair = pairs.get(s.model)
      if (pair === undefined) {
        pair = new PairAcc(primary.model, s.model, this.#capacity)
        pairs.set(s.model, pair)
      }
      pair.add(primary, s)
    }
  }

  /** The report so far; routes, primaries and pairs sorted by name. */
  result(): Report {
    let exact = true
    const routes: RouteSummary[] = []
    for (const r of byName(this.#routes)) {
      const primaries: PrimarySummary[] = []
      for (const p of byName(r.primaries)) {
        exact &&= p.latency.exact
        primaries.push({ ...p.summary(), share: ratio(p.requests, r.requests), ...(p.versions !== undefined ? { model_versions: p.versions } : {}) })
      }
      const pairs: PairSummary[] = []
      for (const byShadow of byName(r.pairs)) {
        for (const pair of byName(byShadow)) {
          exact &&= pair.exact
          pairs.push(pair.summary())
        }
      }
      routes.push({ route: r.name, requests: r.requests, from: r.from ?? null, to: r.to ?? null, primaries, pairs })
    }
    return {
      records: { predictions: this.#predictions, other: this.#other, invalid: this.#invalid },
      quantiles: { method: 'nearest-rank', reservoir_size: this.#capacity, exact },
      routes,
    }
  }
}
