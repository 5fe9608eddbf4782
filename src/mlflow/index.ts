// The router's side of MLflow: which registered versions serve (the registry), the online runs
// (the reporter), and, with write_aliases, the registry following what the router decided. Every
// call runs from its own timers or after a decision, bounded and retried; MLflow down or slow is
// counted and logged at most once per log_interval, and never reaches the request path.
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Config, MlflowConfig } from '../config/types.js'
import type { TallyView } from '../evaluation/index.js'
import type { Metrics } from '../metrics/index.js'
import type { Runtime } from '../proxy/runtime.js'
import type { DecisionRecord } from '../record/schema.js'
import { MlflowClient } from './client.js'
import { Registry } from './registry.js'
import { RunReporter } from './reporter.js'

export { Registry } from './registry.js'
export { MlflowClient } from './client.js'

/** How long after start (or after becoming the cluster's writer) the first numbers go to MLflow. */
const FIRST_LOG_MS = 2000

export interface LinkHost {
  runtime(): Runtime
  tally(): Promise<TallyView>
  decision(route: string): Record<string, unknown> | undefined
  /** Rebuilds the plan in force (a version changed). */
  refresh(): Promise<{ ok: true } | { ok: false; error: string }>
  readonly metrics: Metrics
  log(level: 'info' | 'warn', message: string): void
  now(): number
}

interface AliasWrite {
  readonly describe: string
  readonly calls: readonly { endpoint: string; body: unknown }[]
}

export class MlflowLink {
  readonly registry: Registry
  readonly #host: LinkHost
  readonly #reporter: RunReporter
  /** Only one process of a cluster writes runs and aliases (the others resolve versions only). */
  #writes: boolean
  #client: { key: string; client: MlflowClient } | null = null
  #cfg: MlflowConfig | null = null
  #logTimer: NodeJS.Timeout | undefined
  #refreshTimer: NodeJS.Timeout | undefined
  /** MLflow work that writes (runs, aliases), one at a time. */
  #chain: Promise<void> = Promise.resolve()
  readonly #pending: AliasWrite[] = []
  #lastWarn = -Infinity
  #suppressed = 0
  #closed = false
  /** The first log after start is scheduled (once per process). */
  #startedLogging = false
  /** What the timers were set for: they are set again only when it changes. */
  #timers = ''

  constructor(host: LinkHost, opts: { stateFile: string; writes: boolean }) {
    this.#host = host
    this.#writes = opts.writes
    this.registry = new Registry(opts.stateFile, host.log)
    this.#reporter = new RunReporter({
      runtime: host.runtime,
      tally: host.tally,
      decision: host.decision,
      registry: this.registry,
      now: host.now,
    })
  }

  /** registry.json beside the records (one per cluster worker). */
  static stateFileFor(config: Config, worker?: number): string {
    return join(dirname(config.recording.path), worker === undefined ? 'registry.json' : `registry.w${worker}.json`)
  }

  /** Model name → registered version, for the plan. */
  versions(): Map<string, string> {
    return this.registry.versions()
  }

  /**
   * Resolves the config's aliases before its plan comes into force (load, reload): one attempt per
   * model, so a router starting while MLflow is down waits at most mlflow.timeout_ms, then serves
   * the versions it last knew.
   */
  async resolve(config: Config): Promise<void> {
    if (this.#closed) return
    const client = await this.#clientFor(config.mlflow)
    const r = await this.registry.resolve(config, client, 1)
    this.#warn(r.errors)
    this.#publish(config)
  }

  /**
   * Under --workers the primary names one worker the writer of runs and aliases (and names another
   * when it dies); a single process always is.
   */
  setWrites(on: boolean): void {
    if (this.#writes === on) return
    this.#writes = on
    this.#timers = ''
    this.follow(this.#host.runtime())
  }

  /** A runtime came into force: timers follow its config, runs follow its experiments. */
  follow(runtime: Runtime): void {
    const cfg = runtime.config.mlflow
    this.#cfg = cfg
    this.#reporter.observe(runtime)
    if (this.#closed) return
    const follows = Object.values(runtime.config.models).some((m) => m.mlflow?.alias != null)
    const timers = cfg === null ? '' : JSON.stringify([cfg.log_interval_ms, cfg.refresh_ms, follows, this.#writes])
    if (timers === this.#timers) return
    this.#timers = timers
    clearInterval(this.#logTimer)
    clearInterval(this.#refreshTimer)
    this.#logTimer = undefined
    this.#refreshTimer = undefined
    if (cfg === null) return
    if (this.#writes) {
      this.#logTimer = setInterval(() => { void this.logNow() }, cfg.log_interval_ms)
      this.#logTimer.unref()
      // The run shows up in MLflow a moment after start, not a whole log_interval later.
      if (!this.#startedLogging) {
        this.#startedLogging = true
        setTimeout(() => { void this.logNow() }, FIRST_LOG_MS).unref()
      }
    }
    if (follows) {
      this.#refreshTimer = setInterval(() => { void this.refreshNow() }, cfg.refresh_ms)
      this.#refreshTimer.unref()
    }
  }

  /** Logs every route's numbers to its run (the log_interval timer; tests call it directly). */
  logNow(): Promise<void> {
    return this.#enqueue(async (client, cfg) => {
      const moved = await this.#drainAliases(client)
      this.#warn(await this.#reporter.logAll(client, cfg))
      if (moved) void this.refreshNow()
    })
  }

  /** Resolves aliases again (the refresh timer); a version that moved rebuilds the plan. */
  async refreshNow(): Promise<void> {
    const config = this.#host.runtime().config
    const client = await this.#clientFor(config.mlflow)
    if (client === null || this.#closed) return
    const r = await this.registry.resolve(config, client)
    this.#warn(r.errors)
    this.#publish(config)
    if (r.changed.length > 0) {
      const applied = await this.#host.refresh()
      if (!applied.ok) this.#host.log('warn', `new registry versions not applied, the plan in force stays: ${applied.error}`)
    }
  }

  /**
   * A decision was taken: its route's run gets the numbers now, and with write_aliases a promotion
   * moves the alias to the winner's version, a rollback tags the candidate's version.
   */
  onDecision(record: DecisionRecord): void {
    const cfg = this.#cfg
    if (cfg === null || !this.#writes || this.#closed) return
    const write = cfg.write_aliases ? this.#aliasWrite(record, cfg) : null
    if (write !== null) this.#pending.push(write)
    void this.#enqueue(async (client, c) => {
      const moved = await this.#drainAliases(client)
      const problem = await this.#reporter.logRoute(client, c, record.route)
      this.#warn(problem === null ? [] : [problem])
      // The alias may be one this router follows (the control's champion): take it now.
      if (moved) void this.refreshNow()
    })
  }

  /** What /admin/config shows under `mlflow`. */
  status(): Record<string, unknown> {
    const runtime = this.#host.runtime()
    return {
      models: this.registry.status(),
      runs: Object.fromEntries(RunReporter.routes(runtime).map((r) => [r.name, this.#reporter.runOf(r.name)])),
      pending_alias_writes: this.#pending.map((p) => p.describe),
    }
  }

  /** The last numbers go to MLflow (bounded by mlflow.timeout_ms), then the client closes. */
  async close(): Promise<void> {
    if (this.#closed) return
    clearInterval(this.#logTimer)
    clearInterval(this.#refreshTimer)
    const cfg = this.#cfg
    if (cfg !== null && this.#writes) {
      const last = this.logNow()
      await Promise.race([last, new Promise((resolve) => { setTimeout(resolve, cfg.timeout_ms).unref() })])
    }
    this.#closed = true
    await this.#client?.client.close()
  }

  #aliasWrite(record: DecisionRecord, cfg: MlflowConfig): AliasWrite | null {
    const kind = record.kind
    const result = record.result
    const rollout = record.rollout as { candidate?: string } | undefined
    const bandit = record.bandit as { winner?: string | null } | undefined
    const promoted = (kind === 'rollout' || kind === 'operator') && result === 'promote' ? rollout?.candidate
      : kind === 'bandit' && result === 'stop' ? bandit?.winner ?? undefined : undefined
    const rolledBack = (kind === 'rollout' && result === 'rollback') || (kind === 'operator' && result === 'abort') ? rollout?.candidate : undefined
    const model = promoted ?? rolledBack
    if (model === undefined) return null
    const target = this.#host.runtime().routes.find((r) => r.name === record.route)?.targets.find((t) => t.model === model)
    const reg = target?.registry
    if (reg == null || reg.version === null) {
      this.#host.log('info', `route ${record.route}: ${model} ${promoted !== undefined ? 'promoted' : 'rolled back'}; it has no resolved MLflow version (models.${model}.mlflow), so the registry is left alone`)
      return null
    }
    const tag = (key: string, value: string): { endpoint: string; body: unknown } => ({ endpoint: 'model-versions/set-tag', body: { name: reg.model, version: reg.version, key, value: value.slice(0, 5000) } })
    if (promoted !== undefined) {
      return {
        describe: `set ${reg.model}@${cfg.promote_alias} to version ${reg.version} (route ${record.route} promoted ${model})`,
        calls: [
          { endpoint: 'registered-models/alias', body: { name: reg.model, alias: cfg.promote_alias, version: reg.version } },
          tag('modelsplit.promoted_at', record.ts),
          tag('modelsplit.route', record.route),
        ],
      }
    }
    return {
      describe: `tag ${reg.model} version ${reg.version} rolled back (route ${record.route})`,
      calls: [tag('modelsplit.rolled_back', String(record.reason ?? 'rolled back')), tag('modelsplit.route', record.route)],
    }
  }

  /** Writes queued alias changes in order; one that fails stays queued for the next interval. */
  async #drainAliases(client: MlflowClient): Promise<boolean> {
    let moved = false
    while (this.#pending.length > 0) {
      const w = this.#pending[0] as AliasWrite
      for (const call of w.calls) {
        const r = await client.post(call.endpoint, call.body)
        if (!r.ok) {
          this.#warn([`cannot ${w.describe}: ${r.message}; retried at the next log interval`])
          return moved
        }
      }
      this.#pending.shift()
      this.#host.log('info', `MLflow registry: ${w.describe}`)
      moved = true
    }
    return moved
  }

  #enqueue(work: (client: MlflowClient, cfg: MlflowConfig) => Promise<void>): Promise<void> {
    const run = async (): Promise<void> => {
      const cfg = this.#cfg
      if (cfg === null || this.#closed) return
      const client = await this.#clientFor(cfg)
      if (client === null) return
      try {
        await work(client, cfg)
      } catch (err) {
        this.#warn([(err as Error).message])
      }
    }
    this.#chain = this.#chain.then(run, run)
    return this.#chain
  }

  /** The client for a config's tracking server; rebuilt when the server, token or timeout change. */
  async #clientFor(cfg: MlflowConfig | null): Promise<MlflowClient | null> {
    if (cfg === null) return null
    let token: string | null = null
    if (cfg.token_file !== null) {
      try {
        token = (await readFile(cfg.token_file, 'utf8')).trim()
      } catch (err) {
        this.#warn([`cannot read mlflow.token_file ${cfg.token_file}: ${(err as Error).message}`])
        return null
      }
    }
    const key = JSON.stringify([cfg.tracking_uri, token, cfg.timeout_ms])
    if (this.#client?.key === key) return this.#client.client
    const old = this.#client
    const counter = this.#host.metrics.mlflowRequests
    this.#client = { key, client: new MlflowClient({ baseUrl: cfg.tracking_uri, token, timeoutMs: cfg.timeout_ms, count: (result) => counter.inc({ result }) }) }
    void old?.client.close()
    return this.#client.client
  }

  #publish(config: Config): void {
    const g = this.#host.metrics.modelVersion
    g.reset()
    const versions = this.registry.versions()
    for (const [name, m] of Object.entries(config.models)) {
      if (m.mlflow === null) continue
      g.set({ model: name, registered_model: m.mlflow.model, version: versions.get(name) ?? 'unresolved' }, 1)
    }
  }

  /** MLflow problems: one log line per log_interval at most, saying how many were held back. */
  #warn(problems: readonly string[]): void {
    if (problems.length === 0) return
    const now = this.#host.now()
    const every = this.#cfg?.log_interval_ms ?? 60_000
    if (now - this.#lastWarn < every) {
      this.#suppressed += problems.length
      return
    }
    const held = this.#suppressed
    this.#lastWarn = now
    this.#suppressed = 0
    this.#host.log('warn', `MLflow: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}${held > 0 ? `; ${held} MLflow problems not logged since the last such line` : ''}`)
  }
}
