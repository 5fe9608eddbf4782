import type { PromoteWhen } from '../config/decisions.js'
import { agreementOf } from '../experiment/index.js'
import { winRate, type WinTally } from '../stats/index.js'

/** A shadow's record against the route's control, as of a boundary. */
export interface ShadowEvidence {
  /** Comparisons that could be made (agree + disagree). */
  readonly compared: number
  readonly agreed: number
  /** The shadow's own requests and 5xx (or failed) answers. */
  readonly requests: number
  readonly errors: number
  readonly shadowP99: number | null
  readonly controlP99: number | null
  /** The judge's verdicts on the shadow against the control (read only when promote_when.min_win_rate asks). */
  readonly judged?: WinTally
}

export interface PromotionCheck {
  readonly ready: boolean
  readonly reason: string
}

/**
 * Whether a shadow has proven itself on live inputs: enough comparisons, agreement whose 95 %
 * Wilson lower bound clears min_agreement, and its own latency and error figures within bounds.
 */
export function checkPromotion(model: string, pw: PromoteWhen, e: ShadowEvidence): PromotionCheck {
  if (e.compared < pw.min_compared) return { ready: false, reason: `${model}: ${e.compared} of ${pw.min_compared} comparisons` }
  // The agreement and its interval are the experiment module's (what /admin/shadows shows).
  const a = agreementOf('control', model, e.agreed, e.compared - e.agreed, 0)
  const w = { rate: a.rate ?? Number.NaN, low: a.ci[0] ?? Number.NaN }
  if (!(w.low >= pw.min_agreement)) return { ready: false, reason: `${model}: agreement ${(100 * w.rate).toFixed(2)}%, 95% lower bound ${(100 * w.low).toFixed(2)}% < ${(100 * pw.min_agreement).toFixed(2)}%` }
  if (pw.max_p99_latency_ratio !== null) {
    if (e.shadowP99 === null || e.controlP99 === null || e.controlP99 <= 0) return { ready: false, reason: `${model}: no p99 latency to compare yet` }
    const ratio = e.shadowP99 / e.controlP99
    if (ratio > pw.max_p99_latency_ratio) return { ready: false, reason: `${model}: p99 ×${ratio.toFixed(2)} of the control's > ${pw.max_p99_latency_ratio}` }
  }
  if (pw.max_error_rate !== null) {
    const rate = e.requests > 0 ? e.errors / e.requests : 0
    if (rate > pw.max_error_rate) return { ready: false, reason: `${model}: error rate ${(100 * rate).toFixed(3)}% > ${(100 * pw.max_error_rate).toFixed(3)}%` }
  }
  let judged = ''
  if (pw.min_win_rate !== null) {
    const check = checkWinRate(model, e.judged, pw.min_win_rate, pw.min_judged)
    if (!check.ready) return check
    judged = `; ${check.reason}`
  }
  return { ready: true, reason: `${model}: ${e.compared} comparisons, agreement lower bound ${(100 * w.low).toFixed(2)}% ≥ ${(100 * pw.min_agreement).toFixed(2)}%${judged}: promoted to rollout candidate` }
}

/**
 * Whether the judge's verdicts show a model at least as good as asked: min_judged decided (non-tie)
 * pairs, and the 95 % Wilson lower bound of its win share among them reaching min_win_rate.
 */
export function checkWinRate(model: string, t: WinTally | undefined, min: number, minJudged: number): PromotionCheck {
  const r = winRate(t ?? { wins: 0, ties: 0, losses: 0 })
  const counts = `${r.wins} wins, ${r.ties} ties, ${r.losses} losses`
  if (r.decided < minJudged) return { ready: false, reason: `${model}: ${r.decided} of ${minJudged} judged pairs decided (${counts})` }
  const said = `judged win rate ${(100 * r.share).toFixed(2)}% (${counts}), 95% lower bound ${(100 * r.low).toFixed(2)}%`
  if (!(r.low >= min)) return { ready: false, reason: `${model}: ${said} < ${(100 * min).toFixed(2)}%` }
  return { ready: true, reason: `${said} ≥ ${(100 * min).toFixed(2)}%` }
}
