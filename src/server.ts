import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { buildAdmin, type LlmCounts, type ShadowCounts } from './admin/index.js'
import { llmCountsOf, shadowCountsOf } from './admin/counts.js'
import { reloadedFiles, watchFiles, type LoadedConfig } from './config/index.js'
import { ConfigStore, type ReloadResult } from './config/store.js'
import { ConfigError, errorBody } from './errors.js'
import { AssignmentMemory, Tally, type TallyView } from './evaluation/index.js'
import { fleetTally } from './evaluation/fleet.js'
import { feedbackPlugin, type FeedbackPluginOptions, type PeerRecall } from './evaluation/plugin.js'
import { Metrics } from './metrics/index.js'
import { compileFile, withVersions, withWeights, type Plan } from './plan/index.js'
import { MlflowLink } from './mlflow/index.js'
import { DecisionEngine } from './decisions/engine.js'
import { predictionHandler } from './proxy/listener.js'
import { GrpcListener } from './proxy/grpc/listener.js'
import type { GrpcContext } from './proxy/grpc/call.js'
import { H2Sessions } from './upstream/h2-sessions.js'
import { H2Dispatcher } from './upstream/h2-dispatcher.js'
import type { Dispatcher } from 'undici'
import { bindPlan, observePlan, poolsOf, type Runtime } from './proxy/runtime.js'
import { openSink, sinkStatus } from './record/sinks.js'
import { SinkInForce } from './record/in-force.js'
import { Observer, ShadowDispatcher } from './shadow/index.js'
import { CaptureBudget } from './upstream/capture.js'
import { Lifecycle } from './lifecycle.js'
import { Pools } from './upstream/pools.js'
import { TracingSwitch } from './tracing/switch.js'
import type { ProxyContext } from './proxy/exchange.js'

export type { ReloadResult } from './config/store.js'

export interface ServerOptions {
  /** The config file; reloads read it again. */
  readonly configFile: string
  /** A config already compiled from `configFile` (the CLI compiles before starting). */
  readonly plan?: Plan
  /** @deprecated pass `plan`; kept for callers that loaded the config themselves. */
  readonly loaded?: LoadedConfig
  /** pino options, or false to log nothing (tests). */
  readonly logger?: FastifyServerOptions['logger']
  /** Watch the file and reload on change (default true). */
  readonly watch?: boolean
  /** Collect process metrics (default true). */
  readonly defaultMetrics?: boolean
  /**
   * This process is worker N of `serve --workers`: it serves predictions only (the primary runs
   * the admin listener) and writes records to a file of its own (`predictions.wN.jsonl`).
   */
  readonly worker?: number
  /** Asks the other workers for request ids this one does not remember (serve --workers). */
  readonly peers?: FeedbackPluginOptions['peers']
}

export interface Router {
  /** Fastify behind the prediction port: POST /feedback (predictions bypass it). */
  readonly app: FastifyInstance
  readonly admin: FastifyInstance
  readonly metrics: Metrics
  readonly tally: Tally
  /** The config in force. */
  current(): Runtime
  /** Starts both listeners on the configured (or overridden) addresses; returns their URLs. */
  listen(overrides?: { port?: number; adminPort?: number; host?: string; adminHost?: string; grpcPort?: number; grpcHost?: string }): Promise<{ url: string; adminUrl: string; grpcUrl?: string }>
  /** Re-reads and applies the config file; an invalid file changes nothing. */
  reload(): Promise<ReloadResult>
  /** Rollouts and bandits: status, operator actions, and tick() for tests that drive the clock. */
  readonly decisions: DecisionEngine
  /** MLflow: registry versions, online runs, alias writes (logNow/refreshNow for tests that drive the clock). */
  readonly mlflow: MlflowLink
  /** Each shadow's comparison counts with each primary, per route (what /admin/shadows reads). */
  shadowCounts(): ShadowCounts
  /** api: openai routes: each arm's requests, tokens and cost served (what /admin/llm reads). */
  llmCounts(): LlmCounts
  /** The request ids of these this process remembers (for another worker's feedback). */
  recall(requestIds: readonly string[]): PeerRecall[]
  /** Reopens the record file (SIGHUP, after log rotation). */
  reopenRecords(): Promise<void>
  /** Waits until every open request's shadows are in and its record is on disk. */
  flush(): Promise<void>
  /** Stops accepting, lets in-flight requests finish up to shutdown_timeout_ms, closes everything. */
  close(): Promise<void>
}

/** Builds the router (prediction and admin servers) from a config file, without listening yet. */
export async function buildServer(opts: ServerOptions): Promise<Router> {
  const plan = opts.plan ?? await initialPlan(opts)
  const metrics = new Metrics({ defaultMetrics: opts.defaultMetrics })
  const tally = new Tally(metrics)
  const feedbackConfig = plan.config.feedback
  const memory = new AssignmentMemory(feedbackConfig.request_memory, feedbackConfig.request_ttl_ms)
  const pools = new Pools()
  const budget = new CaptureBudget(plan.maxCaptureTotalBytes)
  let shuttingDown = false
  let listening = false
  const logger = opts.logger ?? false
  const current = (): Runtime => store.current()
  const log = (): FastifyInstance['log'] => app.log

  // Records: one sink for the config in force, opened only when some route records.
  const records = new SinkInForce()
  const useRecording = (p: Plan): Promise<void> => records.use(
    p.routes.some((route) => route.record || route.remembers) ? p.config.recording : undefined,
    (wanted) => openSink(wanted, {
      filePath: opts.worker === undefined ? wanted.path : workerPath(wanted.path, opts.worker),
      spoolPath: opts.worker === undefined ? wanted.spool.path : join(wanted.spool.path, `w${opts.worker}`),
      closeTimeoutMs: p.config.shutdown_timeout_ms,
      metrics,
      log,
    }),
  )
  await useRecording(plan)
  const publish = (r: Runtime): void => {
    metrics.setConfig(r.loaded.sha256, r.routes.map((route) => ({ name: route.name, models: route.assigner.models, shares: route.assigner.shares })))
  }
  // Decisions (rollouts, bandits) lay their weights over the compiled plan. From this replica's own
  // counters a cluster worker would decide from its share of the traffic only, so under --workers
  // they need evaluation.prometheus, where every worker reads the same fleet-wide figures.
  const decides = (p: Plan): boolean => opts.worker === undefined || p.config.evaluation.prometheus !== null
  // The numbers experiments are analysed from: with evaluation.prometheus every replica's totals
  // (and say so); without it, or with Prometheus out of reach, this replica's.
  const tallyView = async (): Promise<TallyView> => {
    const prom = current().config.evaluation.prometheus
    if (prom === null) return tally
    const routes = current().routes.filter((r) => r.metrics.length > 0).map((r) => r.plan)
    const fleet = await fleetTally(prom.url, routes, tally, Date.now())
    if (typeof fleet === 'string') {
      return { input: (route) => tally.input(route), scope: `this replica since it started: the fleet's totals could not be read (${fleet})` }
    }
    return { ...fleet, scope: `every replica Prometheus at ${prom.url} scrapes (the fleet's totals)` }
  }
  const logger0: { log?: FastifyInstance['log'] } = {}
  const early: ['info' | 'warn', string][] = []
  // The first decisions are taken while the router is built, before its logger exists: those
  // lines wait for it.
  const logLine = (level: 'info' | 'warn', message: string): void => {
    if (logger0.log !== undefined) logger0.log[level](message)
    else early.push([level, message])
  }
  const engine = new DecisionEngine({
    runtime: () => current(),
    experiment: (route) => tally.input(route),
    judged: (route, primary, shadow) => observer.judge.tally(route, primary, shadow),
    fleet: (url, at) => fleetTally(url, current().routes.filter((r) => r.metrics.length > 0).map((r) => r.plan), tally, at),
    refresh: () => store.refresh(),
    record: (r) => {
      records.sink?.write(r)
      mlflow.onDecision(r)
    },
    log: logLine,
    metrics,
    now: () => Date.now(),
  }, DecisionEngine.stateFileFor(plan, opts.worker))
  // MLflow: the registered versions behind the models (resolved before a plan comes into force),
  // the online runs and, with write_aliases, the registry following the decisions. Under
  // --workers every worker resolves versions, and the one the primary names writes runs and aliases.
  const mlflow = new MlflowLink({
    runtime: () => current(),
    tally: () => tallyView(),
    decision: (route) => engine.status(route),
    refresh: () => store.refresh(),
    metrics,
    log: logLine,
    now: () => Date.now(),
  }, { stateFile: MlflowLink.stateFileFor(plan.config, opts.worker), writes: opts.worker === undefined })
  await mlflow.resolve(plan.config)
  const decided = (next: Plan): Plan => {
    const versioned = withVersions(next, mlflow.versions())
    if (!decides(versioned)) return versioned
    const r = withWeights(versioned, engine.weightsFor(versioned))
    if (!r.ok) throw new ConfigError(r.problems)
    // withWeights compiles the routes it changes again, from the file's config: versions go back on.
    return withVersions(r.plan, mlflow.versions())
  }
  // gRPC: primaries on the listener's sessions, mirrors on sessions of their own (as HTTP's pools).
  const h2sessions = new H2Sessions()
  const h2shadowSessions = new H2Sessions()
  const h2shadows = new Map<string, Dispatcher>()
  const grpcShadows = (origin: string): Dispatcher => {
    let d = h2shadows.get(origin)
    if (d === undefined) h2shadows.set(origin, d = new H2Dispatcher(origin, h2shadowSessions) as unknown as Dispatcher)
    return d
  }
  const initial = bindPlan(decided(plan), metrics, tally, pools, grpcShadows)
  observePlan(initial, tally)
  engine.adopt()
  publish(initial)
  const store = new ConfigStore<Runtime>({
    file: opts.configFile,
    initial,
    base: plan,
    planOf: (r) => r.plan,
    async prepare(next) {
      // A new file (not a refresh of the one in force): its aliases are resolved first.
      if (next !== store.base()) await mlflow.resolve(next.config)
      const bound = bindPlan(decided(next), metrics, tally, pools, grpcShadows)
      // The new file is opened before the swap, so no record of the new config finds no sink.
      await useRecording(next)
      return bound
    },
  })
  mlflow.follow(initial)
  store.on('change', (next, old) => {
    // Only now, with the plan in force, do experiments and decisions follow it (a reload that
    // failed before its swap changed neither).
    observePlan(next, tally)
    engine.adopt()
    mlflow.follow(next)
    memory.configure(next.config.feedback.request_memory, next.config.feedback.request_ttl_ms)
    budget.limit = next.plan.maxCaptureTotalBytes
    publish(next)
    const inUse = poolsOf(next) as Set<unknown>
    for (const p of poolsOf(old)) inUse.add(p) // requests that started on the old plan may still run
    pools.retain(inUse)
  })
  store.on('reload', (r) => {
    if (r.result === 'unchanged') return
    metrics.configReloads.inc({ result: r.result })
    if (r.result === 'success') log().info({ sha256: r.sha256 }, 'config reloaded')
    else log().error({ problems: r.problems?.length }, `config reload failed, still serving sha256 ${r.sha256}:\n${new ConfigError(r.problems ?? []).message}`)
  })
  const observer = new Observer({ metrics, sink: () => records.sink, budget })
  const shadows = new ShadowDispatcher({ budget, requests: metrics.shadowRequests })
  const ctx: ProxyContext = { metrics, observer, shadows, memory, budget, tracing: null, isShuttingDown: () => shuttingDown }
  // gRPC calls share the context (tracing read through it as it changes) and add HTTP/2 sessions.
  const grpcCtx = Object.assign(Object.create(ctx) as ProxyContext, { sessions: h2sessions }) as GrpcContext
  const grpcTls = plan.config.listen.grpc?.tls
  const grpcMaterial = plan.loaded.grpcTls
  const grpc = plan.config.listen.grpc === undefined ? null : new GrpcListener({
    current,
    ctx: grpcCtx,
    ...(grpcTls !== undefined && grpcMaterial !== undefined ? { tls: { material: grpcMaterial, clientAuth: grpcTls.client_auth } } : {}),
  })
  // A reload that committed puts the certificates its compile read, and client_auth, in force for new handshakes.
  store.on('change', (next) => {
    const tls = next.config.listen.grpc?.tls
    if (next.loaded.grpcTls !== undefined && tls !== undefined) grpc?.useTls(next.loaded.grpcTls, tls.client_auth)
  })
  // Traces: the SDK is loaded only when `tracing` is configured, and swapped by reloads that change it.
  const tracing = new TracingSwitch(ctx, (err) => log().error({ err }, 'tracing could not be started or stopped'))
  await tracing.use(plan.tracing)
  store.on('change', (next) => { void tracing.use(next.plan.tracing) })

  // Prediction requests go straight from node:http to the plan and undici; fastify handles only
  // what is not a prediction (feedback), so a prediction pays nothing for it.
  let fastifyHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  const app = Fastify({
    logger: logger as boolean,
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    serverFactory: (handler) => {
      fastifyHandler = handler
      const handlers = predictionHandler({
        current,
        ctx,
        other: (req, res) => (fastifyHandler as typeof handler)(req, res),
      })
      const server = createServer({ requireHostHeader: false }, handlers.onRequest)
      server.on('checkContinue', handlers.onCheckContinue)
      return server as Server
    },
  })
  logger0.log = app.log
  for (const [level, message] of early.splice(0)) app.log[level](message)
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    if ((err.statusCode ?? 500) >= 500) request.log.error({ err }, 'request failed')
    reply.code(err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500).type('application/json; charset=utf-8').send(errorBody(err))
  })
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    if (shuttingDown) reply.header('connection', 'close')
    done()
  })

  const reload = (): Promise<ReloadResult> => store.reload()
  const shadowCounts = (): ShadowCounts => shadowCountsOf(current(), (route, primary, shadow) => observer.judge.tally(route, primary, shadow))
  const llmCounts = (): LlmCounts => llmCountsOf(current())

  await app.register(feedbackPlugin, { current, deps: { memory, tally, sink: () => records.sink }, ...(opts.peers !== undefined ? { peers: opts.peers } : {}) })

  const admin = buildAdmin({
    metricsText: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
    // With evaluation.prometheus, experiments read every replica's totals (and say so); without
    // it, or with Prometheus out of reach, this replica's.
    tally: tallyView,
    scope: 'this replica since it started; PromQL over modelsplit_outcome_* sums all replicas',
    current: () => current().plan,
    shadows: shadowCounts,
    llm: llmCounts,
    configExtras: () => current().config.mlflow === null && !Object.values(current().config.models).some((m) => m.mlflow !== null) ? {} : { mlflow: mlflow.status() },
    isReady: () => listening && !shuttingDown,
    readiness: () => ({ sink: sinkStatus(records.sink) ?? { sink: records.config === undefined ? 'none' : 'file' } }),
    reload,
    rollouts: {
      list: () => engine.list(),
      get: (route) => engine.status(route),
      act: (route, action) => engine.act(route, action),
    },
  }, logger as boolean)
  // A replica takes the fleet's rollouts (with evaluation.prometheus) before it serves.
  if (decides(plan)) await engine.start()
  else if (DecisionEngine.wants(plan)) log().warn('rollouts and bandits under --workers need evaluation.prometheus (each worker alone sees only its share of the traffic); they stay off')
  // The config file and the certificate files it names: a renewal reloads like an edit.
  const watcher = opts.watch === false ? undefined : watchFiles([opts.configFile, ...reloadedFiles(plan.config)], () => { void reload() })
  store.on('change', (next) => watcher?.follow([opts.configFile, ...reloadedFiles(next.config)]))

  // How this process stops, part by part; lifecycle.ts holds the order (the same for the primary of many).
  const lifecycle = new Lifecycle((message, err) => log().error({ err }, message))
  // Decisions and MLflow stop taking new work at once, but what they have under way (a Prometheus
  // query, an MLflow call) finishes while the traffic drains, and is awaited before the records
  // close: a slow dependency must not eat the time in-flight requests have to finish.
  let decisionsIdle: Promise<void> = Promise.resolve()
  let logged: Promise<void> = Promise.resolve()
  lifecycle.add('decisions', () => {
    engine.stop()
    decisionsIdle = engine.idle()
  })
  lifecycle.add('mlflow', () => {
    logged = mlflow.close()
  })
  lifecycle.add('watcher', () => watcher?.close())
  lifecycle.add('traffic', async (remainingMs) => {
    const deadline = remainingMs()
    let timer: NodeJS.Timeout | undefined
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        app.log.warn(`requests or shadows still running after shutdown_timeout_ms=${deadline}; closing them`)
        app.server.closeAllConnections()
        grpc?.destroyAll()
        h2sessions.destroyAll()
        h2shadowSessions.destroyAll()
        shadows.abortAll()
        resolve()
      }, deadline)
      timer.unref()
    })
    // Stop accepting, let primaries finish, then the shadows paired with them; every
    // observation then has its record in the writer, which the records part flushes.
    shadows.stop()
    app.server.closeIdleConnections()
    await Promise.race([Promise.all([app.close(), grpc?.close()]).then(() => observer.idle()), forced])
    clearTimeout(timer)
    // After the deadline every request and mirror has been cut, so their records settle at once;
    // a record that still does not would be a bug of ours, and must not hold the process forever.
    const last = setTimeout(() => log().error(`${observer.open} records still open after shutdown; closing without them`), 2000)
    await Promise.race([observer.idle(), new Promise((resolve) => { last.unref(); setTimeout(resolve, 2000).unref() })])
    clearTimeout(last)
    shadows.close()
  })
  lifecycle.add('pools', async () => {
    await pools.close()
    await h2sessions.close()
    await h2shadowSessions.close()
  })
  // The last spans go out beside the records, within what is left of shutdown_timeout_ms: a
  // collector that hangs must not hold the exit (the exporter's own timeout is 10 s). They are
  // started here and awaited after the records, so the two share the time left.
  let traces: Promise<void> = Promise.resolve()
  lifecycle.add('tracing', (remainingMs) => {
    traces = tracing.shutdown(remainingMs())
  })
  lifecycle.add('records', async () => {
    // A decision under way writes its record: it lands before the sink closes.
    await decisionsIdle
    await logged
    await records.sink?.close()
    await traces
  })
  lifecycle.add('admin', () => admin.close())

  let closing: Promise<void> | undefined
  return {
    app,
    admin,
    metrics,
    tally,
    current,
    reload,
    decisions: engine,
    mlflow,
    shadowCounts,
    llmCounts,
    recall(requestIds) {
      const out: PeerRecall[] = []
      for (const requestId of requestIds) {
        const r = memory.recall(requestId)
        if (r !== undefined) out.push({ requestId, route: r.route, model: r.model, userId: r.userId, at: r.at, ...(r.version !== undefined ? { version: r.version } : {}) })
      }
      return out
    },
    async reopenRecords() {
      await (records.sink as { reopen?: () => Promise<void> } | undefined)?.reopen?.()
    },
    async listen(o = {}) {
      const cfg = current().config
      const url = await app.listen({ host: o.host ?? cfg.listen.host, port: o.port ?? cfg.listen.port })
      // A cluster worker leaves the admin port to the primary, which speaks for all workers.
      const adminUrl = opts.worker !== undefined ? '' : await admin.listen({ host: o.adminHost ?? cfg.admin.host, port: o.adminPort ?? cfg.admin.port })
      const g = cfg.listen.grpc
      const grpcUrl = grpc === null || g === undefined ? undefined : await grpc.listen(o.grpcHost ?? g.host, o.grpcPort ?? g.port)
      listening = true
      return grpcUrl === undefined ? { url, adminUrl } : { url, adminUrl, grpcUrl }
    },
    async flush() {
      await observer.idle()
      await records.sink?.flush()
    },
    close() {
      closing ??= shutdown()
      return closing
    },
  }

  async function shutdown(): Promise<void> {
    shuttingDown = true
    await lifecycle.stop(() => current().config.shutdown_timeout_ms)
  }
}

/** `data/predictions.jsonl` → `data/predictions.w2.jsonl`: each cluster worker appends to its own file. */
export function workerPath(path: string, worker: number): string {
  const m = /^(.*?)(\.[^./]*)?$/.exec(path) as RegExpExecArray
  return `${m[1]}.w${worker}${m[2] ?? ''}`
}

async function initialPlan(opts: ServerOptions): Promise<Plan> {
  // A caller that loaded the config itself: compile the same file, so nothing differs.
  const compiled = await compileFile(opts.configFile)
  if (compiled.ok) return compiled.plan
  throw new ConfigError(compiled.problems)
}

