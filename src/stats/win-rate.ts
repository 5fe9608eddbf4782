// Win rates of a candidate judged against the control, pair by pair (win, tie, loss): the share of
// wins among decided pairs with its Wilson interval, the exact sign test, and an always-valid
// sequential p-value (a Beta-mixture likelihood ratio against a fair coin). Pure.
import { wilsonInterval } from './intervals.js'

export interface WinTally {
  readonly wins: number
  readonly ties: number
  readonly losses: number
}

export interface WinRate {
  readonly wins: number
  readonly ties: number
  readonly losses: number
  /** wins + losses: ties say nothing about which is better, so they are left out. */
  readonly decided: number
  /** wins / decided, with its Wilson interval (NaN when nothing is decided). */
  readonly share: number
  readonly low: number
  readonly high: number
  /** Exact two-sided sign test of share = 1/2 (scipy.stats.binomtest(wins, decided, 0.5)). */
  readonly signP: number
  /**
   * min(1, 1 / Λ) for the Beta(1, 1) mixture likelihood ratio Λ of the decided pairs against
   * share = 1/2: valid at any look (Ville's inequality). Keep the running minimum over looks.
   */
  readonly sequentialP: number
}

const LN2 = Math.LN2
const SMALL = 256
const LOG_FACT: number[] = [0]
for (let k = 1; k < SMALL; k++) LOG_FACT.push((LOG_FACT[k - 1] as number) + Math.log(k))

/** ln k! : summed below 256, Stirling's series above it (error under 1e-16 relative there). */
export function logFactorial(k: number): number {
  if (k < SMALL) return LOG_FACT[k] as number
  const k2 = k * k
  return k * Math.log(k) - k + 0.5 * Math.log(2 * Math.PI * k) + 1 / (12 * k) - 1 / (360 * k * k2) + 1 / (1260 * k * k2 * k2)
}

function logChoose(n: number, k: number): number {
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k)
}

/** P(X ≤ m) for X ~ Binomial(n, 1/2), summed in log space from the mode side so nothing underflows early. */
function lowerTail(n: number, m: number): number {
  let total = 0
  let logPmf = logChoose(n, m) - n * LN2
  for (let i = m; i >= 0; i--) {
    const p = Math.exp(logPmf)
    total += p
    if (p < total * 1e-17) break
    // pmf(i - 1) = pmf(i) · i / (n − i + 1)
    logPmf += Math.log(i) - Math.log(n - i + 1)
  }
  return total
}

/** The exact two-sided sign test of wins among decided pairs against 1/2. */
export function signTestP(wins: number, decided: number): number {
  if (decided === 0) return 1
  const m = Math.min(wins, decided - wins)
  if (2 * m === decided) return 1
  return Math.min(1, 2 * lowerTail(decided, m))
}

/** Win share, Wilson interval, sign test and sequential p for one candidate's judged pairs. */
export function winRate(t: WinTally, confidence = 0.95): WinRate {
  const decided = t.wins + t.losses
  const w = wilsonInterval(t.wins, decided, confidence)
  // Λ = ∫ p^w (1−p)^l dp / (1/2)^n = B(w + 1, l + 1) · 2^n = w! l! / (n + 1)! · 2^n
  const logLambda = logFactorial(t.wins) + logFactorial(t.losses) - logFactorial(decided + 1) + decided * LN2
  return {
    wins: t.wins, ties: t.ties, losses: t.losses, decided,
    share: w.rate, low: w.low, high: w.high,
    signP: signTestP(t.wins, decided),
    sequentialP: Math.min(1, Math.exp(-logLambda)),
  }
}
