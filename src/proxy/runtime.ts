import { Assigner, buildRendezvous, rendezvousHash, type RendezvousTable } from '../assign/index.js'
import { compilePredictionSpec, type CompareOptions, type PredictionSpec } from '../compare/index.js'
import type { Config, LoadedConfig, MetricConfig, RouteConfig, UserIdSource } from '../config/index.js'
import type { Metrics, MissingReason, ShadowDropReason } from '../metrics/index.js'

type CounterChild = ReturnType<Metrics['requests']['labels']>
type HistogramChild = ReturnType<Metrics['duration']['labels']>

/** One model as a route uses it, with its metric children bound once at load time. */
export interface Arm {
  readonly route: string
  readonly model: string
  /** Model url without a trailing slash; the rest of the request path is appended. */
  readonly base: string
  readonly timeoutMs: number
  readonly assignedByHash: CounterChild
  readonly assignedByOverride: CounterChild
  readonly assignedByMissing: CounterChild
  readonly duration: HistogramChild
  /** Indexed by HTTP status; filled on first use, since codes are not known in advance. */
  readonly byCode: (CounterChild | undefined)[]
  readonly metrics: Metrics
  /** Options for the forwarding call, built by the proxy on first use and reused after. */
  fromOptions?: object
  /** Requests assigned by hash, for the sample-ratio check; shared across reloads. */
  readonly assigned: { count: number }
}

/** A shadow model as a route mirrors to it, with its selection table and bound metric children. */
export interface ShadowTarget {
  readonly route: string
  readonly model: string
  readonly base: string
  /** The model url split once at load, so mirroring does not parse a URL per request. */
  readonly origin: string
  readonly basePath: string
  readonly timeoutMs: number
  readonly maxInFlight: number
  /** Key for the in-flight gate, shared across reloads so a reload cannot double the cap. */
  readonly gateKey: string
  /** Users whose hash is below this (of 2^32) are mirrored; raising percent only adds users. */
  readonly threshold: number
  readonly table: RendezvousTable
  readonly duration: HistogramChild
  readonly dropped: Readonly<Record<ShadowDropReason, CounterChild>>
  readonly byCode: (CounterChild | undefined)[]
  /** Comparison children by primary model, bound on first use. */
  readonly comparisons: Map<string, { agree: CounterChild; disagree: CounterChild; error: CounterChild; absDiff: HistogramChild }>
}

export interface RouteRuntime {
  readonly config: RouteConfig
  readonly name: string
  readonly path: string
  readonly sources: readonly UserIdSource[]
  /** The user id may be in the body: buffer and parse it. Decided at load, checked per request. */
  readonly needsBody: boolean
  readonly assigner: Assigner
  /** Arms in split order: `assigner.pick()` indexes this. */
  readonly arms: readonly Arm[]
  /** allow_override: every defined model by name; otherwise empty. */
  readonly overrides: ReadonlyMap<string, Arm>
  readonly missing: 'random' | 'reject' | Arm
  readonly missingCounters: Readonly<Record<MissingReason, CounterChild>>
  readonly sourceList: string
  readonly shadows: readonly ShadowTarget[]
  readonly record: boolean
  /** Shadows or a record need this request's outcome: decided at load, one check per request. */
  readonly observes: boolean
  /** Shadows, or records with inputs, need the body: buffer it up to max_mirror_body_bytes. */
  readonly mirrorsBody: boolean
  readonly prediction: PredictionSpec
  readonly compare: CompareOptions
  readonly metrics: readonly MetricConfig[]
  readonly control: string
  /** The route has metrics: remember each request's model so outcomes can name it by request id. */
  readonly remembers: boolean
}

/** Everything a request needs, built once per config and swapped as one reference on reload. */
export interface Runtime {
  readonly loaded: LoadedConfig
  readonly config: Config
  readonly routes: readonly RouteRuntime[]
  readonly routePaths: string
  readonly maxBodyBytes: number
  readonly maxMirrorBytes: number
  readonly maxCaptureBytes: number
}

/** Builds the request-time state for a validated config; throws only on programmer error. */
/** Where arms keep counters that must outlive a reload. */
export interface Counters {
  assignmentCounter(route: string, model: string): { count: number }
}

export function buildRuntime(loaded: LoadedConfig, metrics: Metrics, counters: Counters): Runtime {
  const { config } = loaded
  const routes = config.routes.map((r) => buildRoute(config, r, metrics, counters))
  // Longest path first: with overlapping paths forbidden this is only a tie-break safety net.
  const sorted = [...routes].sort((a, b) => b.path.length - a.path.length)
  return Object.freeze({
    loaded,
    config,
    routes: sorted,
    routePaths: routes.map((r) => r.path).join(', '),
    maxBodyBytes: config.limits.max_body_bytes,
    maxMirrorBytes: Math.min(config.limits.max_mirror_body_bytes, config.limits.max_body_bytes),
    maxCaptureBytes: config.limits.max_capture_bytes,
  })
}

function buildRoute(config: Config, route: RouteConfig, metrics: Metrics, counters: Counters): RouteRuntime {
  const armOf = (model: string): Arm => {
    const m = config.models[model]
    if (m === undefined) throw new Error(`model ${model} missing after validation`)
    const labels = { route: route.name, model }
    return {
      route: route.name,
      model,
      base: m.url,
      timeoutMs: m.timeout_ms,
      assignedByHash: metrics.assignments.labels({ ...labels, source: 'hash' }),
      assignedByOverride: metrics.assignments.labels({ ...labels, source: 'override' }),
      assignedByMissing: metrics.assignments.labels({ ...labels, source: 'missing_user_id' }),
      duration: metrics.duration.labels(labels),
      byCode: [],
      metrics,
      assigned: counters.assignmentCounter(route.name, model),
    }
  }
  const arms = route.split.map((s) => armOf(s.model))
  const byName = new Map(arms.map((a) => [a.model, a]))
  const overrides = new Map<string, Arm>()
  if (route.allow_override) {
    for (const model of Object.keys(config.models)) overrides.set(model, byName.get(model) ?? armOf(model))
  }
  const missing = route.missing_user_id === 'random' || route.missing_user_id === 'reject'
    ? route.missing_user_id
    : byName.get(route.missing_user_id) ?? armOf(route.missing_user_id)
  const reasons: MissingReason[] = ['absent', 'body_not_json', 'unknown_override']
  const shadows = route.shadow.map((sh): ShadowTarget => {
    const m = config.models[sh.model]
    if (m === undefined) throw new Error(`model ${sh.model} missing after validation`)
    const labels = { route: route.name, model: sh.model }
    return {
      route: route.name,
      model: sh.model,
      base: m.url,
      origin: new URL(m.url).origin,
      basePath: new URL(m.url).pathname.replace(/\/$/, ''),
      timeoutMs: m.timeout_ms,
      maxInFlight: sh.max_in_flight,
      gateKey: `${route.name}\u0000${sh.model}`,
      threshold: sh.percent >= 100 ? 2 ** 32 : Math.floor((sh.percent / 100) * 2 ** 32),
      table: buildRendezvous(route.salt, [`shadow:${sh.model}`], [1]),
      duration: metrics.shadowDuration.labels(labels),
      dropped: {
        max_in_flight: metrics.shadowDropped.labels({ ...labels, reason: 'max_in_flight' }),
        body_too_large: metrics.shadowDropped.labels({ ...labels, reason: 'body_too_large' }),
        shutting_down: metrics.shadowDropped.labels({ ...labels, reason: 'shutting_down' }),
        unavailable: metrics.shadowDropped.labels({ ...labels, reason: 'unavailable' }),
      },
      byCode: [],
      comparisons: new Map(),
    }
  })
  const includeInputs = config.recording.include_inputs
  return {
    config: route,
    name: route.name,
    path: route.path,
    sources: route.user_id,
    needsBody: route.user_id.some((s) => s.kind === 'body'),
    assigner: new Assigner({ algorithm: route.hash, salt: route.salt, models: route.split.map((s) => s.model), weights: route.split.map((s) => s.weight) }),
    arms,
    overrides,
    missing,
    missingCounters: Object.fromEntries(reasons.map((r) => [r, metrics.userIdMissing.labels({ route: route.name, reason: r })])) as Record<MissingReason, CounterChild>,
    sourceList: route.user_id.map((s) => s.spec).join(', '),
    shadows,
    record: route.record,
    observes: route.record || shadows.length > 0,
    mirrorsBody: shadows.length > 0 || (route.record && includeInputs),
    prediction: compilePredictionSpec(route.compare.prediction),
    compare: { tolerance: route.compare.tolerance, mode: route.compare.mode },
    metrics: route.metrics,
    control: route.control,
    remembers: route.metrics.length > 0,
  }
}

/** Whether this user's requests are mirrored to a shadow: by hash, or at random without a user id. */
export function isShadowed(target: ShadowTarget, userId: string | undefined): boolean {
  if (target.threshold >= 2 ** 32) return true
  const h = userId === undefined ? Math.floor(Math.random() * 2 ** 32) : rendezvousHash(target.table, 0, userId)
  return h < target.threshold
}

/** The route whose path prefix matches a request path (segment-wise), if any. */
export function matchRoute(runtime: Runtime, pathname: string): RouteRuntime | undefined {
  const routes = runtime.routes
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i] as RouteRuntime
    const p = r.path
    if (pathname.startsWith(p) && (pathname.length === p.length || pathname.charCodeAt(p.length) === 47 /* / */ || p === '/')) return r
  }
  return undefined
}

/** Counts one answered request on an arm; the status child is bound on first sight. */
export function countResponse(arm: Arm, status: number, seconds: number): void {
  let child = arm.byCode[status]
  if (child === undefined) {
    child = arm.metrics.requests.labels({ route: arm.route, model: arm.model, code: String(status) })
    arm.byCode[status] = child
  }
  child.inc()
  arm.duration.observe(seconds)
}
