import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { Agent, Pool } from 'undici'
import { buildAdmin, type ReloadResult } from './admin/index.js'
import { loadConfig, watchFile, type LoadedConfig } from './config/index.js'
import { ConfigError } from './errors.js'
import { Metrics } from './metrics/index.js'
import { registerForwarding } from './proxy/forward.js'
import { buildRuntime, type Runtime } from './proxy/runtime.js'
import { RecordWriter } from './record/index.js'
import { Observer, ShadowDispatcher } from './shadow/index.js'
import { AssignmentMemory, Tally } from './evaluation/index.js'
import type { RecordingConfig } from './config/index.js'

export interface ServerOptions {
  /** The config file; reloads read it again. */
  readonly configFile: string
  /** A config already loaded from `configFile` (the CLI validates before starting). */
  readonly loaded?: LoadedConfig
  /** pino options, or false to log nothing (tests). */
  readonly logger?: FastifyServerOptions['logger']
  /** Watch the file and reload on change (default true). */
  readonly watch?: boolean
  /** Collect process metrics (default true). */
  readonly defaultMetrics?: boolean
}

export interface Router {
  readonly app: FastifyInstance
  readonly admin: FastifyInstance
  readonly metrics: Metrics
  /** The config in force. */
  current(): Runtime
  /** Starts both listeners on the configured (or overridden) addresses; returns their URLs. */
  listen(overrides?: { port?: number; adminPort?: number; host?: string; adminHost?: string }): Promise<{ url: string; adminUrl: string }>
  /** Re-reads and applies the config file; an invalid file changes nothing. */
  reload(): Promise<ReloadResult>
  /** Waits until every open request's shadows are in and its record is on disk. */
  flush(): Promise<void>
  /** Stops accepting, lets in-flight requests finish up to shutdown_timeout_ms, closes everything. */
  close(): Promise<void>
}

/** Builds the router (prediction and admin servers) from a config file, without listening yet. */
export async function buildServer(opts: ServerOptions): Promise<Router> {
  const metrics = new Metrics({ defaultMetrics: opts.defaultMetrics })
  const loaded = opts.loaded ?? await loadConfig(opts.configFile)
  const tally = new Tally(metrics)
  const memory = new AssignmentMemory(loaded.config.feedback.request_memory, loaded.config.feedback.request_ttl_ms)
  let runtime = buildRuntime(loaded, metrics, tally)
  metrics.setConfig(loaded.sha256, runtime.routes.map((r) => ({ name: r.name, models: r.assigner.models, shares: r.assigner.shares })))
  let shuttingDown = false
  let listening = false
  const logger = opts.logger ?? false

  // One keep-alive pool per model origin, sized by the largest `connections` among the
  // models that share it; read at pool creation, so models added by a reload get theirs.
  const connectionsByOrigin = new Map<string, number>()
  const indexConnections = (r: Runtime): void => {
    for (const m of Object.values(r.config.models)) {
      const origin = new URL(m.url).origin
      connectionsByOrigin.set(origin, Math.max(connectionsByOrigin.get(origin) ?? 0, m.connections))
    }
  }
  indexConnections(runtime)
  const agent = new Agent({
    keepAliveTimeout: 30_000,
    factory: (origin, options) => new Pool(origin, { ...options, connections: connectionsByOrigin.get(String(origin)) ?? 128, pipelining: 1 }),
  })

  const app = Fastify({
    logger: logger as boolean,
    // One log line per prediction would cost more than forwarding it; metrics count them instead.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // Our onRequest hook answers MS_SHUTTING_DOWN in the usual error shape instead.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  })
  await app.register(replyFrom, { undici: agent, disableRequestLogging: true, destroyAgent: true })
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    const statusCode = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
    const st = request.ms
    if (statusCode >= 500 && !(err.code ?? '').startsWith('MS_UPSTREAM')) request.log.error({ err }, 'request failed')
    reply.code(statusCode).send({
      statusCode,
      code: err.code ?? 'MS_INTERNAL',
      error: httpStatusText(statusCode),
      message: err.message,
      ...(st ? { route: st.route.name } : {}),
      ...(st?.arm ? { model: st.arm.model } : {}),
    })
  })
  // Records: one writer for the file in force, opened only when some route records.
  let writer: RecordWriter | undefined
  let writerConfig: RecordingConfig | undefined
  const useRecording = async (r: Runtime): Promise<void> => {
    const wanted = r.routes.some((route) => route.record || route.remembers) ? r.config.recording : undefined
    if (wanted !== undefined && writerConfig !== undefined && wanted.path === writerConfig.path && wanted.max_bytes === writerConfig.max_bytes && wanted.keep === writerConfig.keep) return
    const old = writer
    writer = wanted === undefined ? undefined : new RecordWriter({
      path: wanted.path, max_bytes: wanted.max_bytes, keep: wanted.keep,
      onResult: (result, count) => metrics.records.inc({ result }, count),
      onError: (err) => app.log.error({ err }, `cannot write records to ${wanted.path}`),
    })
    writerConfig = wanted
    await old?.close()
  }
  await useRecording(runtime)
  const observer = new Observer({ metrics, sink: () => writer, includeInputs: () => runtime.config.recording.include_inputs })
  const shadows = new ShadowDispatcher({ maxCaptureBytes: () => runtime.maxCaptureBytes, requests: metrics.shadowRequests })
  registerForwarding(app, { current: () => runtime, isShuttingDown: () => shuttingDown, observer, shadows, feedback: { memory, tally, sink: () => writer } })

  let reloading: Promise<ReloadResult> | undefined
  let closing: Promise<void> | undefined
  const doReload = async (): Promise<ReloadResult> => {
    let next: LoadedConfig
    try {
      next = await loadConfig(opts.configFile)
    } catch (err) {
      metrics.configReloads.inc({ result: 'failure' })
      const problems = err instanceof ConfigError ? err.problems : [{ file: opts.configFile, path: '', message: (err as Error).message }]
      app.log.error({ problems: problems.length }, `config reload failed, still serving sha256 ${runtime.loaded.sha256}: ${(err as Error).message}`)
      return { result: 'failure', sha256: runtime.loaded.sha256, problems }
    }
    if (next.sha256 === runtime.loaded.sha256) return { result: 'unchanged', sha256: next.sha256 }
    const notes: string[] = []
    const old = runtime.config
    if (old.listen.port !== next.config.listen.port || old.listen.host !== next.config.listen.host ||
      old.admin.port !== next.config.admin.port || old.admin.host !== next.config.admin.host) {
      notes.push('listen and admin addresses take effect on restart only')
    }
    const built = buildRuntime(next, metrics, tally)
    indexConnections(built)
    // The new file is opened before the swap, so no record of the new config finds no writer.
    await useRecording(built)
    runtime = built // one reference swap: in-flight requests keep the snapshot they started with
    memory.configure(next.config.feedback.request_memory, next.config.feedback.request_ttl_ms)
    metrics.setConfig(next.sha256, built.routes.map((r) => ({ name: r.name, models: r.assigner.models, shares: r.assigner.shares })))
    metrics.configReloads.inc({ result: 'success' })
    app.log.info({ sha256: next.sha256 }, 'config reloaded')
    return { result: 'success', sha256: next.sha256, ...(notes.length ? { notes } : {}) }
  }
  // Reloads run one at a time; a reload asked for while one runs waits for it and then reads the file again.
  const reload = async (): Promise<ReloadResult> => {
    while (reloading !== undefined) await reloading.catch(() => undefined)
    reloading = doReload()
    try {
      return await reloading
    } finally {
      reloading = undefined
    }
  }

  const admin = buildAdmin({ metrics, tally, current: () => runtime, isReady: () => listening && !shuttingDown, reload }, logger as boolean)
  const watcher = opts.watch === false ? undefined : watchFile(opts.configFile, () => { void reload() })

  return {
    app,
    admin,
    metrics,
    current: () => runtime,
    reload,
    async listen(o = {}) {
      const cfg = runtime.config
      const url = await app.listen({ host: o.host ?? cfg.listen.host, port: o.port ?? cfg.listen.port })
      const adminUrl = await admin.listen({ host: o.adminHost ?? cfg.admin.host, port: o.adminPort ?? cfg.admin.port })
      listening = true
      return { url, adminUrl }
    },
    async flush() {
      await observer.idle()
      await writer?.flush()
    },
    close() {
      closing ??= shutdown()
      return closing
    },
  }

  async function shutdown(): Promise<void> {
      shuttingDown = true
      watcher?.close()
      const deadline = runtime.config.shutdown_timeout_ms
      let timer: NodeJS.Timeout | undefined
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          app.log.warn(`requests or shadows still running after shutdown_timeout_ms=${deadline}; closing them`)
          app.server.closeAllConnections()
          shadows.abortAll()
          resolve()
        }, deadline)
        timer.unref()
      })
      // Stop accepting, let primaries finish, then the shadows paired with them; every
      // observation then has its record in the writer, which close() flushes to disk.
      shadows.stop()
      await Promise.race([app.close().then(() => observer.idle()), forced])
      clearTimeout(timer)
      await observer.idle()
      await shadows.close()
      await writer?.close()
      await admin.close()
  }
}

function httpStatusText(code: number): string {
  switch (code) {
    case 400: return 'Bad Request'
    case 404: return 'Not Found'
    case 413: return 'Payload Too Large'
    case 502: return 'Bad Gateway'
    case 503: return 'Service Unavailable'
    case 504: return 'Gateway Timeout'
    default: return code >= 500 ? 'Internal Server Error' : 'Error'
  }
}
