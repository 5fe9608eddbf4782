import chisquareCdf from '@stdlib/stats-base-dists-chisquare-cdf'
import normalCdf from '@stdlib/stats-base-dists-normal-cdf'
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile'
import tCdf from '@stdlib/stats-base-dists-t-cdf'

// Above this many degrees of freedom Student's t equals the normal to double precision for our
// purposes, and @stdlib's t CDF returns 0.5 for df = Infinity, so switch explicitly.
const NORMAL_DF = 1e7

/** Standard normal CDF Φ(x). */
export function phi(x: number): number {
  return normalCdf(x, 0, 1)
}

/** Standard normal quantile Φ⁻¹(p). */
export function phiInverse(p: number): number {
  return normalQuantile(p, 0, 1)
}

/** Two-sided critical value z such that P(|Z| ≤ z) = confidence. */
export function zCritical(confidence: number): number {
  return phiInverse(1 - (1 - confidence) / 2)
}

/** Two-sided normal p-value 2·Φ(−|z|) (computed in the lower tail to keep precision for small p). */
export function normalTwoSidedP(z: number): number {
  return 2 * phi(-Math.abs(z))
}

/** Student's t CDF with `df` degrees of freedom (normal once df is effectively infinite). */
export function studentCdf(x: number, df: number): number {
  return df > NORMAL_DF ? phi(x) : tCdf(x, df)
}

/** Two-sided t p-value 2·F(−|t|; df). */
export function studentTwoSidedP(t: number, df: number): number {
  return 2 * studentCdf(-Math.abs(t), df)
}

/** Student's t quantile by bisection on the CDF (@stdlib ships no t quantile in our deps). */
export function studentQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return Number.NaN
  if (df > NORMAL_DF) return phiInverse(p)
  if (p === 0.5) return 0
  if (p < 0.5) return -studentQuantile(1 - p, df)
  let lo = 0
  let hi = Math.max(1, phiInverse(p))
  while (studentCdf(hi, df) < p) {
    lo = hi
    hi *= 2
    if (hi > 1e300) return Number.POSITIVE_INFINITY
  }
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = (lo + hi) / 2
    if (studentCdf(mid, df) < p) lo = mid
    else hi = mid
  }
  return (lo + hi) / 2
}

/** Upper tail of the chi-square distribution, P(X ≥ x) with k degrees of freedom. */
export function chiSquareUpper(x: number, k: number): number {
  return 1 - chisquareCdf(x, k)
}
