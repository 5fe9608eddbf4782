import { winRate, wilsonInterval, type JsonInterval } from '../stats/index.js'

/** A shadow's agreement with one primary, as /admin/shadows, the console and the decisions show it. */
export interface AgreementReport {
  readonly primary: string
  readonly shadow: string
  /** Comparisons made: agree + disagree + error. */
  readonly compared: number
  readonly agree: number
  readonly disagree: number
  readonly error: number
  /** agree / compared (an error counts against agreement), with its Wilson 95 % interval. */
  readonly rate: number | null
  readonly ci: JsonInterval
}

/** Agreement of a shadow with a primary from its comparison counts. */
export function agreementOf(primary: string, shadow: string, agree: number, disagree: number, error: number): AgreementReport {
  const compared = agree + disagree + error
  const w = wilsonInterval(agree, compared)
  const f = (x: number): number | null => (Number.isFinite(x) ? x : null)
  return { primary, shadow, compared, agree, disagree, error, rate: f(w.rate), ci: [f(w.low), f(w.high)] }
}

/** The judge's verdicts on a shadow against one primary, as /admin/shadows and the console show them. */
export interface JudgedReport {
  readonly wins: number
  readonly ties: number
  readonly losses: number
  /** wins + losses: ties say nothing about which answer is better. */
  readonly decided: number
  /** wins / decided, with its Wilson 95 % interval (null with nothing decided). */
  readonly win_rate: number | null
  readonly ci: JsonInterval
  /** Exact sign test of a win rate of 1/2. */
  readonly sign_p: number
  /** Always-valid p of a win rate of 1/2 at these counts (what the decisions read). */
  readonly sequential_p: number
}

/** The judge's win rate from its verdict counts. */
export function judgedOf(wins: number, ties: number, losses: number): JudgedReport {
  const r = winRate({ wins, ties, losses })
  const f = (x: number): number | null => (Number.isFinite(x) ? x : null)
  return { wins, ties, losses, decided: r.decided, win_rate: f(r.share), ci: [f(r.low), f(r.high)], sign_p: r.signP, sequential_p: r.sequentialP }
}
