import cluster, { type Worker } from 'node:cluster'
import { buildAdmin } from '../admin/index.js'
import { ConfigStore, type ReloadResult } from '../config/store.js'
import { reloadedFiles, watchFiles } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { mergeTallies, snapshotTally, type TallySnapshot } from '../evaluation/snapshot.js'
import type { Plan } from '../plan/index.js'
import type { PeerRecall } from '../evaluation/plugin.js'
import { setWorkerSlot } from '../record/index.js'
import { Lifecycle, serveUntilSignalled } from '../lifecycle.js'
import { buildServer } from '../server.js'
import type { Io } from './run.js'
import { answerAdmin, primaryAdmin, type AdminQuestion } from './cluster-admin.js'

// `serve --workers N`: N node:cluster workers share the prediction port (the primary hands out
// connections round-robin); the primary runs the admin listener and speaks for all of them:
// /metrics aggregates every worker's registry (keeping what workers that died had counted),
// /admin/rollouts and /readyz ask the workers (cluster-admin.ts), reloads and SIGHUP reach every
// worker, SIGTERM drains every worker. Each worker compiles the same file with the same compile,
// so every worker assigns identically (assignment is a pure function of the plan and the user id).

type ToWorker =
  | { readonly ms: 'reload'; readonly id: number }
  | { readonly ms: 'recall'; readonly id: number; readonly ids: string[] }
  | { readonly ms: 'recalled'; readonly id: number; readonly found: PeerRecall[] }
  | { readonly ms: 'reopen' }
  | { readonly ms: 'tally'; readonly id: number }
  | { readonly ms: 'mlflow'; readonly id: number }
  | { readonly ms: 'mlflow-writer'; readonly on: boolean }
  | { readonly ms: 'shutdown' }
  | AdminQuestion

type FromWorker =
  | { readonly ms: 'listening'; readonly url: string; readonly grpcUrl?: string }
  | { readonly ms: 'reloaded'; readonly id: number; readonly result: ReloadResult }
  | { readonly ms: 'tally'; readonly id: number; readonly snapshot: TallySnapshot }
  | { readonly ms: 'mlflow'; readonly id: number; readonly status: Record<string, unknown> }
  | { readonly ms: 'recall'; readonly id: number; readonly ids: string[] }
  | { readonly ms: 'recalled'; readonly id: number; readonly found: PeerRecall[] }
  | { readonly ms: 'answer'; readonly id: number; readonly value: unknown }

// How the primary tells a worker its slot (1…N) and N.
const SLOT_ENV = 'MODELSPLIT_WORKER_SLOT'
const SLOTS_ENV = 'MODELSPLIT_WORKER_SLOTS'

const isMessage = (m: unknown): m is FromWorker => typeof m === 'object' && m !== null && typeof (m as { ms?: unknown }).ms === 'string'

/** The worker side: serve predictions, answer the primary, drain on its word or on a signal. */
export async function runWorker(configFile: string, plan: Plan, logLevel: string): Promise<number> {
  // The slot, not cluster's id (which grows with each replacement), names this worker's record
  // file and spool directory: a replacement takes over what the worker before it left.
  const slot = Number(process.env[SLOT_ENV])
  const slots = Number(process.env[SLOTS_ENV])
  const id = Number.isInteger(slot) && slot > 0 ? slot : cluster.worker?.id ?? 0
  if (Number.isInteger(slots) && slots > 0) setWorkerSlot(id, slots)
  // Feedback for a request another worker served: ask the primary, which asks the others.
  let seq = 0
  const waiting = new Map<number, (found: PeerRecall[]) => void>()
  const peers = (ids: string[]): Promise<PeerRecall[]> => new Promise((resolve) => {
    const n = ++seq
    const timer = setTimeout(() => { waiting.delete(n); resolve([]) }, 2000)
    waiting.set(n, (found) => { clearTimeout(timer); resolve(found) })
    send({ ms: 'recall', id: n, ids })
  })
  const router = await buildServer({ configFile, plan, logger: { level: logLevel }, watch: false, worker: id, peers })
  const send = (m: FromWorker): void => { process.send?.(m) }
  // Each worker listens on listen.grpc too: node:cluster shares that socket as it shares the HTTP
  // one, so connections (each a gRPC channel, its calls decided one by one) are spread over them.
  const { url, grpcUrl } = await router.listen()
  let stopped: () => void = () => undefined
  const asked = new Promise<void>((resolve) => { stopped = resolve })
  process.on('message', (m: ToWorker) => {
    if (typeof m !== 'object' || m === null) return
    switch (m.ms) {
      case 'reload': void router.reload().then((result) => send({ ms: 'reloaded', id: m.id, result })); break
      case 'reopen': void router.reopenRecords(); break
      case 'tally': send({ ms: 'tally', id: m.id, snapshot: snapshotTally(router.tally) }); break
      case 'mlflow': send({ ms: 'mlflow', id: m.id, status: router.mlflow.status() }); break
      case 'mlflow-writer': router.mlflow.setWrites(m.on); break
      case 'recall': send({ ms: 'recalled', id: m.id, found: router.recall(m.ids) }); break
      case 'recalled': waiting.get(m.id)?.(m.found); waiting.delete(m.id); break
      case 'shutdown': stopped(); break
      // The rest are the admin's questions (cluster-admin.ts): a new one needs no case here.
      default: void answerAdmin(router, m).then((value) => send({ ms: 'answer', id: m.id, value }))
    }
  })
  send(grpcUrl === undefined ? { ms: 'listening', url } : { ms: 'listening', url, grpcUrl })
  // The primary tells workers to stop; a signal sent to the whole group (Ctrl-C) does too, and
  // so does losing the primary.
  process.once('SIGTERM', stopped)
  process.once('SIGINT', stopped)
  process.once('disconnect', stopped)
  await asked
  await router.close()
  // The IPC channel would keep this process alive: let it go, so the worker exits once drained.
  if (process.connected) process.disconnect()
  return 0
}

/** The primary side: fork, aggregate, fan reloads out, drain on SIGTERM. */
export async function runPrimary(configFile: string, plan: Plan, workers: number, logLevel: string, io: Io): Promise<number> {
  const log = (line: string): void => { if (logLevel !== 'silent') io.err.write(`modelsplit: ${line}\n`) }
  const store = new ConfigStore<Plan>({ file: configFile, initial: plan, planOf: (p) => p, prepare: async (p) => p })
  let shuttingDown = false
  let seq = 0
  const pending = new Map<number, { waiting: Set<Worker>; got: Map<Worker, unknown>; done: () => void }>()
  const listening = new Map<number, string>()
  let grpcUrl: string | undefined

  // Asks the workers that listen (one still starting has no one to answer yet) and resolves with
  // the answers in by the deadline; a worker that dies is not waited for.
  type AskOptions = { except?: Worker; only?: Worker; timeoutMs?: number }
  const askEach = <T>(make: (id: number) => ToWorker, opts: AskOptions = {}): Promise<Map<Worker, T>> => {
    const id = ++seq
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && listening.has(w.id) && w.isConnected()
      && w !== opts.except && (opts.only === undefined || w === opts.only))
    const got = new Map<Worker, T>()
    if (live.length === 0) return Promise.resolve(got)
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(timer); pending.delete(id); resolve(got) }
      const timer = setTimeout(done, opts.timeoutMs ?? 10_000)
      pending.set(id, { waiting: new Set(live), got: got as Map<Worker, unknown>, done })
      for (const w of live) w.send(make(id))
    })
  }
  const ask = async <T>(make: (id: number) => ToWorker, except?: Worker, only?: Worker): Promise<T[]> =>
    [...(await askEach<T>(make, { except, only })).values()]
  const fromWorkers = primaryAdmin((make, timeoutMs) => askEach(make, { timeoutMs }))
  // One worker writes MLflow runs and aliases: the oldest listening once all have started; when
  // it dies, the oldest left (a replacement, once it listens, if none is).
  let writer: Worker | undefined
  let started = false
  const nameWriter = (): void => {
    if (!started) return
    const oldest = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && listening.has(w.id) && w.isConnected()).sort((x, y) => x.id - y.id)[0]
    if (oldest === undefined || oldest === writer) return
    if (writer?.isConnected() === true) writer.send({ ms: 'mlflow-writer', on: false } satisfies ToWorker)
    writer = oldest
    writer.send({ ms: 'mlflow-writer', on: true } satisfies ToWorker)
  }
  cluster.on('message', (worker, m: unknown) => {
    if (!isMessage(m)) return
    if (m.ms === 'listening') {
      listening.set(worker.id, m.url)
      grpcUrl ??= m.grpcUrl
      if (writer === undefined) nameWriter()
      return
    }
    if (m.ms === 'recall') {
      // Ask every other worker; answer the one that asked with what they remember.
      void ask<PeerRecall[]>((id) => ({ ms: 'recall', id, ids: m.ids }), worker).then((found) => {
        if (worker.isConnected()) worker.send({ ms: 'recalled', id: m.id, found: found.flat() } satisfies ToWorker)
      })
      return
    }
    const entry = pending.get(m.id)
    if (entry === undefined || !entry.waiting.delete(worker)) return
    const value = m.ms === 'reloaded' ? m.result : m.ms === 'tally' ? m.snapshot : m.ms === 'mlflow' ? m.status : m.ms === 'answer' ? m.value : m.found
    entry.got.set(worker, value)
    if (entry.waiting.size === 0) entry.done()
  })

  const reload = async (): Promise<ReloadResult> => {
    // The primary compiles first: an invalid file is refused once, here, with its problems.
    const own = await store.reload()
    if (own.result === 'failure') return own
    const results = await ask<ReloadResult>((id) => ({ ms: 'reload', id }))
    const failed = results.filter((r) => r.result === 'failure')
    if (failed.length > 0) return { ...failed[0] as ReloadResult, notes: [`${failed.length} of ${results.length} workers refused the file`] }
    return { ...own, notes: [...(own.notes ?? []), `applied by ${results.length} workers`] }
  }

  const slotOf = new Map<number, number>()
  const fork = (slot: number): Worker => {
    const w = cluster.fork({ [SLOT_ENV]: String(slot), [SLOTS_ENV]: String(workers) })
    slotOf.set(w.id, slot)
    // A message sent as the worker dies fails on its closed channel: the exit below handles the death.
    w.on('error', (err: Error) => log(`worker ${w.id}: ${err.message}`))
    return w
  }
  const restarts: number[] = []
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id)
    // Questions to it are answered without it; what it counted stays in /metrics.
    for (const entry of pending.values()) if (entry.waiting.delete(worker) && entry.waiting.size === 0) entry.done()
    fromWorkers.retire(worker)
    if (shuttingDown) return
    if (worker === writer) {
      writer = undefined
      nameWriter()
    }
    // A worker that died is replaced, unless they keep dying (then the primary stops).
    const now = Date.now()
    restarts.push(now)
    while (restarts.length > 0 && (restarts[0] as number) < now - 60_000) restarts.shift()
    log(`worker ${worker.id} exited (${signal ?? code}); ${restarts.length > 5 ? 'too many restarts in a minute, stopping' : 'starting another'}`)
    if (restarts.length > 5) {
      process.kill(process.pid, 'SIGTERM')
      return
    }
    fork(slotOf.get(worker.id) ?? 1)
    slotOf.delete(worker.id)
  })
  for (let i = 1; i <= workers; i++) fork(i)
  // Every worker listens before the primary says the router is up.
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (listening.size >= workers) {
        cluster.off('message', check)
        cluster.off('exit', early)
        resolve()
      }
    }
    const early = (_w: Worker, code: number): void => reject(new Error(`a worker exited (code ${code}) before listening`))
    cluster.on('message', check)
    cluster.on('exit', early)
  }).catch((err: Error) => {
    shuttingDown = true
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM')
    throw err
  })
  started = true
  nameWriter()

  const admin = buildAdmin({
    // What the workers answer (cluster-admin.ts): a new admin dependency added there needs no line here.
    ...fromWorkers,
    tally: async () => mergeTallies(await ask<TallySnapshot>((id) => ({ ms: 'tally', id }))),
    scope: `every worker of this replica (${workers}) since it started; PromQL over modelsplit_outcome_* sums all replicas`,
    current: () => store.current(),
    // What the MLflow writer resolved and logs (every worker resolves the same versions).
    configExtras: async () => {
      const cfg = store.current().config
      if (cfg.mlflow === null && !Object.values(cfg.models).some((m) => m.mlflow !== null)) return {}
      const [status] = writer === undefined ? [] : await ask<Record<string, unknown>>((id) => ({ ms: 'mlflow', id }), undefined, writer)
      return { mlflow: status ?? null }
    },
    isReady: () => !shuttingDown && listening.size >= workers,
    reload,
  }, logLevel === 'silent' ? false : { level: logLevel })
  const cfg = plan.config
  const adminUrl = await admin.listen({ host: cfg.admin.host, port: cfg.admin.port })
  const url = [...listening.values()][0] as string

  // The config file and the certificate files it names: a renewal reloads every worker like an edit.
  const watcher = watchFiles([configFile, ...reloadedFiles(plan.config)], () => { void reload() })
  store.on('change', (next) => watcher.follow([configFile, ...reloadedFiles(next.config)]))
  // How the primary stops, in the order lifecycle.ts holds for every mode: the watcher, then the
  // workers (each drains its own traffic, pools, traces and records), then the admin listener.
  const lifecycle = new Lifecycle((message, err) => log(`${message}: ${String(err)}`))
  lifecycle.add('watcher', () => watcher.close())
  lifecycle.add('traffic', async (remainingMs) => {
    shuttingDown = true
    const exits = Object.values(cluster.workers ?? {}).map((w) => new Promise<void>((resolve) => {
      if (w === undefined || w.isDead()) return resolve()
      w.once('exit', () => resolve())
      if (listening.has(w.id)) w.send({ ms: 'shutdown' } satisfies ToWorker)
      // A replacement still starting has nothing to drain and no one to hear the word yet (it would
      // be killed only after the deadline): the signal stops it.
      else w.process.kill('SIGTERM')
    }))
    // A worker that outlives its own deadline (plus a margin) is killed.
    const kill = setTimeout(() => { for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL') }, remainingMs() + 5000)
    await Promise.all(exits)
    clearTimeout(kill)
  })
  lifecycle.add('admin', () => admin.close())
  const signal = await serveUntilSignalled({
    banner: `modelsplit: predictions on ${url}, admin on ${adminUrl}${grpcUrl === undefined ? '' : `, gRPC on ${grpcUrl}`} (config ${configFile}, sha256 ${plan.loaded.sha256.slice(0, 12)}, ${workers} workers)\n`,
    out: io.out,
    onHangup: async () => {
      const r = await reload()
      if (r.result === 'failure') log(new ConfigError(r.problems ?? []).message)
      for (const w of Object.values(cluster.workers ?? {})) w?.send({ ms: 'reopen' } satisfies ToWorker)
    },
  })
  log(`${signal}: draining ${Object.keys(cluster.workers ?? {}).length} workers (shutdown_timeout_ms=${store.current().config.shutdown_timeout_ms})`)
  await lifecycle.stop(() => store.current().config.shutdown_timeout_ms)
  return 0
}
