import type { RouteRuntime } from '../proxy/runtime.js'
import type { DecisionContext, OperatorAction } from './host.js'
import { PrometheusData, type FleetRollout, type ReplicaRollout } from './prometheus.js'
import { EMPTY_WINDOW, ROLLOUT_STATUSES, applyAction, isAhead, rolloutPercent, stepOf, type ArmWindow, type RolloutState, type RolloutStatus } from './rollout.js'
import type { RouteDecisions } from './state.js'
import { note } from './visibility.js'

// With evaluation.prometheus every replica decides alone from the same figures; these keep a
// replica in step with the fleet where it missed something (a restart, a boundary, an operator).

/**
 * Takes the fleet's rollout when a replica is ahead of this one (isAhead: replicas never go back,
 * so that is where the fleet is); true if this replica's state changed.
 */
export async function reconcile(ctx: DecisionContext, route: RouteRuntime, d: RouteDecisions, fleet: FleetRollout, at: number): Promise<boolean> {
  const cfg = route.plan.config.rollout
  const mine = d.rollout
  if (cfg === null || mine === null) return false
  const known = (x: ReplicaRollout): RolloutStatus => (ROLLOUT_STATUSES as readonly string[]).includes(x.state) ? x.state as RolloutStatus : 'running'
  // A rollout this replica started afresh is no state of the fleet's: any replica's is ahead of it.
  const fresh = ctx.fresh.delete(route.name)
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
    const baseline = await baselineOf(ctx, route, next)
    if (typeof baseline !== 'string') next = { ...next, baseline }
  }
  const was = `${rolloutPercent(cfg.steps, mine)}% (${mine.status}) since ${new Date(mine.stepStartedAt).toISOString()}`
  d.rollout = next
  ctx.data().startWindow(route.name, next.stepStartedAt)
  note(ctx.host, route.name, d, {
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
export async function baselineOf(ctx: DecisionContext, route: RouteRuntime, state: RolloutState): Promise<ArmWindow | string> {
  const data = ctx.data()
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

/**
 * An operator acts on one replica: the others read its action from Prometheus at the next
 * boundary and take it too, at the action's own time (a resume restarts the step then).
 */
export function followOperators(ctx: DecisionContext, name: string, d: RouteDecisions, fleet: FleetRollout, boundary: number): boolean {
  if (d.rollout === null || fleet.lastAction === null) return false
  const { action, at } = fleet.lastAction
  if (at <= (d.rollout.operatorAt ?? 0) + 999) return false
  const next = applyAction(d.rollout, action as OperatorAction, at)
  if (next === null) {
    d.rollout = { ...d.rollout, operatorAt: at }
    return false
  }
  d.rollout = next
  if (action === 'resume') ctx.data().startWindow(name, at)
  note(ctx.host, name, d, { kind: 'operator', result: action, reason: `${action} by an operator on another replica at ${new Date(at).toISOString()} (status now ${next.status})` }, boundary)
  return true
}
