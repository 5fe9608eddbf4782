import { chiSquareUpper } from './distributions.js'

/** Result of the sample-ratio-mismatch test. */
export interface SrmResult {
  readonly chi2: number
  readonly df: number
  readonly pValue: number
  readonly mismatch: boolean
}

// Conventional SRM threshold (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch"): strict,
// because the test runs continuously and a false alarm stops a healthy experiment.
const SRM_ALPHA = 0.001

/**
 * Pearson chi-square goodness-of-fit of observed counts to the configured weights, over arms with
 * weight > 0 only (df = k − 1); `mismatch` when p < 0.001. With fewer than two such arms, or no
 * observations, there is nothing to test: chi2 = 0, p = 1.
 */
export function srmTest(observedCounts: readonly number[], weights: readonly number[]): SrmResult {
  if (observedCounts.length !== weights.length) {
    throw new RangeError(`srmTest: ${observedCounts.length} counts but ${weights.length} weights; pass one weight per arm`)
  }
  let total = 0
  let weightSum = 0
  let k = 0
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] ?? 0
    if (w > 0) {
      total += observedCounts[i] ?? 0
      weightSum += w
      k++
    }
  }
  if (k < 2 || total === 0) return { chi2: 0, df: Math.max(0, k - 1), pValue: 1, mismatch: false }
  let chi2 = 0
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] ?? 0
    if (w > 0) {
      const expected = (total * w) / weightSum
      const d = (observedCounts[i] ?? 0) - expected
      chi2 += (d * d) / expected
    }
  }
  const df = k - 1
  const pValue = chiSquareUpper(chi2, df)
  return { chi2, df, pValue, mismatch: pValue < SRM_ALPHA }
}
