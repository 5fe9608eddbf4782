import type { RolloutConfig } from '../config/decisions.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import type { DecisionContext } from './host.js'
import { checkPromotion } from './promotion.js'
import { startRollout, type RolloutState } from './rollout.js'
import type { RouteDecisions } from './state.js'
import { note } from './visibility.js'

/**
 * After a rollout is done: the first shadow whose promote_when holds starts a rollout of its own
 * against the model now in control; true when one did.
 */
export async function promotionTick(ctx: DecisionContext, route: RouteRuntime, cfg: RolloutConfig, d: RouteDecisions, boundary: number): Promise<boolean> {
  const state = d.rollout as RolloutState
  const waiting: string[] = []
  const control = state.status === 'promoted' ? state.candidate : state.control
  for (const shadow of route.shadows) {
    const pw = route.plan.config.shadow.find((s) => s.model === shadow.model)?.promote_when
    if (pw === null || pw === undefined || shadow.model === control || shadow.model === state.candidate) continue
    let evidence = await ctx.data().shadow(route, shadow.model, control, boundary)
    if (typeof evidence === 'string') {
      waiting.push(`${shadow.model}: ${evidence}`)
      continue
    }
    if (pw.min_win_rate !== null) {
      const judged = await ctx.data().judged?.(route, control, shadow.model, boundary)
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
    ctx.data().startWindow(route.name, boundary)
    note(ctx.host, route.name, d, { kind: 'promotion', result: 'start_rollout', reason: check.reason, inputs: evidence }, boundary)
    return true
  }
  // Say why no shadow is promoted yet, once per change of reason.
  if (waiting.length > 0) {
    const reason = `no shadow ready to promote: ${waiting.join('; ')}`
    const last = d.history.at(-1)
    if (!(last?.kind === 'promotion' && last.reason === reason)) note(ctx.host, route.name, d, { kind: 'promotion', result: 'hold', reason }, boundary)
  }
  return false
}
