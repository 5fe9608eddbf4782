// The config document as a whole: its top-level keys, the small top-level blocks (limits, recording,
// feedback, tracing, overhead, shutdown), and the checks across sections. The larger sections are read
// by their own modules: listen.ts, models.ts, routes.ts (with traffic.ts), decisions.ts, mlflow.ts.
import { Checker, type RawProblem } from './check.js'
import { readEvaluation } from './decisions.js'
import type { Config, FeedbackConfig, RecordingConfig, TracingConfig } from './types.js'
import { readSinkKeys } from './sink.js'
import { DEFAULTS, MAX_TIMER_MS } from './defaults.js'
import { readAdmin, readListen } from './listen.js'
import { readModels } from './models.js'
import { OVERHEAD_MODES, readRoutes } from './routes.js'
import { readMlflow } from './mlflow.js'

const TOP_KEYS = ['listen', 'admin', 'limits', 'shutdown_timeout_ms', 'models', 'routes', 'recording', 'feedback', 'evaluation', 'tracing', 'mlflow', 'overhead'] as const
const TRACING_KEYS = ['otlp_endpoint', 'sample_ratio', 'service_name'] as const
const FEEDBACK_KEYS = ['request_memory', 'request_ttl_ms', 'max_body_bytes'] as const
const LIMIT_KEYS = ['max_body_bytes', 'max_mirror_body_bytes', 'max_capture_bytes', 'max_capture_total_bytes', 'max_buffered_body_bytes', 'body_timeout_ms', 'max_sse_event_bytes'] as const
const RECORDING_KEYS = ['sink', 'path', 'max_bytes', 'keep', 'include_inputs', 'kafka', 'http', 'spool'] as const

/** Only read when evaluation had a problem, which the problems list already reports. */
const EVALUATION_FALLBACK = { interval_ms: 60_000, prometheus: null }

export { DEFAULTS } from './defaults.js'
export { LOOPBACK_HOSTS } from './listen.js'
export { RESERVED_PATHS } from './routes.js'

/**
 * Validates a parsed YAML document as a whole and returns the defaulted config, or every
 * problem found. Cross-field rules within a section (models referenced, weights, overlapping paths)
 * are checked by its reader; those across sections (ports, aliases, gRPC listener) here.
 */
export function validateConfig(raw: unknown): { config?: Config; problems: RawProblem[] } {
  const c = new Checker()
  const top = c.object(raw ?? undefined, [], TOP_KEYS, ['models', 'routes'])
  if (top === undefined) return { problems: c.problems }

  const listen = readListen(c, top.listen)
  const admin = readAdmin(c, top.admin)
  const limitsRaw = top.limits === undefined || top.limits === null ? {} : c.object(top.limits, ['limits'], LIMIT_KEYS)
  const maxBody = c.number(limitsRaw?.max_body_bytes, ['limits', 'max_body_bytes'], { min: 1, integer: true, fallback: DEFAULTS.max_body_bytes })
  const maxMirror = c.number(limitsRaw?.max_mirror_body_bytes, ['limits', 'max_mirror_body_bytes'], { min: 0, integer: true, fallback: DEFAULTS.max_mirror_body_bytes })
  const maxCapture = c.number(limitsRaw?.max_capture_bytes, ['limits', 'max_capture_bytes'], { min: 0, integer: true, fallback: DEFAULTS.max_capture_bytes })
  const maxCaptureTotal = c.number(limitsRaw?.max_capture_total_bytes, ['limits', 'max_capture_total_bytes'], { min: 0, integer: true, fallback: DEFAULTS.max_capture_total_bytes })
  const maxBuffered = c.number(limitsRaw?.max_buffered_body_bytes, ['limits', 'max_buffered_body_bytes'], { min: 0, integer: true, fallback: DEFAULTS.max_buffered_body_bytes })
  const bodyTimeout = c.number(limitsRaw?.body_timeout_ms, ['limits', 'body_timeout_ms'], { min: 1, max: 3_600_000, integer: true, fallback: DEFAULTS.body_timeout_ms })
  const maxSseEvent = c.number(limitsRaw?.max_sse_event_bytes, ['limits', 'max_sse_event_bytes'], { min: 1024, integer: true, fallback: DEFAULTS.max_sse_event_bytes })
  const recording = readRecording(c, top.recording)
  const feedback = readFeedback(c, top.feedback)
  const evaluation = readEvaluation(c, top.evaluation)
  const tracing = readTracing(c, top.tracing)
  const mlflow = readMlflow(c, top.mlflow)
  const overhead = c.oneOf(top.overhead, ['overhead'], OVERHEAD_MODES, 'off')
  const shutdown = c.number(top.shutdown_timeout_ms, ['shutdown_timeout_ms'], { min: 0, max: MAX_TIMER_MS, integer: true, fallback: DEFAULTS.shutdown_timeout_ms })
  // Equal ports collide whenever either side binds a wildcard address, which is the default.
  if (listen !== undefined && admin !== undefined && listen.port !== 0 && listen.port === admin.port) {
    c.add(['admin', 'port'], `must differ from listen.port (${listen.port}): prediction and admin traffic need separate ports`)
  }
  const grpcPort = listen?.grpc?.port ?? 0
  if (grpcPort !== 0 && (grpcPort === listen?.port || grpcPort === admin?.port)) {
    c.add(['listen', 'grpc', 'port'], `must differ from listen.port and admin.port (${grpcPort} is taken): gRPC calls need a port of their own`)
  }

  const models = readModels(c, top.models)
  // An alias is resolved through the registry: it needs a tracking server to ask.
  if (models !== undefined && mlflow === null) {
    for (const [name, m] of Object.entries(models)) {
      if (m.mlflow?.alias != null) c.add(['models', name, 'mlflow', 'alias'], `needs the top-level mlflow block (mlflow.tracking_uri) to resolve "${m.mlflow.model}@${m.mlflow.alias}" through the Model Registry`)
    }
  }
  // References are checked against every name written under models, valid or not, so one
  // mistake in a model is reported once, not again at each route that uses it.
  const names = top.models !== null && typeof top.models === 'object' && !Array.isArray(top.models) ? top.models as Record<string, unknown> : undefined
  const routes = readRoutes(c, top.routes, names, overhead)
  // A gRPC route with no gRPC listener would never see a call.
  if (routes !== undefined && listen !== undefined && listen.grpc === undefined) {
    routes.forEach((r, i) => {
      if (r.grpc !== null) c.add(['routes', i, 'grpc'], 'needs a gRPC listener: add listen.grpc: { host, port } (e.g. { host: 0.0.0.0, port: 8081 })')
    })
  }

  if (c.problems.length > 0 || listen === undefined || admin === undefined || models === undefined || routes === undefined || recording === undefined || feedback === undefined || tracing === undefined || mlflow === undefined) {
    return { problems: c.problems }
  }
  return {
    problems: [],
    config: {
      listen,
      admin,
      limits: {
        max_body_bytes: maxBody ?? DEFAULTS.max_body_bytes,
        max_mirror_body_bytes: maxMirror ?? DEFAULTS.max_mirror_body_bytes,
        max_capture_bytes: maxCapture ?? DEFAULTS.max_capture_bytes,
        max_capture_total_bytes: maxCaptureTotal ?? DEFAULTS.max_capture_total_bytes,
        max_buffered_body_bytes: maxBuffered ?? DEFAULTS.max_buffered_body_bytes,
        body_timeout_ms: bodyTimeout ?? DEFAULTS.body_timeout_ms,
        max_sse_event_bytes: maxSseEvent ?? DEFAULTS.max_sse_event_bytes,
      },
      shutdown_timeout_ms: shutdown ?? DEFAULTS.shutdown_timeout_ms,
      models,
      routes,
      recording,
      feedback,
      evaluation: evaluation ?? EVALUATION_FALLBACK,
      tracing,
      mlflow,
      overhead,
    },
  }
}

/** `tracing:` absent or null is off (null); undefined reports a problem. */
function readTracing(c: Checker, value: unknown): TracingConfig | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, ['tracing'], TRACING_KEYS, ['otlp_endpoint'])
  if (o === undefined) return undefined
  const path = ['tracing', 'otlp_endpoint']
  const endpoint = c.string(o.otlp_endpoint, path)
  let url: URL | undefined
  if (endpoint !== undefined) {
    try {
      url = new URL(endpoint)
    } catch {
      c.add(path, `must be an absolute http:// or https:// URL such as "http://127.0.0.1:4318", got ${JSON.stringify(endpoint)}`)
    }
    if (url !== undefined && url.protocol !== 'http:' && url.protocol !== 'https:') {
      c.add(path, `must use http:// or https:// (OTLP over HTTP), got ${JSON.stringify(url.protocol)}`)
      url = undefined
    }
  }
  const ratio = c.number(o.sample_ratio, ['tracing', 'sample_ratio'], { min: 0, max: 1, fallback: 1 })
  const service = c.string(o.service_name, ['tracing', 'service_name'], 'modelsplit')
  if (endpoint === undefined || url === undefined || ratio === undefined || service === undefined) return undefined
  return { otlp_endpoint: endpoint, sample_ratio: ratio, service_name: service }
}

function readRecording(c: Checker, value: unknown): RecordingConfig | undefined {
  const d = DEFAULTS.recording
  if (value === undefined || value === null) return d
  const o = c.object(value, ['recording'], RECORDING_KEYS)
  if (o === undefined) return undefined
  const path = c.string(o.path, ['recording', 'path'], d.path)
  const maxBytes = c.number(o.max_bytes, ['recording', 'max_bytes'], { min: 1024, integer: true, fallback: d.max_bytes })
  const keep = c.number(o.keep, ['recording', 'keep'], { min: 0, integer: true, fallback: d.keep })
  const includeInputs = c.boolean(o.include_inputs, ['recording', 'include_inputs'], d.include_inputs)
  const sink = readSinkKeys(c, o)
  if (path === undefined || maxBytes === undefined || keep === undefined || sink === undefined) return undefined
  return { path, max_bytes: maxBytes, keep, include_inputs: includeInputs, ...sink }
}

function readFeedback(c: Checker, value: unknown): FeedbackConfig | undefined {
  const d = DEFAULTS.feedback
  if (value === undefined || value === null) return d
  const o = c.object(value, ['feedback'], FEEDBACK_KEYS)
  if (o === undefined) return undefined
  const memory = c.number(o.request_memory, ['feedback', 'request_memory'], { min: 0, integer: true, fallback: d.request_memory })
  const ttl = c.number(o.request_ttl_ms, ['feedback', 'request_ttl_ms'], { min: 1, integer: true, fallback: d.request_ttl_ms })
  const maxBody = c.number(o.max_body_bytes, ['feedback', 'max_body_bytes'], { min: 1, integer: true, fallback: d.max_body_bytes })
  if (memory === undefined || ttl === undefined || maxBody === undefined) return undefined
  return { request_memory: memory, request_ttl_ms: ttl, max_body_bytes: maxBody }
}
