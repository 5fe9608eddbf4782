/** Values a series keeps before it starts sampling; up to this many, quantiles are exact. */
export const RESERVOIR_SIZE = 50_000

/** Seed of every reservoir's PRNG, so the same files always give the same report. */
const SEED = 0x6d73_706c

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Nearest-rank quantile of ascending `sorted`: the value at 1-based rank ⌈q·n⌉ (rank 1 when q·n ≤ 1).
 * Always one of the observed values, so it can be checked by hand. NaN when empty.
 */
export function nearestRank(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const rank = Math.min(n, Math.max(1, Math.ceil(q * n)))
  return sorted[rank - 1] as number
}

/**
 * A numeric series in bounded memory: every value up to `capacity` is kept (quantiles exact); past
 * that it keeps a uniform random sample of `capacity` values (Vitter's Algorithm R with a seeded
 * PRNG), so quantiles become estimates from that sample. Count and mean are always exact.
 */
export class Reservoir {
  readonly #capacity: number
  readonly #random: () => number
  #values: Float64Array
  #count = 0
  #sum = 0
  #sorted: Float64Array | undefined

  constructor(capacity = RESERVOIR_SIZE, seed = SEED) {
    this.#capacity = capacity
    this.#random = mulberry32(seed)
    // Most series are small: start small and double up to the capacity.
    this.#values = new Float64Array(Math.min(capacity, 64))
  }

  add(value: number): void {
    const i = this.#count++
    this.#sum += value
    this.#sorted = undefined
    if (i < this.#capacity) {
      if (i === this.#values.length) {
        const grown = new Float64Array(Math.min(this.#capacity, this.#values.length * 2))
        grown.set(this.#values)
        this.#values = grown
      }
      this.#values[i] = value
      return
    }
    const j = Math.floor(this.#random() * (i + 1))
    if (j < this.#capacity) this.#values[j] = value
  }

  /** Values added (not only those kept). */
  get count(): number {
    return this.#count
  }

  /** Exact mean of every value added; NaN when empty. */
  get mean(): number {
    return this.#count > 0 ? this.#sum / this.#count : Number.NaN
  }

  /** True while every value is kept, i.e. quantiles are exact. */
  get exact(): boolean {
    return this.#count <= this.#capacity
  }

  /** Nearest-rank quantile of the kept values (see `nearestRank`). */
  quantile(q: number): number {
    if (this.#sorted === undefined) {
      this.#sorted = this.#values.slice(0, Math.min(this.#count, this.#capacity)).sort()
    }
    return nearestRank(this.#sorted, q)
  }
}
