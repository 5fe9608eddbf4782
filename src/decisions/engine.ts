import { dirname, join } from 'node:path'
import type { Plan, RoutePlan } from '../plan/index.js'
import { banditTick } from './bandit-tick.js'
import { reconcile } from './fleet-sync.js'
import type { DecisionContext, DecisionData, DecisionHost, OperatorAction } from './host.js'
import { LocalData } from './local.js'
import { PrometheusData, type FleetRollout } from './prometheus.js'
import { applyAction, rolloutWeights, startRollout } from './rollout.js'
import { rolloutTick } from './rollout-tick.js'
import { DecisionState, definitionOf, snapshotOf, type DecisionView, type RouteDecisions } from './state.js'
import { note, publish, statusOf } from './visibility.js'

// What this module exported before the split, still here for the importers on other branches.
export type { DecisionData, DecisionEntry, DecisionHost, OperatorAction } from './host.js'
export { effectiveSample } from './bandit-tick.js'

/**
 * Runs the routes' decisions at aligned boundaries (multiples of evaluation.interval since the
 * epoch) from this replica's own numbers, keeps their state in a file beside the records (written
 * atomically, read back at start, so a restart resumes), and lays the decided weights over the
 * compiled plan. The decisions themselves are the pure functions of rollout.ts, bandit.ts and
 * promotion.ts, gathered per route by rollout-tick.ts, bandit-tick.ts and promotion-tick.ts;
 * fleet-sync.ts keeps a replica in step with the fleet, visibility.ts shows what was decided.
 */
export class DecisionEngine {
  readonly #host: DecisionHost
  readonly #state: DecisionState
  readonly #routes = new Map<string, RouteDecisions>()
  readonly #local: DecisionData
  #fleet: { key: string; data: DecisionData } | undefined
  /** Routes whose rollout this process started afresh (no saved state): a fleet may be ahead. */
  readonly #fresh = new Set<string>()
  readonly #ctx: DecisionContext
  /** Decisions a plan being prepared starts or ends, applied by adopt() once it is swapped in. */
  #pending: { plan: Plan; routes: Map<string, RouteDecisions | null> } | undefined
  /** The decisions the last plan built was built from, and those shown with the runtime in force. */
  #built = new Map<string, DecisionView>()
  #view = new Map<string, DecisionView>()
  #viewOf: unknown
  #timer: NodeJS.Timeout | undefined
  #catchUp: NodeJS.Timeout | undefined
  #stopped = false
  #ticking: Promise<void> | undefined
  #nextAt = 0

  constructor(host: DecisionHost, stateFile: string, data?: DecisionData) {
    this.#host = host
    this.#state = new DecisionState(host, stateFile)
    this.#local = data ?? new LocalData(host)
    this.#ctx = { host, data: () => this.#data, fresh: this.#fresh }
    this.#state.load(this.#routes)
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
    const built = snapshotOf(this.#routes)
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
      note(this.#host, name, d, { kind: cfg?.rollout != null ? 'rollout' : 'bandit', result: 'start', reason: cfg?.rollout != null ? `rollout of ${cfg.rollout.candidate} starts at ${cfg.rollout.steps[0]}%` : `bandit on ${cfg?.bandit?.metric} starts with even shares` })
    }
    void this.#save()
  }

  /** The weights in force now follow the decisions: /admin/rollouts shows them from here on. */
  #commit(): void {
    this.#view = snapshotOf(this.#routes)
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
        changed = await reconcile(this.#ctx, route, this.#routes.get(route.name) as RouteDecisions, fleet, now) || changed
      }
      if (changed) {
        await this.#save()
        const r = await this.#host.refresh()
        if (!r.ok) this.#host.log('warn', `the fleet's weights not applied, the plan in force stays: ${r.error}`)
      }
      publish(this.#host, this.#routes)
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
          if (route.plan.config.rollout !== null) changed = await rolloutTick(this.#ctx, route, route.plan.config.rollout, d, boundary) || changed
          else if (route.plan.config.bandit !== null) changed = await banditTick(this.#ctx, route, route.plan.config.bandit, d, boundary) || changed
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
      publish(this.#host, this.#routes)
      this.#commit()
    }
    this.#ticking = (this.#ticking ?? Promise.resolve()).then(run, run)
    return this.#ticking
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
    note(this.#host, routeName, d, { kind: 'operator', result: action, reason: `${action} by an operator (status ${s.status} → ${next.status})` })
    await this.#save()
    const r = await this.#host.refresh()
    publish(this.#host, this.#routes)
    this.#commit()
    if (!r.ok) return { ok: false, status: 500, message: r.error }
    return { ok: true, status: this.status(routeName) }
  }

  /** What /admin/rollouts shows of one route (undefined when it has no decision). */
  status(routeName: string): Record<string, unknown> | undefined {
    const runtime = this.#host.runtime()
    // The decisions the weights in force were built from: a decision shows once its weights apply.
    if (runtime !== this.#viewOf) {
      this.#view = this.#built
      this.#viewOf = runtime
    }
    const d = this.#view.get(routeName) ?? this.#routes.get(routeName)
    if (d === undefined) return undefined
    return statusOf(runtime, routeName, d, this.nextAt)
  }

  /** Every route with a decision. */
  list(): Record<string, unknown>[] {
    return [...this.#routes.keys()].map((r) => this.status(r)).filter((s): s is Record<string, unknown> => s !== undefined)
  }

  /** Waits for a tick under way (tests, shutdown). */
  async idle(): Promise<void> {
    await this.#ticking
  }

  #save(): Promise<void> {
    return this.#state.save(this.#routes)
  }
}
