/** Running totals of one metric for one arm: count, Σx and Σx² (binary metrics use x ∈ {0, 1}). */
export interface Summary {
  readonly n: number
  readonly sum: number
  readonly sumSquares: number
}

/** Mean and unbiased (n − 1) sample variance of a summary. */
export interface Moments {
  readonly n: number
  readonly mean: number
  readonly variance: number
}

/** Mean and sample variance from (n, Σx, Σx²); NaN where undefined (mean at n = 0, variance at n < 2). */
export function moments(summary: Summary): Moments {
  const { n, sum, sumSquares } = summary
  const mean = n > 0 ? sum / n : Number.NaN
  // Σx² − (Σx)²/n can come out slightly negative from cancellation when all values are equal.
  const variance = n > 1 ? Math.max(0, (sumSquares - (sum * sum) / n) / (n - 1)) : Number.NaN
  return { n, mean, variance }
}
