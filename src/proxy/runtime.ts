import type { Dispatcher, Pool } from 'undici'
import type { Config, MetricConfig } from '../config/index.js'
import type { Metrics, MissingReason, ShadowDropReason } from '../metrics/index.js'
import type { ModelTarget, Plan, RoutePlan, ShadowPlan } from '../plan/index.js'
import type { Pools } from '../upstream/pools.js'
import type { RouteSpec, UserSample } from '../experiment/index.js'
import { bindLlm, type LlmInstruments } from '../llm/answer.js'

type CounterChild = ReturnType<Metrics['requests']['labels']>
type HistogramChild = ReturnType<Metrics['duration']['labels']>

/** One model as a route uses it: its plan target, its pool and its metric children, bound once. */
export interface Arm extends ModelTarget {
  readonly route: string
  readonly pool: Pool
  readonly assignedByHash: CounterChild
  readonly assignedByOverride: CounterChild
  readonly assignedByMissing: CounterChild
  readonly duration: HistogramChild
  /** modelsplit_overhead_seconds for this route and model; null when the route's overhead is off. */
  readonly overhead: HistogramChild | null
  /** routes[].overhead is `header`: answers carry `server-timing`. */
  readonly serverTiming: boolean
  /** Indexed by HTTP status; filled on first use, since codes are not known in advance. */
  readonly byCode: (CounterChild | undefined)[]
  /** Requests the router answered 503 itself because this model's pool stayed full (not in byCode). */
  readonly overloaded: CounterChild
  readonly metrics: Metrics
  /** Requests assigned by hash, for the sample-ratio check; shared across reloads. */
  readonly assigned: { count: number }
  /** Where users are counted at first exposure: the route experiment's sample (analysis.unit: user), else null in it. */
  readonly users: { readonly sample: UserSample | null }
  /** api: openai routes: first-token, token and cost instruments; null elsewhere. */
  readonly llm: LlmInstruments | null
}

/** A shadow model as a route mirrors to it, with its pool and bound metric children. */
export interface ShadowTarget extends ShadowPlan {
  readonly route: string
  readonly pool: Dispatcher
  /** Key for the in-flight gate, shared across reloads so a reload cannot double the cap. */
  readonly gateKey: string
  readonly duration: HistogramChild
  readonly dropped: Readonly<Record<ShadowDropReason, CounterChild>>
  readonly byCode: (CounterChild | undefined)[]
  /** Comparison children by primary model, bound on first use. */
  readonly comparisons: Map<string, { agree: CounterChild; disagree: CounterChild; error: CounterChild; absDiff: HistogramChild }>
}

/** A route's plan with what the request path needs bound to it. */
export interface RouteRuntime {
  readonly plan: RoutePlan
  readonly name: string
  readonly path: string
  readonly metrics: readonly MetricConfig[]
  readonly control: string
  readonly assigner: RoutePlan['assigner']
  /** The split's arms, in split order. */
  readonly arms: readonly Arm[]
  /** route.plan.targets, bound: the split's arms first. */
  readonly targets: readonly Arm[]
  readonly shadows: readonly ShadowTarget[]
  readonly missingCounters: Readonly<Record<MissingReason, CounterChild>>
  readonly clientAborts: CounterChild
  readonly captureBudgetExceeded: CounterChild
}

/** A plan bound to this process's metrics and pools: swapped as one reference on reload. */
export interface Runtime {
  readonly plan: Plan
  readonly loaded: Plan['loaded']
  readonly config: Config
  readonly routes: readonly RouteRuntime[]
  /** The routes the HTTP listener matches (gRPC routes are the gRPC listener's). */
  readonly httpRoutes: readonly RouteRuntime[]
  /** The routes with `grpc:`, matched by method (and model_name) on the gRPC listener. */
  readonly grpcRoutes: readonly RouteRuntime[]
  /** The gRPC routes of each full method (one without model_name, or several with one each), built once per plan. */
  readonly grpcByMethod: ReadonlyMap<string, readonly RouteRuntime[]>
}

/** Where arms keep counters that must outlive a reload. */
export interface Counters {
  assignmentCounter(route: string, model: string): { count: number }
  /** Follows each route's experiment and weights as plans come into force (the tally). */
  observe?(route: string, identity: string, models: readonly string[], shares: ArrayLike<number>, spec?: Omit<RouteSpec, 'identity' | 'models'>): void
  /** The slot holding the route experiment's sample of users (unit user); observe fills it. */
  userSlot?(route: string): { readonly sample: UserSample | null }
}

const NO_USERS: { readonly sample: UserSample | null } = Object.freeze({ sample: null })

/** Binds a compiled plan to metrics and pools. Cannot fail on a compiled plan: only label binding. */
export function bindPlan(plan: Plan, metrics: Metrics, counters: Counters, pools: Pools, grpcShadows?: (origin: string) => Dispatcher): Runtime {
  const { config } = plan
  // One keep-alive pool per model origin, sized by the largest `connections` among its models.
  const sizes = new Map<string, number>()
  for (const m of Object.values(config.models)) {
    const origin = new URL(m.url).origin
    sizes.set(origin, Math.max(sizes.get(origin) ?? 0, m.connections))
  }
  const routes = plan.routes.map((r) => bindRoute(r, metrics, counters, (kind, origin) => {
    // A gRPC route's mirrors go over HTTP/2 sessions of their own (primaries are the listener's).
    if (kind === 'shadow' && r.config.grpc != null && grpcShadows !== undefined) return grpcShadows(origin)
    return pools.get(kind, origin, kind === 'shadow' ? 256 : sizes.get(origin) ?? 128)
  }))
  const httpRoutes = Object.freeze(routes.filter((r) => r.plan.config.grpc == null))
  const grpcRoutes = Object.freeze(routes.filter((r) => r.plan.config.grpc != null))
  const grpcByMethod = new Map<string, RouteRuntime[]>()
  for (const r of grpcRoutes) {
    const method = r.plan.config.grpc?.method ?? ''
    const list = grpcByMethod.get(method)
    if (list === undefined) grpcByMethod.set(method, [r])
    else list.push(r)
  }
  return Object.freeze({ plan, loaded: plan.loaded, config, routes: Object.freeze(routes), httpRoutes, grpcRoutes, grpcByMethod })
}

/**
 * Tells the tally which experiment each route of a runtime now runs: called once the runtime is
 * in force (after the swap), so a reload that fails never resets a route's numbers. An experiment
 * is its arms, control and salt, its unit of analysis, and the registered versions behind the arms
 * (a new version is a new experiment: versions never mix in one experiment's numbers); weights (a
 * rollout's step) only start a period.
 */
export function observePlan(runtime: Runtime, counters: Counters): void {
  for (const r of runtime.plan.routes) {
    counters.observe?.(r.name, experimentIdentity(r), r.assigner.models, r.assigner.shares, { control: r.control, analysis: r.config.analysis, metrics: r.metrics })
  }
}

/** What identifies a route's experiment: its arms, their registered versions, the control and salt. */
export function experimentIdentity(r: RoutePlan): string {
  const arms = r.targets.slice(0, r.config.split.length)
  const versions = arms.some((t) => t.registry !== null) ? { versions: arms.map((t) => t.registry === null ? null : `${t.registry.model}/${t.registry.version ?? '?'}`) } : {}
  const a = r.config.analysis
  // A route analysed by user (the default) names its buckets; request-level keeps its old identity.
  const unit = a.unit === 'user' ? { unit: a.unit, buckets: a.buckets } : {}
  return JSON.stringify({ models: r.config.split.map((s) => s.model), control: r.control, salt: r.config.salt, ...versions, ...unit })
}

/**
 * Metric children bound lazily (per status code, per primary compared with) that must outlive a
 * rebind: a reload or a rollout's step makes new arms, and a new empty list would forget the codes
 * seen before it, so a window read across the rebind (a decision's, MLflow's) would lose them.
 */
const kept = new WeakMap<Metrics, Map<string, unknown>>()
function keep<T>(metrics: Metrics, key: string, make: () => T): T {
  let m = kept.get(metrics)
  if (m === undefined) kept.set(metrics, m = new Map())
  let v = m.get(key) as T | undefined
  if (v === undefined) m.set(key, v = make())
  return v
}

/** Every pool a runtime reaches (what a reload must keep open). */
export function poolsOf(runtime: Runtime): Set<Dispatcher> {
  const out = new Set<Dispatcher>()
  for (const r of runtime.routes) {
    for (const a of r.targets) out.add(a.pool)
    for (const s of r.shadows) out.add(s.pool)
  }
  return out
}

function bindRoute(route: RoutePlan, metrics: Metrics, counters: Counters, pool: (kind: 'primary' | 'shadow', origin: string) => Pool | Dispatcher): RouteRuntime {
  const targets = route.targets.map((t): Arm => {
    const labels = { route: route.name, model: t.model }
    return {
      ...t,
      route: route.name,
      pool: pool('primary', t.origin) as Pool,
      assignedByHash: metrics.assignments.labels({ ...labels, source: 'hash' }),
      assignedByOverride: metrics.assignments.labels({ ...labels, source: 'override' }),
      assignedByMissing: metrics.assignments.labels({ ...labels, source: 'missing_user_id' }),
      duration: metrics.duration.labels(labels),
      overhead: route.overhead === 'off' ? null : metrics.overhead.labels(labels),
      serverTiming: route.overhead === 'header',
      byCode: keep(metrics, `primary\u0000${route.name}\u0000${t.model}`, () => []),
      overloaded: metrics.overloaded.labels(labels),
      metrics,
      assigned: counters.assignmentCounter(route.name, t.model),
      users: counters.userSlot?.(route.name) ?? NO_USERS,
      llm: route.isOpenAi ? bindLlm(metrics, route.name, t.model, t.price) : null,
    }
  })
  const reasons: MissingReason[] = ['absent', 'body_not_json', 'unknown_override']
  const shadows = route.shadows.map((sh): ShadowTarget => {
    const labels = { route: route.name, model: sh.model }
    const dropped = (reason: ShadowDropReason): CounterChild => metrics.shadowDropped.labels({ ...labels, reason })
    return {
      ...sh,
      route: route.name,
      pool: pool('shadow', sh.origin),
      gateKey: `${route.name}\u0000${sh.model}`,
      duration: metrics.shadowDuration.labels(labels),
      dropped: {
        max_in_flight: dropped('max_in_flight'),
        body_too_large: dropped('body_too_large'),
        shutting_down: dropped('shutting_down'),
        unavailable: dropped('unavailable'),
        capture_budget: dropped('capture_budget'),
      },
      byCode: keep(metrics, `shadow\u0000${route.name}\u0000${sh.model}`, () => []),
      comparisons: keep(metrics, `compared\u0000${route.name}\u0000${sh.model}`, () => new Map()),
    }
  })
  return {
    plan: route,
    name: route.name,
    path: route.path,
    metrics: route.metrics,
    control: route.control,
    assigner: route.assigner,
    arms: targets.slice(0, route.config.split.length),
    targets,
    shadows,
    missingCounters: Object.fromEntries(reasons.map((r) => [r, metrics.userIdMissing.labels({ route: route.name, reason: r })])) as Record<MissingReason, CounterChild>,
    clientAborts: metrics.clientAborts.labels({ route: route.name }),
    captureBudgetExceeded: metrics.captureBudgetExceeded.labels({ route: route.name }),
  }
}

/** Requests answered and how many of them were 5xx, from an arm's or a shadow's status children. */
export function answered(byCode: readonly (CounterChild | undefined)[]): { requests: number; errors: number } {
  let requests = 0
  let errors = 0
  byCode.forEach((child, code) => {
    if (child === undefined) return
    requests += child.value
    if (code >= 500) errors += child.value
  })
  return { requests, errors }
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
