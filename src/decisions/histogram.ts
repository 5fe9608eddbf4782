/**
 * A quantile from histogram bucket counts, as PromQL's histogram_quantile does it: find the bucket
 * the rank falls in and interpolate linearly inside it (from 0 for the first bucket). `counts` are
 * per bucket (not cumulative), with `bounds` their upper bounds; observations past the last bound
 * report the last bound. Null when there is nothing.
 */
export function bucketQuantile(bounds: readonly number[], counts: ArrayLike<number>, total: number, q: number): number | null {
  if (total <= 0) return null
  const rank = q * total
  let cumulative = 0
  for (let i = 0; i < bounds.length; i++) {
    const c = counts[i] as number
    if (cumulative + c >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1] as number
      const upper = bounds[i] as number
      return c === 0 ? upper : lower + (upper - lower) * ((rank - cumulative) / c)
    }
    cumulative += c
  }
  return bounds[bounds.length - 1] ?? null
}
