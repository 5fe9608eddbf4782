import { createHash } from 'node:crypto'
import { dirname, join } from 'node:path'
import { StateFile } from '../state-file.js'
import type { BanditConfig, RolloutConfig } from '../config/decisions.js'
import type { Metrics } from '../metrics/index.js'
import type { Plan, RoutePlan } from '../plan/index.js'
import type { RouteRuntime, Runtime } from '../proxy/runtime.js'
import { SCHEMA_VERSION, type DecisionRecord } from '../record/schema.js'
import type { Summary, WinTally } from '../stats/index.js'
import type { ExperimentInput, ModelReport, RouteExperiment } from '../experiment/index.js'
import type { TallyView } from '../evaluation/index.js'
import { thompson, type BanditResult } from './bandit.js'
import { checkPromotion, type ShadowEvidence } from './promotion.js'
import { LocalData } from './local.js'
import { PrometheusData, type FleetRollout, type ReplicaRollout } from './prometheus.js'
import { Random } from './random.js'
import { ROLLOUT_STATUSES, applyAction, decideRollout, isAhead, rolloutPercent, rolloutWeights, startRollout, stepOf, type ArmWindow, type GuardrailResult, type RolloutState, type RolloutStatus } from './rollout.js'

/** What the engine needs of the router; no transport, so a test drives it with a fake clock. */
export interface DecisionHost {
  /** The runtime in force (its arms carry the counters the local data come from). */
  runtime(): Runtime
  /** This replica's numbers of a route's experiment (the tally's). */
  experiment(route: RoutePlan): ExperimentInput | undefined
  /** The fleet's numbers through Prometheus as of a time (evaluation.prometheus). */
  fleet?(url: string, at: number): Promise<TallyView | string>
  /** The judge's verdicts on a shadow against a primary, this process's (api: openai routes with a judge). */
  judged?(route: string, primary: string, shadow: string): WinTally | undefined
  /** Rebuilds the plan in force with the engine's weights (after a decision changed them). */
  refresh(): Promise<{ ok: true } | { ok: false; error: string }>
  record(record: DecisionRecord): void
  log(level: 'info' | 'warn', message: string): void
  readonly metrics: Metrics
  now(): number
}

/** One decision as the admin API, the records and the log show it. */
export interface DecisionEntry {
  readonly at: string
  readonly kind: 'rollout' | 'bandit' | 'promotion' | 'operator'
  readonly result: string
  readonly reason: string
  readonly inputs?: unknown
}

interface RouteDecisions {
  /** Hash of the route's decision definition: a change restarts the decision. */
  definition: string
  rollout: RolloutState | null
  bandit: { shares: Record<string, number>; winner: string | null; probability_best: Record<string, number>; expected_loss: Record<string, number> } | null
  history: DecisionEntry[]
  /** The last boundary this replica decided the route at (ms). */
  decidedAt?: number
}

/** A route's decisions as /admin/rollouts shows them: as of the weights in force. */
type View = Pick<RouteDecisions, 'rollout' | 'bandit' | 'history'>


const HISTORY = 100
const STATE_VERSION = 1

export type OperatorAction = 'pause' | 'resume' | 'abort' | 'promote'

/**
 * Runs the routes' decisions at aligned boundaries (multiples of evaluation.interval since the
 * epoch) from this replica's own numbers, keeps their state in a file beside the records (written
 * atomically, read back at start, so a restart resumes), and lays the decided weights over the
 * compiled plan. The decisions themselves are the pure functions of rollout.ts, bandit.ts and
 * promotion.ts.
 */
export class DecisionEngine {
  readonly #host: DecisionHost
  readonly #state: StateFile
  readonly #routes = new Map<string, RouteDecisions>()
  readonly #local: DecisionData
  #fleet: { key: string; data: DecisionData } | undefined
  /** Routes whose rollout this process started afresh (no saved state): a fleet may be ahead. */
  readonly #fresh = new Set<string>()
  /** Decisions a plan being prepared starts or ends, applied by adopt() once it is swapped in. */
  #pending: { plan: Plan; routes: Map<string, RouteDecisions | null> } | undefined
  /** The decisions the last plan built was built from, and those shown with the runtime in force. */
  #built = new Map<string, View>()
  #view = new Map<string, View>()
  #viewOf: unknown
  #timer: NodeJS.Timeout | undefined
  #catchUp: NodeJS.Timeout | undefined
  #stopped = false
  #ticking: Promise<void> | undefined
  #nextAt = 0

  constructor(host: DecisionHost, stateFile: string, data?: DecisionData) {
    this.#host = host
    this.#state = new StateFile(stateFile, (message) => host.log('warn', `decision state: ${message}`))
    this.#local = data ?? new LocalData(host)
    this.#load()
  }

  /** Where figures come from: Prometheus (the fleet) when configured, else this replica. */
  get #data(): DecisionData {
    return this.#dataFor(this.#host.runtime().plan)
  }

  #dataFor(plan: Plan): DecisionData {
    const source = plan.config.evaluation.prometheus
    if (source === null) return this.#local
    const key = JSON.stringify(source)
    if (this.#fleet?.key !== key) this.#fleet = { key, data: new PrometheusData(source, this.#host.fleet?.bind(this.#host)) }
    return this.#fleet.data
  }

  /** The state file for a config: beside the records. */
  static stateFileFor(plan: Plan, worker?: number): string {
    return join(dirname(plan.config.recording.path), worker === undefined ? 'decisions.json' : `decisions.w${worker}.json`)
  }

  /** Whether any route of the plan has something to decide. */
  static wants(plan: Plan): boolean {
    return plan.routes.some((r) => r.config.rollout !== null || r.config.bandit !== null)
  }

  /**
   * The weights in force for every route with a decision, adopting the plan: decisions whose
   * definition changed (or that are new) start over, the others keep their state.
   */
  weightsFor(plan: Plan): Map<string, number[]> {
    const out = new Map<string, number[]>()
    const now = this.#host.now()
    const interval = plan.config.evaluation.interval_ms
    // Nothing here is observable until the plan is swapped in (adopt): a reload that fails after
    // this (a record file it cannot open) leaves every decision as it was.
    this.#pending = { plan, routes: new Map() }
    for (const route of plan.routes) {
      const cfg = route.config
      if (cfg.rollout === null && cfg.bandit === null) {
        if (this.#routes.has(route.name)) this.#pending.routes.set(route.name, null)
        continue
      }
      const definition = definitionOf(route)
      let d = this.#routes.get(route.name)
      if (d === undefined || d.definition !== definition) {
        const started = Math.floor(now / interval) * interval
        d = {
          definition,
          rollout: cfg.rollout === null ? null : startRollout(cfg.rollout, definition, cfg.control, started),
          bandit: null,
          history: d?.history.slice() ?? [],
        }
        this.#pending.routes.set(route.name, d)
      }
      out.set(route.name, this.#weights(route, d))
    }
    const built = this.#snapshot()
    for (const [name, d] of this.#pending.routes) {
      if (d === null) built.delete(name)
      else built.set(name, { rollout: d.rollout, bandit: d.bandit, history: d.history.slice() })
    }
    this.#built = built
    if (this.#pending.routes.size === 0) this.#pending = undefined
    return out
  }

  /**
   * The plan weightsFor last saw is in force: decisions it started (a new or redefined rollout or
   * bandit) begin now, and those its plan dropped end. Called after the swap, never before.
   */
  adopt(): void {
    const pending = this.#pending
    this.#pending = undefined
    if (pending === undefined) return
    const interval = pending.plan.config.evaluation.interval_ms
    for (const [name, d] of pending.routes) {
      if (d === null) {
        this.#routes.delete(name)
        continue
      }
      const cfg = pending.plan.routes.find((r) => r.name === name)?.config
      this.#routes.set(name, d)
      if (d.rollout !== null) this.#fresh.add(name)
      this.#dataFor(pending.plan).startWindow(name, d.rollout?.stepStartedAt ?? Math.floor(this.#host.now() / interval) * interval)
      this.#note(name, d, { kind: cfg?.rollout != null ? 'rollout' : 'bandit', result: 'start', reason: cfg?.rollout != null ? `rollout of ${cfg.rollout.candidate} starts at ${cfg.rollout.steps[0]}%` : `bandit on ${cfg?.bandit?.metric} starts with even shares` })
    }
    void this.#save()
  }

  #snapshot(): Map<string, View> {
    return new Map([...this.#routes].map(([name, d]) => [name, { rollout: d.rollout, bandit: d.bandit, history: d.history.slice() }]))
  }

  /** The weights in force now follow the decisions: /admin/rollouts shows them from here on. */
  #commit(): void {
    this.#view = this.#snapshot()
    this.#viewOf = this.#host.runtime()
  }

  #weights(route: RoutePlan, d: RouteDecisions): number[] {
    const cfg = route.config
    if (cfg.rollout !== null && d.rollout !== null) return rolloutWeights(cfg.split, { ...cfg.rollout, candidate: d.rollout.candidate }, d.rollout)
    const shares = d.bandit?.shares
    return cfg.split.map((s) => shares === undefined ? 100 / cfg.split.length : 100 * (shares[s.model] ?? 0))
  }

  /**
   * Starts deciding at the next aligned boundary. With evaluation.prometheus a replica first takes
   * the fleet's rollouts where they are ahead of its own (it starts afresh, or from a decisions.json
   * older than the fleet), before it serves; and when it starts between a boundary and the fleet's
   * decision there, it takes that decision itself, from the same figures, at the same time.
   */
  async start(): Promise<void> {
    this.#stopped = false
    const data = this.#data
    if (data instanceof PrometheusData) {
      const now = this.#host.now()
      const routes = this.#host.runtime().routes.filter((r) => r.plan.config.rollout !== null && this.#routes.get(r.name)?.rollout != null)
      // One round of queries for every route at once: start-up waits for Prometheus at most once.
      const fleets = await Promise.all(routes.map((r) => data.rollout(r.name, now)))
      let changed = false
      for (const [i, route] of routes.entries()) {
        const fleet = fleets[i] as FleetRollout | string
        if (typeof fleet === 'string') {
          this.#host.log('warn', `route ${route.name}: cannot read the fleet's rollout (${fleet}); going on from this replica's state, the next boundary tries again`)
          continue
        }
        changed = await this.#reconcile(route, this.#routes.get(route.name) as RouteDecisions, fleet, now) || changed
      }
      if (changed) {
        await this.#save()
        const r = await this.#host.refresh()
        if (!r.ok) this.#host.log('warn', `the fleet's weights not applied, the plan in force stays: ${r.error}`)
      }
      this.#publish()
      this.#commit()
      this.#scheduleCatchUp(now)
    }
    this.#schedule()
  }

  /**
   * The last boundary's decision, for a replica that started after it: the fleet's state it took
   * may not show that decision yet (the others take it a scrape after the boundary). Deciding it
   * again from a state that already shows it holds, so it is taken unless the step began there.
   */
  #scheduleCatchUp(now: number): void {
    const evaluation = this.#host.runtime().config.evaluation
    const boundary = Math.floor(now / evaluation.interval_ms) * evaluation.interval_ms
    const behind = [...this.#routes.values()].some((d) => d.rollout !== null && d.rollout.stepStartedAt < boundary && (d.decidedAt ?? 0) < boundary)
    if (!behind) return
    const settle = evaluation.prometheus?.scrape_interval_ms ?? 0
    this.#catchUp = setTimeout(() => { void this.#tick(boundary, true) }, Math.max(0, boundary + settle - now))
    this.#catchUp.unref()
  }

  /**
   * Takes the fleet's rollout when a replica is ahead of this one (isAhead: replicas never go back,
   * so that is where the fleet is); true if this replica's state changed.
   */
  async #reconcile(route: RouteRuntime, d: RouteDecisions, fleet: FleetRollout, at: number): Promise<boolean> {
    const cfg = route.plan.config.rollout
    const mine = d.rollout
    if (cfg === null || mine === null) return false
    const known = (x: ReplicaRollout): RolloutStatus => (ROLLOUT_STATUSES as readonly string[]).includes(x.state) ? x.state as RolloutStatus : 'running'
    // A rollout this replica started afresh is no state of the fleet's: any replica's is ahead of it.
    const fresh = this.#fresh.delete(route.name)
    let ahead: ReplicaRollout | undefined
    for (const r of fleet.replicas) {
      if (r.definition !== d.definition) continue
      const than = ahead !== undefined ? { ...mine, stepStartedAt: ahead.stepStartedAt, status: known(ahead) } : fresh ? undefined : mine
      if (than === undefined || isAhead({ stepStartedAt: r.stepStartedAt, status: known(r) }, than)) ahead = r
    }
    if (ahead === undefined) return false
    const status = known(ahead)
    const step = stepOf(cfg.steps, ahead.percent)
    const operator = fleet.lastAction !== null && fleet.lastAction.action === 'pause' && fleet.lastAction.at >= ahead.stepStartedAt
    let next: RolloutState = {
      ...mine, candidate: ahead.candidate, control: ahead.control, status, step, stepStartedAt: ahead.stepStartedAt,
      pausedBy: status === 'paused' ? (operator ? 'operator' : 'gate') : null, baseline: null, operatorAt: fleet.lastAction?.at ?? mine.operatorAt,
    }
    // At 100 % the candidate is judged against the control's figures on the step before, which
    // this replica did not see: they are read from Prometheus as the others read them then.
    if ((cfg.steps[step] ?? 0) >= 100 && (status === 'running' || status === 'holding' || status === 'paused')) {
      const baseline = await this.#baseline(route, next)
      if (typeof baseline !== 'string') next = { ...next, baseline }
    }
    const was = `${rolloutPercent(cfg.steps, mine)}% (${mine.status}) since ${new Date(mine.stepStartedAt).toISOString()}`
    d.rollout = next
    this.#data.startWindow(route.name, next.stepStartedAt)
    this.#note(route.name, d, {
      kind: 'rollout',
      result: fresh ? 'join' : 'catch_up',
      reason: `${fresh ? 'joined' : 'caught up with'} the fleet's rollout of ${next.candidate}: ${status} at ${rolloutPercent(cfg.steps, next)}% since ${new Date(next.stepStartedAt).toISOString()}${fresh ? '' : ` (this replica was at ${was}, from a state saved before it stopped or a boundary it missed)`}`,
    }, at)
    return true
  }

  /**
   * The control's figures on the step before a 100 % step, from Prometheus, as the others judged
   * them when they stepped up: the window from that step's start to the 100 % step's first start
   * (the fleet's step gauges just before each start; a resume at 100 % restarted the step later).
   */
  async #baseline(route: RouteRuntime, state: RolloutState): Promise<ArmWindow | string> {
    const data = this.#data
    if (!(data instanceof PrometheusData)) return 'no earlier step on this replica'
    let end = state.stepStartedAt
    for (let hops = 0; hops < 10; hops++) {
      const before = await data.rollout(route.name, end - 1)
      if (typeof before === 'string') return before
      let previous: ReplicaRollout | undefined
      for (const r of before.replicas) {
        if (r.definition === state.definition && r.stepStartedAt < end && r.stepStartedAt > (previous?.stepStartedAt ?? -Infinity)) previous = r
      }
      if (previous === undefined) return `the step before ${new Date(end).toISOString()} is not in Prometheus`
      if (previous.percent < 100 - 1e-6) {
        const w = await data.window(route, previous.stepStartedAt, end)
        return typeof w === 'string' ? w : w.get(state.control) ?? EMPTY_WINDOW
      }
      end = previous.stepStartedAt
    }
    return 'the 100% step was restarted too often to find the step before it'
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    clearTimeout(this.#catchUp)
  }

  /** When the next decision is due (ms since the epoch), or 0 when stopped. */
  get nextAt(): number {
    return this.#stopped ? 0 : this.#nextAt
  }

  #schedule(): void {
    if (this.#stopped) return
    const evaluation = this.#host.runtime().config.evaluation
    const interval = evaluation.interval_ms
    const now = this.#host.now()
    this.#nextAt = (Math.floor(now / interval) + 1) * interval
    // From Prometheus, a boundary's data are complete once a scrape after it has landed: the
    // queries still ask for the boundary's instant, so every replica reads the same numbers.
    const settle = evaluation.prometheus?.scrape_interval_ms ?? 0
    this.#timer = setTimeout(() => {
      void this.tick(this.#nextAt).finally(() => this.#schedule())
    }, this.#nextAt - now + settle)
    this.#timer.unref()
  }

  /** Takes every route's decision as of `boundary` (the scheduler calls it; tests may too). */
  tick(boundary: number): Promise<void> {
    return this.#tick(boundary, false)
  }

  /** A catch-up decides only the routes that have not decided at `boundary` yet. */
  #tick(boundary: number, catchUp: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.#stopped && catchUp) return
      const runtime = this.#host.runtime()
      let changed = false
      for (const route of runtime.routes) {
        const d = this.#routes.get(route.name)
        if (d === undefined || (catchUp && (d.decidedAt ?? 0) >= boundary)) continue
        d.decidedAt = Math.max(d.decidedAt ?? 0, boundary)
        try {
          if (route.plan.config.rollout !== null) changed = await this.#rolloutTick(route, route.plan.config.rollout, d, boundary) || changed
          else if (route.plan.config.bandit !== null) changed = await this.#banditTick(route, route.plan.config.bandit, d, boundary) || changed
        } catch (err) {
          this.#host.log('warn', `decision on route ${route.name} failed and holds: ${(err as Error).message}`)
        }
      }
      // A config without decisions leaves no state file (nor its directory) behind.
      if (this.#routes.size > 0) await this.#save()
      if (changed) {
        const r = await this.#host.refresh()
        if (!r.ok) this.#host.log('warn', `decided weights not applied, the plan in force stays: ${r.error}`)
      }
      this.#publish()
      this.#commit()
    }
    this.#ticking = (this.#ticking ?? Promise.resolve()).then(run, run)
    return this.#ticking
  }

  async #rolloutTick(route: RouteRuntime, cfg: RolloutConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
    let followed = false
    const data = this.#data
    if (data instanceof PrometheusData) {
      // The fleet's state as of the boundary: a replica that missed a decision (down across a
      // boundary, started from an older state) takes it before deciding this one like the others.
      const fleet = await data.rollout(route.name, boundary)
      if (typeof fleet !== 'string') {
        followed = this.#followOperators(route.name, d, fleet, boundary)
        followed = await this.#reconcile(route, d, fleet, boundary) || followed
      }
    }
    let state = d.rollout as RolloutState
    const live = { ...cfg, candidate: state.candidate }
    // An operator's resume after the boundary restarted the step later than the boundary's data.
    if (state.stepStartedAt > boundary && (state.status === 'running' || state.status === 'holding')) {
      this.#note(route.name, d, { kind: 'rollout', result: 'hold', reason: `holding at ${rolloutPercent(cfg.steps, state)}%: the step restarted at ${new Date(state.stepStartedAt).toISOString()}, after this boundary; its figures are judged from the next one` }, boundary)
      return followed
    }
    // At 100 % the control serves nobody: only its figures from the step before are judged.
    let noBaseline: string | null = null
    if ((cfg.steps[state.step] ?? 0) >= 100 && state.baseline == null && (state.status === 'running' || state.status === 'holding') && data instanceof PrometheusData) {
      const baseline = await this.#baseline(route, state)
      if (typeof baseline === 'string') noBaseline = `the control's figures from the step before 100% are not known (${baseline})`
      else d.rollout = state = { ...state, baseline }
    }
    const window = await this.#data.window(route, state.stepStartedAt, boundary)
    const missing = typeof window === 'string' ? window : noBaseline
    const control = (typeof window === 'string' ? undefined : window.get(state.control)) ?? EMPTY_WINDOW
    const candidate = (typeof window === 'string' ? undefined : window.get(state.candidate)) ?? EMPTY_WINDOW
    const guardrails: GuardrailResult[] = []
    let guardMissing: string | null = null
    // The gates' guardrails, and every metric declared with a non-inferiority margin.
    const guarded = [...new Set([...cfg.gates.guardrails, ...route.metrics.filter((m) => m.guardrail !== null).map((m) => m.name)])]
    for (const metric of guarded) {
      const g = await this.#guardrail(route, metric, state.candidate, boundary)
      if (typeof g === 'string') guardMissing ??= g
      else guardrails.push(g)
    }
    // The judge's verdicts on the candidate, mirrored the control's requests (cumulative: a win rate
    // is the model's, not the step's, and the sequential p holds at every look).
    let judged: WinTally | undefined
    if (cfg.gates.min_win_rate !== null || cfg.gates.judge_guardrail) {
      const t = await this.#data.judged?.(route, state.control, state.candidate, boundary)
      if (typeof t === 'string') guardMissing ??= `the judge's verdicts cannot be read (${t})`
      else judged = t
    }
    const inputs = { control, candidate, guardrails, missing: missing ?? guardMissing, ...(judged !== undefined ? { judged } : {}) }
    const before = JSON.stringify(rolloutWeights(route.plan.config.split, live, state))
    const decision = decideRollout(live, state, inputs, boundary)
    state = decision.state
    d.rollout = state
    if (decision.result === 'advance') this.#data.startWindow(route.name, state.stepStartedAt)
    this.#note(route.name, d, { kind: 'rollout', result: decision.result, reason: decision.reason, inputs: { control, candidate, guardrails, ...(judged !== undefined ? { judged } : {}), step: cfg.steps[state.step], status: state.status } }, boundary)
    let changed = followed || JSON.stringify(rolloutWeights(route.plan.config.split, live, state)) !== before
    // A finished rollout makes room for a shadow that has proven itself.
    if (state.status === 'promoted' || state.status === 'rolled_back') changed = await this.#promotionTick(route, cfg, d, boundary) || changed
    return changed
  }

  async #promotionTick(route: RouteRuntime, cfg: RolloutConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
    const state = d.rollout as RolloutState
    const waiting: string[] = []
    const control = state.status === 'promoted' ? state.candidate : state.control
    for (const shadow of route.shadows) {
      const pw = route.plan.config.shadow.find((s) => s.model === shadow.model)?.promote_when
      if (pw === null || pw === undefined || shadow.model === control || shadow.model === state.candidate) continue
      let evidence = await this.#data.shadow(route, shadow.model, control, boundary)
      if (typeof evidence === 'string') {
        waiting.push(`${shadow.model}: ${evidence}`)
        continue
      }
      if (pw.min_win_rate !== null) {
        const judged = await this.#data.judged?.(route, control, shadow.model, boundary)
        if (typeof judged === 'string') {
          waiting.push(`${shadow.model}: the judge's verdicts cannot be read (${judged})`)
          continue
        }
        if (judged !== undefined) evidence = { ...evidence, judged }
      }
      const check = checkPromotion(shadow.model, pw, evidence)
      if (!check.ready) {
        waiting.push(check.reason)
        continue
      }
      d.rollout = startRollout(cfg, d.definition, control, boundary, shadow.model)
      this.#data.startWindow(route.name, boundary)
      this.#note(route.name, d, { kind: 'promotion', result: 'start_rollout', reason: check.reason, inputs: evidence }, boundary)
      return true
    }
    // Say why no shadow is promoted yet, once per change of reason.
    if (waiting.length > 0) {
      const reason = `no shadow ready to promote: ${waiting.join('; ')}`
      const last = d.history.at(-1)
      if (!(last?.kind === 'promotion' && last.reason === reason)) this.#note(route.name, d, { kind: 'promotion', result: 'hold', reason }, boundary)
    }
    return false
  }

  async #banditTick(route: RouteRuntime, cfg: BanditConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
    if (d.bandit?.winner !== null && d.bandit?.winner !== undefined) {
      this.#note(route.name, d, { kind: 'bandit', result: 'hold', reason: `stopped: all traffic to ${d.bandit.winner}` }, boundary)
      return false
    }
    const metric = route.metrics.find((m) => m.name === cfg.metric)
    const exp = await this.#data.experiment(route, boundary)
    if (typeof exp === 'string') {
      this.#note(route.name, d, { kind: 'bandit', result: 'hold', reason: `shares kept: ${exp}` }, boundary)
      return false
    }
    // The posterior of each arm's mean matches the experiment's estimate and its standard error at
    // the unit of analysis (users send correlated outcomes: an arm is no surer than its users).
    const models = exp.metrics[cfg.metric]?.models ?? {}
    const arms = route.arms.map((a) => ({ model: a.model, totals: effectiveSample(models[a.model], metric?.type === 'binary') }))
    // With no outcome yet every arm's posterior is the prior: shares drawn from it move on noise.
    if (arms.every((a) => a.totals.n === 0)) {
      this.#note(route.name, d, { kind: 'bandit', result: 'hold', reason: `shares kept: no outcome of ${cfg.metric} on any arm yet, nothing to reweight on` }, boundary)
      return false
    }
    const r: BanditResult = thompson(cfg, metric?.type === 'binary' ? 'binary' : 'continuous', arms, metric?.higher_is_better ?? true, Random.seedFor(route.name, boundary))
    const before = JSON.stringify(d.bandit?.shares ?? null)
    d.bandit = {
      shares: Object.fromEntries(r.arms.map((a) => [a.model, a.share])),
      winner: r.winner,
      probability_best: Object.fromEntries(r.arms.map((a) => [a.model, a.probability_best])),
      expected_loss: Object.fromEntries(r.arms.map((a) => [a.model, a.expected_loss])),
    }
    const changed = JSON.stringify(d.bandit.shares) !== before
    this.#note(route.name, d, { kind: 'bandit', result: r.winner !== null ? 'stop' : changed ? 'reweight' : 'hold', reason: r.reason, inputs: r.arms }, boundary)
    return changed
  }

  /**
   * An operator acts on one replica: the others read its action from Prometheus at the next
   * boundary and take it too, at the action's own time (a resume restarts the step then).
   */
  #followOperators(name: string, d: RouteDecisions, fleet: FleetRollout, boundary: number): boolean {
    if (d.rollout === null || fleet.lastAction === null) return false
    const { action, at } = fleet.lastAction
    if (at <= (d.rollout.operatorAt ?? 0) + 999) return false
    const next = applyAction(d.rollout, action as OperatorAction, at)
    if (next === null) {
      d.rollout = { ...d.rollout, operatorAt: at }
      return false
    }
    d.rollout = next
    if (action === 'resume') this.#data.startWindow(name, at)
    this.#note(name, d, { kind: 'operator', result: action, reason: `${action} by an operator on another replica at ${new Date(at).toISOString()} (status now ${next.status})` }, boundary)
    return true
  }

  /** An operator's action on a route's rollout; the reason says who and what. */
  async act(routeName: string, action: OperatorAction): Promise<{ ok: true; status: unknown } | { ok: false; status: number; message: string }> {
    const route = this.#host.runtime().routes.find((r) => r.name === routeName)
    const d = this.#routes.get(routeName)
    if (route === undefined) return { ok: false, status: 404, message: `no route named "${routeName}"` }
    if (d?.rollout === null || d?.rollout === undefined) return { ok: false, status: 409, message: `route "${routeName}" has no rollout` }
    const s = d.rollout
    const now = this.#host.now()
    const next = applyAction(s, action, now)
    if (next === null) {
      const why = action === 'pause' ? `the rollout is ${s.status}; only a running one can be paused`
        : action === 'resume' ? `the rollout is ${s.status}, not paused`
          : `the rollout is already ${s.status}`
      return { ok: false, status: 409, message: why }
    }
    if (action === 'resume') this.#data.startWindow(routeName, now)
    this.#host.metrics.rolloutOperatorAction.set({ route: routeName, action }, now / 1000)
    d.rollout = next
    this.#note(routeName, d, { kind: 'operator', result: action, reason: `${action} by an operator (status ${s.status} → ${next.status})` })
    await this.#save()
    const r = await this.#host.refresh()
    this.#publish()
    this.#commit()
    if (!r.ok) return { ok: false, status: 500, message: r.error }
    return { ok: true, status: this.status(routeName) }
  }

  /** What /admin/rollouts shows of one route (undefined when it has no decision). */
  status(routeName: string): Record<string, unknown> | undefined {
    const runtime = this.#host.runtime()
    const route = runtime.routes.find((r) => r.name === routeName)
    // The decisions the weights in force were built from: a decision shows once its weights apply.
    if (runtime !== this.#viewOf) {
      this.#view = this.#built
      this.#viewOf = runtime
    }
    const d = this.#view.get(routeName) ?? this.#routes.get(routeName)
    if (route === undefined || d === undefined) return undefined
    const cfg = route.plan.config
    const configured = this.#host.runtime().plan.loaded.config.routes.find((r) => r.name === routeName)?.split ?? cfg.split
    const shares = route.assigner.shares
    return {
      route: routeName,
      kind: cfg.rollout !== null ? 'rollout' : 'bandit',
      ...(d.rollout !== null ? {
        state: d.rollout.status, candidate: d.rollout.candidate, control: d.rollout.control,
        step: d.rollout.step, percent: cfg.rollout === null ? undefined : rolloutPercent(cfg.rollout.steps, d.rollout), steps: cfg.rollout?.steps,
        step_started_at: new Date(d.rollout.stepStartedAt).toISOString(), paused_by: d.rollout.pausedBy,
      } : {}),
      ...(d.bandit !== null ? { bandit: d.bandit } : {}),
      configured_weights: Object.fromEntries(configured.map((s) => [s.model, s.weight])),
      effective_weights: Object.fromEntries(route.assigner.models.map((m, i) => [m, route.assigner.weights[i]])),
      effective_shares: Object.fromEntries(route.assigner.models.map((m, i) => [m, shares[i]])),
      next_evaluation: this.nextAt > 0 ? new Date(this.nextAt).toISOString() : null,
      decisions: d.history,
    }
  }

  /** Every route with a decision. */
  list(): Record<string, unknown>[] {
    return [...this.#routes.keys()].map((r) => this.status(r)).filter((s): s is Record<string, unknown> => s !== undefined)
  }

  /** Waits for a tick under way (tests, shutdown). */
  async idle(): Promise<void> {
    await this.#ticking
  }

  /**
   * A guardrail read from the experiment's own analysis (the user-level numbers every reader
   * shows): worse when the candidate is significantly worse (adjusted sequential p, in the
   * metric's direction); with a margin, whether non-inferiority is shown yet.
   */
  async #guardrail(route: RouteRuntime, metric: string, candidate: string, boundary: number): Promise<GuardrailResult | string> {
    const exp = await this.#data.experiment(route, boundary)
    if (typeof exp === 'string') return exp
    const m = exp.metrics[metric]
    const c = m?.comparisons[candidate]
    if (m === undefined || c === undefined) return { metric, p: null, worse: false, nonInferior: null }
    const higher = route.metrics.find((x) => x.name === metric)?.higher_is_better ?? true
    const lift = c.abs_lift ?? 0
    return {
      metric,
      p: c.p_value_sequential_adjusted,
      worse: higher ? lift < 0 : lift > 0,
      nonInferior: c.guardrail === undefined ? null : c.guardrail.non_inferior,
    }
  }

  // --- visibility ---------------------------------------------------------------------------------

  #note(route: string, d: RouteDecisions, e: Omit<DecisionEntry, 'at'>, at = this.#host.now()): void {
    const entry: DecisionEntry = { at: new Date(at).toISOString(), ...e }
    d.history.push(entry)
    if (d.history.length > HISTORY) d.history.splice(0, d.history.length - HISTORY)
    this.#host.metrics.decisions.inc({ route, kind: e.kind, result: e.result })
    this.#host.record({ type: 'decision', schema: SCHEMA_VERSION, ts: entry.at, route, kind: e.kind, result: e.result, reason: e.reason, ...(e.inputs !== undefined ? { inputs: e.inputs } : {}), ...(d.rollout !== null ? { rollout: d.rollout } : {}), ...(d.bandit !== null ? { bandit: d.bandit } : {}) })
    if (e.result !== 'hold') this.#host.log('info', `decision on route ${route}: ${e.kind} ${e.result}: ${e.reason}`)
  }

  #publish(): void {
    const m = this.#host.metrics
    // The info series names the current candidate and control: old ones must not linger.
    m.rolloutInfo.reset()
    for (const [route, d] of this.#routes) {
      if (d.rollout !== null) {
        const runtime = this.#host.runtime().routes.find((r) => r.name === route)
        const idx = runtime?.assigner.models.indexOf(d.rollout.candidate) ?? -1
        m.rolloutStep.set({ route }, idx >= 0 ? 100 * ((runtime?.assigner.shares[idx]) ?? 0) : 0)
        for (const s of ROLLOUT_STATUSES) m.rolloutState.set({ route, state: s }, s === d.rollout.status ? 1 : 0)
        m.rolloutStepStarted.set({ route }, d.rollout.stepStartedAt / 1000)
        m.rolloutInfo.set({ route, definition: d.rollout.definition, candidate: d.rollout.candidate, control: d.rollout.control }, 1)
      }
      if (d.bandit !== null) for (const [model, p] of Object.entries(d.bandit.probability_best)) m.banditProbabilityBest.set({ route, model }, p)
    }
  }

  // --- state that survives restarts ---------------------------------------------------------------

  #load(): void {
    const text = this.#state.read()
    if (text === undefined) return // no state yet
    try {
      const saved = JSON.parse(text) as { version: number; routes: Record<string, RouteDecisions> }
      if (saved.version !== STATE_VERSION) throw new Error(`version ${saved.version}, expected ${STATE_VERSION}`)
      for (const [route, d] of Object.entries(saved.routes)) this.#routes.set(route, d)
    } catch (err) {
      this.#host.log('warn', `decision state in ${this.#state.path} cannot be read (${(err as Error).message}); decisions start over`)
    }
  }

  /** Writes the state atomically: a temp file, then a rename over the old one. */
  #save(): Promise<void> {
    return this.#state.save(JSON.stringify({ version: STATE_VERSION, routes: Object.fromEntries(this.#routes) }))
  }
}

const EMPTY_WINDOW: ArmWindow = { requests: 0, errors: 0, p99: null }

/**
 * Where decisions read their figures as of a boundary. A string answer says why there are none
 * (the decision then holds).
 */
export interface DecisionData {
  /** Marks the start of a step's window (sources that keep their own snapshots). */
  startWindow(route: string, at: number): void
  /** Per model: requests, 5xx and p99 from `since` to `boundary`. */
  window(route: RouteRuntime, since: number, boundary: number): Promise<Map<string, ArmWindow> | string>
  /** The route's experiment (experiment/'s analysis of this replica's or the fleet's numbers), as of the boundary. */
  experiment(route: RouteRuntime, boundary: number): Promise<RouteExperiment | string>
  /** A shadow's comparisons with the control and its own figures, as of the boundary. */
  shadow(route: RouteRuntime, shadow: string, control: string, boundary: number): Promise<ShadowEvidence | string>
  /** The judge's verdicts on a shadow against a primary, as of the boundary (none counted: zeros). */
  judged?(route: RouteRuntime, primary: string, shadow: string, boundary: number): Promise<WinTally | string>
}

/**
 * Outcome totals whose moments give an arm's estimate and its standard error: for a rate p with
 * standard error se, the effective count p(1 − p)/se² (the outcomes over the design effect); for
 * a mean, the outcomes with the variance se²·n. Without an estimate, no outcomes.
 */
export function effectiveSample(m: ModelReport | undefined, binary: boolean): Summary {
  const value = m === undefined ? null : binary ? m.rate ?? null : m.mean ?? null
  const se = m?.se ?? null
  const outcomes = m?.outcomes ?? 0
  if (value === null || outcomes === 0) return { n: 0, sum: 0, sumSquares: 0 }
  if (binary) {
    const n = se !== null && se > 0 ? Math.min(outcomes, (value * (1 - value)) / (se * se)) : outcomes
    return { n, sum: value * n, sumSquares: value * n }
  }
  const n = outcomes
  const variance = se !== null && Number.isFinite(se) ? se * se * n : 0
  return { n, sum: value * n, sumSquares: (n - 1) * variance + value * value * n }
}

function definitionOf(route: RoutePlan): string {
  const c = route.config
  // The registered versions behind the arms are part of it (a new version is judged afresh); a
  // route without MLflow versions keeps the definition it always had.
  const arms = route.targets.slice(0, c.split.length)
  const versions = arms.some((t) => t.registry !== null) ? { versions: arms.map((t) => t.registry?.version ?? null) } : {}
  return createHash('sha256').update(JSON.stringify({ rollout: c.rollout, bandit: c.bandit, models: c.split.map((s) => s.model), ...versions })).digest('hex').slice(0, 16)
}
