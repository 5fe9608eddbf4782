/**
 * Raw totals of one metric for one arm: count, Σx and Σx², as Prometheus counters hold them.
 * The variance from these, (Σx² − (Σx)²/n)/(n − 1), cancels catastrophically when the mean is
 * large next to the spread (values near 1e6 with sd 0.25 lose about three digits): prefer `Totals`.
 */
export interface Summary {
  readonly n: number
  readonly sum: number
  readonly sumSquares: number
}

/**
 * Totals of one metric for one arm, kept in a numerically stable form: the count, the plain sum
 * (exact for 0/1 outcomes), `shift` (the first value seen), `offset` (the running mean of x − shift)
 * and `m2` (Σ(x − mean)²), updated by Welford's method on the shifted values. The mean is
 * shift + offset; keeping the two apart lets a difference of two means near 1e6 keep every digit.
 */
export interface Totals {
  readonly n: number
  readonly sum: number
  readonly shift: number
  readonly offset: number
  readonly m2: number
}

/** What the statistics accept for one arm: stable totals, or raw sums (from PromQL, say). */
export type Sample = Summary | Totals

/** Mean and unbiased (n − 1) sample variance of a sample, with the mean split as shift + offset. */
export interface Moments {
  readonly n: number
  readonly mean: number
  readonly variance: number
  /** The mean is shift + offset; 0 and the mean for raw sums. */
  readonly shift: number
  readonly offset: number
}

/** Mean and sample variance of a sample; NaN where undefined (mean at n = 0, variance at n < 2). */
export function moments(sample: Sample): Moments {
  const n = sample.n
  if ('m2' in sample) {
    const offset = n > 0 ? sample.offset : Number.NaN
    return {
      n,
      mean: n > 0 ? sample.shift + sample.offset : Number.NaN,
      variance: n > 1 ? Math.max(0, sample.m2) / (n - 1) : Number.NaN,
      shift: sample.shift,
      offset,
    }
  }
  const { sum, sumSquares } = sample
  const mean = n > 0 ? sum / n : Number.NaN
  // Σx² − (Σx)²/n can come out slightly negative from cancellation when all values are equal.
  const variance = n > 1 ? Math.max(0, (sumSquares - (sum * sum) / n) / (n - 1)) : Number.NaN
  return { n, mean, variance, shift: 0, offset: mean }
}

/**
 * Mean of b minus mean of a, from the shifted parts: the shifts of two arms fed similar values are
 * close, so their difference is exact (Sterbenz), and the offsets are small and carry full precision.
 */
export function meanDifference(a: Moments, b: Moments): number {
  return (b.shift - a.shift) + (b.offset - a.offset)
}

/**
 * The one accumulator of outcome values: Welford's online update (Welford 1962; Knuth, TAOCP vol. 2,
 * §4.2.2) on values shifted by the first one (Chan, Golub & LeVeque 1983). Values added in the same
 * order give the same totals bit for bit, which is how the live tally and the offline report agree.
 */
export class Accumulator implements Totals {
  n = 0
  sum = 0
  shift = 0
  offset = 0
  m2 = 0

  /** Adds one finite value. */
  add(x: number): void {
    if (this.n === 0) this.shift = x
    this.n++
    this.sum += x
    const y = x - this.shift
    const d = y - this.offset
    this.offset += d / this.n
    this.m2 += d * (y - this.offset)
  }

  /** A copy of the totals so far. */
  totals(): Totals {
    return { n: this.n, sum: this.sum, shift: this.shift, offset: this.offset, m2: this.m2 }
  }
}
