import type { Runtime } from '../proxy/runtime.js'
import { SCHEMA_VERSION } from '../record/schema.js'
import type { DecisionEntry, DecisionHost } from './host.js'
import { ROLLOUT_STATUSES, rolloutPercent } from './rollout.js'
import type { DecisionView, RouteDecisions } from './state.js'

const HISTORY = 100

/** Notes a decision: in the route's history (the last HISTORY), the counter, the records and the log. */
export function note(host: DecisionHost, route: string, d: RouteDecisions, e: Omit<DecisionEntry, 'at'>, at = host.now()): void {
  const entry: DecisionEntry = { at: new Date(at).toISOString(), ...e }
  d.history.push(entry)
  if (d.history.length > HISTORY) d.history.splice(0, d.history.length - HISTORY)
  host.metrics.decisions.inc({ route, kind: e.kind, result: e.result })
  host.record({ type: 'decision', schema: SCHEMA_VERSION, ts: entry.at, route, kind: e.kind, result: e.result, reason: e.reason, ...(e.inputs !== undefined ? { inputs: e.inputs } : {}), ...(d.rollout !== null ? { rollout: d.rollout } : {}), ...(d.bandit !== null ? { bandit: d.bandit } : {}) })
  if (e.result !== 'hold') host.log('info', `decision on route ${route}: ${e.kind} ${e.result}: ${e.reason}`)
}

/** Sets the rollout and bandit gauges from the routes' decisions and the shares in force. */
export function publish(host: DecisionHost, routes: Map<string, RouteDecisions>): void {
  const m = host.metrics
  // The info series names the current candidate and control: old ones must not linger.
  m.rolloutInfo.reset()
  for (const [route, d] of routes) {
    if (d.rollout !== null) {
      const runtime = host.runtime().routes.find((r) => r.name === route)
      const idx = runtime?.assigner.models.indexOf(d.rollout.candidate) ?? -1
      m.rolloutStep.set({ route }, idx >= 0 ? 100 * ((runtime?.assigner.shares[idx]) ?? 0) : 0)
      for (const s of ROLLOUT_STATUSES) m.rolloutState.set({ route, state: s }, s === d.rollout.status ? 1 : 0)
      m.rolloutStepStarted.set({ route }, d.rollout.stepStartedAt / 1000)
      m.rolloutInfo.set({ route, definition: d.rollout.definition, candidate: d.rollout.candidate, control: d.rollout.control }, 1)
    }
    if (d.bandit !== null) for (const [model, p] of Object.entries(d.bandit.probability_best)) m.banditProbabilityBest.set({ route, model }, p)
  }
}

/**
 * What /admin/rollouts shows of one route with the runtime in force (undefined when the route is
 * not in it); `nextAt` is the next boundary, 0 when the engine is stopped.
 */
export function statusOf(runtime: Runtime, routeName: string, d: DecisionView, nextAt: number): Record<string, unknown> | undefined {
  const route = runtime.routes.find((r) => r.name === routeName)
  if (route === undefined) return undefined
  const cfg = route.plan.config
  const configured = runtime.plan.loaded.config.routes.find((r) => r.name === routeName)?.split ?? cfg.split
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
    next_evaluation: nextAt > 0 ? new Date(nextAt).toISOString() : null,
    decisions: d.history,
  }
}
