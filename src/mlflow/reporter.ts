// One MLflow run per route experiment (its arms, their registered versions, control and salt): the
// online numbers of the versions a route compares, logged at every mlflow.log_interval and after
// every decision, next to the training runs of those versions. A run is found again by its tags,
// so a restarted router resumes it; a new version starts a new run, as it starts a new experiment.
import { createHash } from 'node:crypto'
import { formatDuration } from '../config/decisions.js'
import type { MlflowConfig } from '../config/types.js'
import { bucketQuantile } from '../decisions/histogram.js'
import { experimentOf, type TallyView } from '../evaluation/index.js'
import { LATENCY_BUCKETS } from '../metrics/index.js'
import { answered, experimentIdentity, type RouteRuntime, type Runtime } from '../proxy/runtime.js'
import type { MlflowClient } from './client.js'
import type { Registry } from './registry.js'

export interface ReporterHost {
  runtime(): Runtime
  /** The numbers /admin/experiments reads (this replica's, or the fleet's from Prometheus). */
  tally(): Promise<TallyView>
  /** A route's rollout or bandit as /admin/rollouts shows it; undefined without one. */
  decision(route: string): Record<string, unknown> | undefined
  readonly registry: Registry
  now(): number
}

interface Counts {
  requests: number
  errors: number
  latency: Float64Array
  latencyTotal: number
  agree: number
  disagree: number
}

interface RouteRun {
  readonly identity: string
  readonly key: string
  runId: string | null
  startTime: number
  /** The arms' and shadows' counters when this experiment began in this process. */
  readonly baseline: Map<string, Counts>
}

type Metric = { key: string; value: number; timestamp: number; step: number }
type RunInfo = { run_id: string; status: string; start_time: number }
type Tag = { key: string; value: string }

/** Keeps each route's run and logs to it; every call is off the request path. */
export class RunReporter {
  readonly #host: ReporterHost
  readonly #runs = new Map<string, RouteRun>()
  #experimentId: { name: string; id: string } | null = null

  constructor(host: ReporterHost) {
    this.#host = host
  }

  /** The routes MLflow gets a run for: those with outcome metrics or shadows. */
  static routes(runtime: Runtime): RouteRuntime[] {
    return runtime.routes.filter((r) => r.metrics.length > 0 || r.shadows.length > 0)
  }

  /** The run of a route's current experiment, once known. */
  runOf(route: string): string | null {
    return this.#runs.get(route)?.runId ?? null
  }

  /** Logs every route's numbers; returns the problems met (the caller logs them, rate-limited). */
  async logAll(client: MlflowClient, cfg: MlflowConfig): Promise<string[]> {
    const problems: string[] = []
    const routes = RunReporter.routes(this.#host.runtime())
    for (const name of [...this.#runs.keys()]) if (!routes.some((r) => r.name === name)) this.#runs.delete(name)
    for (const route of routes) {
      const p = await this.logRoute(client, cfg, route.name)
      if (p !== null) problems.push(p)
    }
    return problems
  }

  /** Logs one route's numbers now (after a decision); a problem is returned, never thrown. */
  async logRoute(client: MlflowClient, cfg: MlflowConfig, name: string): Promise<string | null> {
    const route = this.#host.runtime().routes.find((r) => r.name === name)
    if (route === undefined || (route.metrics.length === 0 && route.shadows.length === 0)) return null
    try {
      const run = await this.#runFor(client, cfg, route)
      if (typeof run === 'string') return `route ${name}: ${run}`
      const now = this.#host.now()
      const { metrics, tags } = await this.#numbers(route, run, now)
      for (let i = 0; i < Math.max(metrics.length, 1); i += 1000) {
        const r = await client.post('runs/log-batch', { run_id: run.runId, metrics: metrics.slice(i, i + 1000), ...(i === 0 ? { tags } : {}) })
        if (!r.ok) return `route ${name}: cannot log to run ${run.runId}: ${r.message}`
      }
      return null
    } catch (err) {
      return `route ${name}: ${(err as Error).message}`
    }
  }

  /**
   * Follows the plan in force (at start and after every change): a route whose experiment changed
   * (a new version behind an arm, other arms) starts a new run from the counters as they are now.
   */
  observe(runtime: Runtime): void {
    for (const route of RunReporter.routes(runtime)) {
      const identity = experimentIdentity(route.plan)
      const run = this.#runs.get(route.name)
      if (run !== undefined && run.identity === identity) continue
      if (run?.runId != null) this.#finishing.push(run.runId)
      this.#runs.set(route.name, { identity, key: createHash('sha256').update(`${route.name}\u0000${identity}`).digest('hex').slice(0, 16), runId: null, startTime: 0, baseline: counts(route) })
    }
  }

  readonly #finishing: string[] = []

  /** The route's run for its current experiment: found by tags, resumed, or created. */
  async #runFor(client: MlflowClient, cfg: MlflowConfig, route: RouteRuntime): Promise<RouteRun | string> {
    // The old versions' experiments are over: their runs are finished, their numbers stay in MLflow.
    while (this.#finishing.length > 0) {
      const done = await client.post('runs/update', { run_id: this.#finishing[0], status: 'FINISHED', end_time: this.#host.now() })
      if (!done.ok) return `cannot finish run ${this.#finishing[0]}: ${done.message}`
      this.#finishing.shift()
    }
    this.observe(this.#host.runtime())
    const run = this.#runs.get(route.name) as RouteRun
    if (run.runId !== null) return run
    const experimentId = await this.#experiment(client, cfg.experiment)
    const found = await this.#oldest(client, experimentId, route.name, run.key)
    if (typeof found === 'string') return found
    let adopted = found
    if (adopted === undefined) {
      const created = await client.post<{ run: { info: { run_id: string; start_time?: number } } }>('runs/create', {
        experiment_id: experimentId,
        run_name: runName(route),
        start_time: this.#host.now(),
        tags: [
          { key: 'modelsplit.route', value: route.name },
          { key: 'modelsplit.experiment', value: run.key },
          { key: 'mlflow.note.content', value: await this.#description(client, route, cfg) },
        ],
      })
      if (!created.ok) return `cannot create a run: ${created.message}`
      // Replicas that start together may each create one: all of them keep the oldest, and the
      // others' are deleted, so an experiment has one run whichever replica logs.
      const oldest = await this.#oldest(client, experimentId, route.name, run.key)
      if (typeof oldest === 'string') return oldest
      adopted = oldest ?? { run_id: created.body.run.info.run_id, status: 'RUNNING', start_time: this.#host.now() }
      if (adopted.run_id !== created.body.run.info.run_id) await client.post('runs/delete', { run_id: created.body.run.info.run_id })
    }
    if (adopted.status !== 'RUNNING') await client.post('runs/update', { run_id: adopted.run_id, status: 'RUNNING' })
    // Params are the experiment's definition; logging the same values again is a no-op. A run
    // whose params differ (weights edited within one experiment) keeps those it was created with.
    const logged = await client.post('runs/log-batch', { run_id: adopted.run_id, params: this.#params(route) })
    if (!logged.ok && logged.code !== 'INVALID_PARAMETER_VALUE') return `cannot log the run's params: ${logged.message}`
    // The run's inputs name the registered versions' logged models, so MLflow links them both ways.
    const modelIds = [...new Set([...route.arms, ...route.shadows].map((t) => this.#host.registry.get(t.model)?.model_id).filter((id): id is string => typeof id === 'string'))]
    if (modelIds.length > 0) {
      const linked = await client.post('runs/log-inputs', { run_id: adopted.run_id, models: modelIds.map((model_id) => ({ model_id })) })
      if (!linked.ok) return `cannot link the registered versions to run ${adopted.run_id}: ${linked.message}`
    }
    run.runId = adopted.run_id
    run.startTime = adopted.start_time
    return run
  }

  /** The oldest run of a route's experiment (ties broken by id, so every replica picks the same), if any. */
  async #oldest(client: MlflowClient, experimentId: string, route: string, key: string): Promise<RunInfo | undefined | string> {
    const found = await client.post<{ runs?: { info: RunInfo }[] }>('runs/search', {
      experiment_ids: [experimentId],
      filter: `tags.\`modelsplit.route\` = '${escape(route)}' and tags.\`modelsplit.experiment\` = '${key}'`,
      order_by: ['attributes.start_time ASC'],
      max_results: 10,
    })
    if (!found.ok) return `cannot search runs: ${found.message}`
    const runs = (found.body.runs ?? []).map((r) => r.info)
    runs.sort((a, b) => a.start_time - b.start_time || (a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : 0))
    return runs[0]
  }

  async #experiment(client: MlflowClient, name: string): Promise<string> {
    if (this.#experimentId?.name === name) return this.#experimentId.id
    const got = await client.get<{ experiment?: { experiment_id: string } }>('experiments/get-by-name', { experiment_name: name })
    let id = got.ok ? got.body.experiment?.experiment_id : undefined
    if (id === undefined) {
      if (!got.ok && got.code !== 'RESOURCE_DOES_NOT_EXIST') throw new Error(`cannot read MLflow experiment "${name}": ${got.message}`)
      const made = await client.post<{ experiment_id: string }>('experiments/create', { name })
      if (made.ok) id = made.body.experiment_id
      else if (made.code === 'RESOURCE_ALREADY_EXISTS') {
        // Another replica created it meanwhile.
        const again = await client.get<{ experiment?: { experiment_id: string } }>('experiments/get-by-name', { experiment_name: name })
        id = again.ok ? again.body.experiment?.experiment_id : undefined
      }
      if (id === undefined) throw new Error(`cannot create MLflow experiment "${name}": ${made.ok ? 'no id in the answer' : made.message}`)
    }
    this.#experimentId = { name, id }
    return id
  }

  /** What does not change within one experiment: its definition. */
  #params(route: RouteRuntime): Tag[] {
    const cfg = route.plan.config
    const params: Tag[] = [
      { key: 'split', value: cfg.split.map((s) => `${s.model}:${s.weight}`).join(',') },
      { key: 'salt', value: cfg.salt },
      { key: 'hash', value: cfg.hash },
      { key: 'control', value: cfg.control },
    ]
    if (cfg.shadow.length > 0) params.push({ key: 'shadows', value: cfg.shadow.map((s) => `${s.model}:${s.percent}%`).join(',') })
    if (cfg.rollout !== null) {
      params.push({ key: 'rollout.candidate', value: cfg.rollout.candidate })
      params.push({ key: 'rollout.steps', value: cfg.rollout.steps.join(',') })
      params.push({ key: 'rollout.step_interval', value: formatDuration(cfg.rollout.step_interval_ms) })
    }
    if (cfg.bandit !== null) params.push({ key: 'bandit.metric', value: cfg.bandit.metric })
    for (const m of cfg.metrics) params.push({ key: `metric.${m.name}`, value: `${m.type}${m.mde !== null ? `, mde ${m.mde}` : ''}` })
    for (const t of [...route.arms, ...route.shadows]) {
      if (t.registry !== null) params.push({ key: `model.${t.model}`, value: `${t.registry.model}/${t.registry.version ?? 'unresolved'}` })
    }
    return params.map((p) => ({ key: mlflowKey(p.key), value: p.value.slice(0, 6000) }))
  }

  /** The run's description in MLflow's UI: the versions compared, linked to their registry pages and training runs. */
  async #description(client: MlflowClient, route: RouteRuntime, cfg: MlflowConfig): Promise<string> {
    const lines = [`Online evaluation of route **${route.name}** (path \`${route.path}\`) by modelsplit, logged every ${formatDuration(cfg.log_interval_ms)} and after every decision.`, '']
    const role = (model: string): string => model === route.control ? 'control' : route.arms.some((a) => a.model === model) ? 'candidate' : 'shadow'
    for (const t of [...route.arms, ...route.shadows]) {
      if (t.registry === null) {
        lines.push(`- ${t.model} (${role(t.model)}): ${t.url}`)
        continue
      }
      const v = t.registry.version ?? 'unresolved'
      const runId = this.#host.registry.get(t.model)?.run_id ?? null
      let training = ''
      if (runId !== null) {
        const got = await client.get<{ run?: { info?: { experiment_id?: string } } }>('runs/get', { run_id: runId }, 1)
        const exp = got.ok ? got.body.run?.info?.experiment_id : undefined
        training = exp !== undefined ? `, trained in run [${runId}](#/experiments/${exp}/runs/${runId})` : `, trained in run ${runId}`
      }
      lines.push(`- ${t.model} (${role(t.model)}): [${t.registry.model} version ${v}](#/models/${encodeURIComponent(t.registry.model)}/versions/${v})${training}`)
    }
    return lines.join('\n')
  }

  async #numbers(route: RouteRuntime, run: RouteRun, now: number): Promise<{ metrics: Metric[]; tags: Tag[] }> {
    const metrics: Metric[] = []
    const step = Math.max(0, Math.floor((now - run.startTime) / 1000))
    const put = (key: string, value: number | null | undefined): void => {
      if (value !== null && value !== undefined && Number.isFinite(value)) metrics.push({ key: mlflowKey(key), value, timestamp: now, step })
    }
    const current = counts(route)
    const since = (model: string): Counts => minus(current.get(model), run.baseline.get(model))
    route.arms.forEach((arm, i) => {
      const c = since(arm.model)
      put(`${arm.model}.requests`, c.requests)
      put(`${arm.model}.error_rate`, c.requests > 0 ? c.errors / c.requests : null)
      put(`${arm.model}.latency_p50_ms`, ms(bucketQuantile(LATENCY_BUCKETS, c.latency, c.latencyTotal, 0.5)))
      put(`${arm.model}.latency_p99_ms`, ms(bucketQuantile(LATENCY_BUCKETS, c.latency, c.latencyTotal, 0.99)))
      put(`${arm.model}.share`, 100 * (route.assigner.shares[i] ?? 0))
    })
    for (const s of route.shadows) {
      const c = since(`shadow:${s.model}`)
      const compared = c.agree + c.disagree
      put(`${s.model}.requests`, c.requests)
      put(`${s.model}.error_rate`, c.requests > 0 ? c.errors / c.requests : null)
      put(`${s.model}.latency_p99_ms`, ms(bucketQuantile(LATENCY_BUCKETS, c.latency, c.latencyTotal, 0.99)))
      put(`${s.model}.compared`, compared)
      put(`${s.model}.agreement`, compared > 0 ? c.agree / compared : null)
    }
    const tags: Tag[] = [{ key: 'modelsplit.versions', value: JSON.stringify(Object.fromEntries([...route.arms, ...route.shadows].filter((t) => t.registry !== null).map((t) => [t.model, `${t.registry?.model}/${t.registry?.version ?? 'unresolved'}`]))) }]
    if (route.metrics.length > 0) {
      const exp = experimentOf(route.plan, await this.#host.tally())
      for (const [metric, report] of Object.entries(exp.metrics)) {
        for (const [model, m] of Object.entries(report.models)) {
          put(`${model}.${metric}.mean`, report.type === 'binary' ? m.rate : m.mean)
          put(`${model}.${metric}.ci_low`, m.ci[0])
          put(`${model}.${metric}.ci_high`, m.ci[1])
          put(`${model}.${metric}.n`, m.outcomes)
        }
        for (const [model, c] of Object.entries(report.comparisons)) {
          put(`${model}.${metric}.lift`, c.abs_lift)
          put(`${model}.${metric}.rel_lift`, c.rel_lift)
          put(`${model}.${metric}.p_value`, c.p_value_sequential)
        }
        put(`${metric}.srm_p`, report.srm.p_value)
        tags.push({ key: mlflowKey(`modelsplit.verdict.${metric}`), value: report.verdict })
      }
    }
    const d = this.#host.decision(route.name)
    if (d !== undefined && typeof d.state === 'string') {
      tags.push({ key: 'modelsplit.rollout.state', value: d.state })
      if (typeof d.percent === 'number') tags.push({ key: 'modelsplit.rollout.percent', value: String(d.percent) })
      if (typeof d.candidate === 'string') tags.push({ key: 'modelsplit.rollout.candidate', value: d.candidate })
    }
    if (d !== undefined && typeof d.bandit === 'object' && d.bandit !== null) {
      const winner = (d.bandit as { winner?: unknown }).winner
      tags.push({ key: 'modelsplit.bandit.winner', value: typeof winner === 'string' ? winner : 'none yet' })
    }
    return { metrics, tags }
  }
}

/**
 * A key MLflow accepts: letters, digits, `_ - . / ` and space, at most 250 characters. Model names
 * are free-form in the config; another character becomes `_` (so `churn@v1` logs as `churn_v1`).
 */
export function mlflowKey(key: string): string {
  return key.replace(/[^A-Za-z0-9_\-./ ]/g, '_').slice(0, 250)
}

function runName(route: RouteRuntime): string {
  const versions = route.arms.map((a) => a.registry === null ? a.model : `v${a.registry.version ?? '?'}`).join(' vs ')
  return `${route.name}: ${versions}`
}

function escape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")
}

function ms(seconds: number | null): number | null {
  return seconds === null ? null : seconds * 1000
}

function counts(route: RouteRuntime): Map<string, Counts> {
  const out = new Map<string, Counts>()
  for (const arm of route.arms) {
    const { requests, errors } = answered(arm.byCode)
    out.set(arm.model, { requests, errors, latency: Float64Array.from(arm.duration.counts), latencyTotal: arm.duration.count, agree: 0, disagree: 0 })
  }
  for (const s of route.shadows) {
    const { requests, errors } = answered(s.byCode)
    let agree = 0
    let disagree = 0
    for (const c of s.comparisons.values()) {
      agree += c.agree.value
      disagree += c.disagree.value
    }
    out.set(`shadow:${s.model}`, { requests, errors, latency: Float64Array.from(s.duration.counts), latencyTotal: s.duration.count, agree, disagree })
  }
  return out
}

function minus(now: Counts | undefined, base: Counts | undefined): Counts {
  const n = now ?? { requests: 0, errors: 0, latency: new Float64Array(LATENCY_BUCKETS.length + 1), latencyTotal: 0, agree: 0, disagree: 0 }
  if (base === undefined) return n
  return {
    requests: n.requests - base.requests,
    errors: n.errors - base.errors,
    latency: n.latency.map((c, i) => c - (base.latency[i] ?? 0)),
    latencyTotal: n.latencyTotal - base.latencyTotal,
    agree: n.agree - base.agree,
    disagree: n.disagree - base.disagree,
  }
}
