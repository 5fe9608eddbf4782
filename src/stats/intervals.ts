import { studentQuantile, zCritical } from './distributions.js'
import { moments } from './summary.js'
import type { Sample } from './summary.js'

/** A point estimate of a rate with its interval. */
export interface RateInterval {
  readonly rate: number
  readonly low: number
  readonly high: number
}

/** A mean with its sample variance and t-based interval. */
export interface MeanInterval {
  readonly n: number
  readonly mean: number
  readonly variance: number
  readonly sd: number
  readonly se: number
  readonly df: number
  readonly low: number
  readonly high: number
}

/** Wilson score interval for successes/n (Wilson 1927, no continuity correction); n = 0 gives NaN for rate, low and high. */
export function wilsonInterval(successes: number, n: number, confidence = 0.95): RateInterval {
  if (!(n > 0)) return { rate: Number.NaN, low: Number.NaN, high: Number.NaN }
  const z = zCritical(confidence)
  const p = successes / n
  const z2n = (z * z) / n
  const centre = (p + z2n / 2) / (1 + z2n)
  const half = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n))
  // Clamp: at p = 0 or 1 the bound is exactly 0 or 1 and rounding must not push it outside.
  return { rate: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half) }
}

/** Mean, sample variance (n − 1) and Student-t interval mean ± t(df = n − 1)·s/√n; NaN bounds when n < 2. */
export function meanInterval(sample: Sample, confidence = 0.95): MeanInterval {
  const { n, mean, variance } = moments(sample)
  const sd = Math.sqrt(variance)
  const se = sd / Math.sqrt(n)
  const df = n - 1
  const t = df > 0 ? studentQuantile(1 - (1 - confidence) / 2, df) : Number.NaN
  return { n, mean, variance, sd, se, df, low: mean - t * se, high: mean + t * se }
}
