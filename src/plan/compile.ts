import { Assigner, buildRendezvous } from '../assign/index.js'
import { compilePredictionSpec } from '../compare/index.js'
import { formatPath } from '../config/check.js'
import { deepFreeze, readConfig, readConfigText } from '../config/load.js'
import type { Config, RouteConfig } from '../config/types.js'
import type { ConfigProblem } from '../errors.js'
import { tracesUrl } from '../tracing/url.js'
import type { ModelTarget, Plan, RoutePlan, ShadowPlan } from './plan.js'

/** What every compile returns: a plan, or every problem with its file, line and key path. */
export type CompileResult =
  | { readonly ok: true; readonly plan: Plan }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] }

/**
 * The one compile path, from YAML text to an immutable Plan. `validate`, `serve`, `assign` and
 * every reload call it, so what validate calls ok is exactly what a running router accepts.
 * It never throws: anything that fails, even a bug of ours, comes back as a located problem.
 */
export function compile(text: string, file: string): CompileResult {
  try {
    return compileUnchecked(text, file)
  } catch (err) {
    return { ok: false, problems: [{ file, path: '', message: `cannot compile the config: ${(err as Error)?.message ?? String(err)}` }] }
  }
}

/** Reads and compiles a config file; an unreadable file is a problem like any other. */
export async function compileFile(file: string): Promise<CompileResult> {
  const t = await readConfigText(file)
  return t.ok ? compile(t.text, file) : t
}

function compileUnchecked(text: string, file: string): CompileResult {
  const read = readConfig(text, file)
  if (!read.ok) return read
  const { loaded } = read
  const config = loaded.config
  const located: ConfigProblem[] = []
  const routes: RoutePlan[] = []
  config.routes.forEach((route, i) => {
    try {
      routes.push(compileRoute(config, route))
    } catch (err) {
      // Validation should have caught it; if not, it is still a problem with a place, not a crash.
      const path = ['routes', i]
      located.push({ file, line: read.lineOf(path), path: formatPath(path), message: (err as Error).message })
    }
  })
  if (located.length > 0) return { ok: false, problems: located }
  // Longest path first: with overlapping paths forbidden this is only a tie-break safety net.
  const sorted = [...routes].sort((a, b) => b.path.length - a.path.length)
  const limits = config.limits
  return {
    ok: true,
    plan: deepFreeze({
      loaded,
      config,
      routes: sorted,
      routePaths: config.routes.map((r) => r.path).join(', '),
      maxBodyBytes: limits.max_body_bytes,
      maxMirrorBytes: Math.min(limits.max_mirror_body_bytes, limits.max_body_bytes),
      maxBufferedBytes: Math.min(limits.max_buffered_body_bytes, limits.max_body_bytes),
      maxCaptureBytes: limits.max_capture_bytes,
      maxCaptureTotalBytes: limits.max_capture_total_bytes,
      bodyTimeoutMs: limits.body_timeout_ms,
      maxSseEventBytes: limits.max_sse_event_bytes,
      includeInputs: config.recording.include_inputs,
      tracing: config.tracing === null ? null : { endpoint: tracesUrl(config.tracing.otlp_endpoint), sampleRatio: config.tracing.sample_ratio, serviceName: config.tracing.service_name },
      measuresOverhead: routes.some((r) => r.overhead !== 'off'),
    }),
  }
}

function target(config: Config, model: string): ModelTarget {
  const m = config.models[model]
  if (m === undefined) throw new Error(`model "${model}" is not defined under models`)
  const url = new URL(m.url)
  const registry = m.mlflow === null ? null : { model: m.mlflow.model, version: m.mlflow.version }
  return { model, url: m.url, origin: url.origin, basePath: url.pathname.replace(/\/+$/, ''), timeoutMs: m.timeout_ms, registry, upstreamModel: m.upstream_model, price: m.price, modelName: m.model_name ?? null }
}

function compileRoute(config: Config, route: RouteConfig): RoutePlan {
  const models = route.split.map((s) => s.model)
  const assigner = new Assigner({ algorithm: route.hash, salt: route.salt, models, weights: route.split.map((s) => s.weight) })
  const shadows = route.shadow.map((sh): ShadowPlan => ({
    ...target(config, sh.model),
    maxInFlight: sh.max_in_flight,
    threshold: sh.percent >= 100 ? 2 ** 32 : Math.floor((sh.percent / 100) * 2 ** 32),
    table: buildRendezvous(route.salt, [`shadow:${sh.model}`], [1]),
    maxCaptureBytes: config.limits.max_capture_bytes,
    stream: sh.stream,
  }))
  const targets = models.map((m) => target(config, m))
  const indexOf = (model: string): number => {
    const i = targets.findIndex((t) => t.model === model)
    if (i >= 0) return i
    targets.push(target(config, model))
    return targets.length - 1
  }
  const overrides = new Map<string, number>()
  if (route.allow_override) for (const model of Object.keys(config.models)) overrides.set(model, indexOf(model))
  const missing = route.missing_user_id === 'random' || route.missing_user_id === 'reject' ? route.missing_user_id : indexOf(route.missing_user_id)
  return {
    config: route,
    name: route.name,
    path: route.path,
    isOpenAi: route.api === 'openai',
    sources: route.user_id,
    // An OpenAI body is read whole: its model is rewritten and its `stream` decides what is measured.
    needsBody: route.api === 'openai' || route.user_id.some((s) => s.kind === 'body'),
    assigner,
    targets,
    overrides,
    missing,
    sourceList: route.user_id.map((s) => s.spec).join(', '),
    shadows,
    record: route.record,
    includeInputs: config.recording.include_inputs,
    observes: route.record || shadows.length > 0,
    mirrorsBody: shadows.length > 0 || (route.record && config.recording.include_inputs),
    prediction: compilePredictionSpec(route.compare.prediction),
    compare: { tolerance: route.compare.tolerance, mode: route.compare.mode },
    metrics: route.metrics,
    control: route.control,
    remembers: route.metrics.length > 0,
    overhead: route.overhead,
    judge: route.judge === null ? null : {
      target: target(config, route.judge.model),
      threshold: route.judge.percent >= 100 ? 2 ** 32 : Math.floor((route.judge.percent / 100) * 2 ** 32),
      table: buildRendezvous(route.salt, ['judge'], [1]),
      maxCostPerHour: route.judge.max_cost_per_hour,
      maxInFlight: route.judge.max_in_flight,
      prompt: route.judge.prompt,
    },
  }
}

/**
 * The plan with decided weights in force on some routes (a rollout's step, a bandit's shares): the
 * YAML stays the intent, and these the weights requests are assigned by. Built by the same route
 * compile, so a weight nginx cannot express is a problem here too, never a throw.
 */
export function withWeights(plan: Plan, weights: ReadonlyMap<string, readonly number[]>): CompileResult {
  if (weights.size === 0) return { ok: true, plan }
  const problems: ConfigProblem[] = []
  const routes = plan.routes.map((r) => {
    const w = weights.get(r.name)
    if (w === undefined) return r
    try {
      const route = { ...r.config, split: r.config.split.map((s, i) => ({ model: s.model, weight: w[i] ?? 0 })) }
      return compileRoute(plan.config, route)
    } catch (err) {
      problems.push({ file: plan.loaded.file, path: `routes.${r.name}`, message: `decided weights ${JSON.stringify(w)} cannot be applied: ${(err as Error).message}` })
      return r
    }
  })
  if (problems.length > 0) return { ok: false, problems }
  return { ok: true, plan: deepFreeze({ ...plan, routes }) }
}

/**
 * The plan with the registry's versions in force: an alias (`models.NAME.mlflow.alias`) resolved
 * to the version it points at now. `versions` maps model names to versions; models it does not
 * name keep what they have (a pinned version, or null while unresolved).
 */
export function withVersions(plan: Plan, versions: ReadonlyMap<string, string>): Plan {
  if (versions.size === 0) return plan
  const resolve = <T extends ModelTarget>(t: T): T => {
    const v = versions.get(t.model)
    return t.registry === null || v === undefined || v === t.registry.version ? t : { ...t, registry: { model: t.registry.model, version: v } }
  }
  const routes = plan.routes.map((r) => ({ ...r, targets: r.targets.map(resolve), shadows: r.shadows.map(resolve) }))
  return deepFreeze({ ...plan, routes })
}
