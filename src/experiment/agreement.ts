import { wilsonInterval, type JsonInterval } from '../stats/index.js'

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
