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

/**
 * Student's t quantile: regula falsi (the Illinois variant) on the CDF, from a bracket around the
 * Cornish–Fisher start x + (x³ + x)/(4·df) (@stdlib ships no t quantile in our deps). It converges
 * to the double-precision root in about ten CDF evaluations where plain bisection takes fifty.
 */
export function studentQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return Number.NaN
  if (df > NORMAL_DF) return phiInverse(p)
  if (p === 0.5) return 0
  if (p < 0.5) return -studentQuantile(1 - p, df)
  const z = phiInverse(p)
  const guess = z + (z * z * z + z) / (4 * df)
  let lo = Math.max(0, 0.9 * guess)
  let hi = Math.max(1e-300, 1.1 * guess)
  let flo = studentCdf(lo, df) - p
  let fhi = studentCdf(hi, df) - p
  while (flo > 0) {
    hi = lo
    fhi = flo
    lo /= 2
    flo = studentCdf(lo, df) - p
  }
  while (fhi < 0) {
    lo = hi
    flo = fhi
    hi *= 2
    if (hi > 1e300) return Number.POSITIVE_INFINITY
    fhi = studentCdf(hi, df) - p
  }
  let side = 0
  for (let i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
    const x = fhi === flo ? (lo + hi) / 2 : (lo * fhi - hi * flo) / (fhi - flo)
    const mid = x > lo && x < hi ? x : (lo + hi) / 2
    const f = studentCdf(mid, df) - p
    if (f === 0) return mid
    if (f < 0) {
      lo = mid
      flo = f
      if (side === -1) fhi /= 2
      side = -1
    } else {
      hi = mid
      fhi = f
      if (side === 1) flo /= 2
      side = 1
    }
  }
  return (lo + hi) / 2
}

/** Upper tail of the chi-square distribution, P(X ≥ x) with k degrees of freedom. */
export function chiSquareUpper(x: number, k: number): number {
  return 1 - chisquareCdf(x, k)
}
