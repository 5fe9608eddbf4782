/**
 * The users of a route's experiment, counted once each at their first exposure, for the
 * sample-ratio check on users (a model that makes its users send more requests must not trip it).
 *
 * Exact distinct counting needs memory for every user, so this keeps an exact set of a hashed
 * sample: a user is in the sample when mix(unit hash) < 2^32 / 2^level. When the sample outgrows
 * `capacity`, the level goes up by one and the users above the new limit leave (with their counts).
 * Which users are sampled depends on the hash alone, never on the arm, so the sampled users'
 * arms are a fair multinomial draw and the chi-square test on them is exact for the sample. The
 * final state depends only on which users were seen (and each one's first arm and weight period),
 * not on the order they arrived in, so the offline report reproduces it from the records.
 */
export class UserSample {
  readonly capacity: number
  /** Sampled fraction is 2^-level. */
  level = 0
  #limit = 4294967296
  /** unit hash -> arm + 256·period of its first exposure. */
  readonly #seen = new Map<number, number>()
  /** Per weight period, per arm: sampled users first exposed then. */
  readonly counts: Float64Array[] = []
  #arms: number

  constructor(arms: number, capacity = DEFAULT_USER_SAMPLE) {
    this.#arms = arms
    this.capacity = capacity
  }

  /** Starts a new weight period (its index is the number of periods before it). */
  newPeriod(): void {
    this.counts.push(new Float64Array(this.#arms))
  }

  get size(): number {
    return this.#seen.size
  }

  /** One exposure of a user (by unit hash) to an arm, in the current period; a user already seen is not counted again. */
  see(hash: number, arm: number): void {
    if (mix(hash) >= this.#limit || this.#seen.has(hash)) return
    if (this.counts.length === 0) this.newPeriod()
    const period = this.counts.length - 1
    this.#seen.set(hash, arm + 256 * period)
    const c = this.counts[period] as Float64Array
    c[arm] = (c[arm] as number) + 1
    if (this.#seen.size > this.capacity) this.#shrink()
  }

  /** Every sampled user as [hash, arm, period] (snapshots that cross processes, merging). */
  entries(): [number, number, number][] {
    return [...this.#seen].map(([h, code]) => [h, code & 255, code >>> 8])
  }

  /** Adds a user seen elsewhere (a worker's sample): kept at its earliest period. */
  merge(hash: number, arm: number, period: number): void {
    if (mix(hash) >= this.#limit) return
    const old = this.#seen.get(hash)
    if (old !== undefined) {
      if ((old >>> 8) <= period) return
      const c = this.counts[old >>> 8] as Float64Array
      c[old & 255] = (c[old & 255] as number) - 1
    }
    while (this.counts.length <= period) this.newPeriod()
    this.#seen.set(hash, arm + 256 * period)
    const c = this.counts[period] as Float64Array
    c[arm] = (c[arm] as number) + 1
    if (this.#seen.size > this.capacity) this.#shrink()
  }

  /** Raises the level to at least `level` (merging samples of different levels). */
  atLeast(level: number): void {
    while (this.level < level) this.#raise()
  }

  #shrink(): void {
    while (this.#seen.size > this.capacity) this.#raise()
  }

  #raise(): void {
    this.level++
    this.#limit = 4294967296 / 2 ** this.level
    for (const [h, code] of this.#seen) {
      if (mix(h) < this.#limit) continue
      this.#seen.delete(h)
      const c = this.counts[code >>> 8] as Float64Array
      c[code & 255] = (c[code & 255] as number) - 1
    }
  }
}

/** Sampled users kept per route experiment: enough for a chi-square test to see a 2 % imbalance. */
export const DEFAULT_USER_SAMPLE = 65_536

/** Decorrelates the sampling from the bucket (both come from the same unit hash). */
function mix(h: number): number {
  return Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0
}

/**
 * Users observed and expected per arm: each period's sampled users times that period's shares.
 * `shares[p][arm]` are the shares in force in period p.
 */
export function usersObservedExpected(sample: { readonly counts: readonly ArrayLike<number>[] }, shares: readonly ArrayLike<number>[], arms: number): { observed: number[]; expected: number[] } {
  const observed = new Array<number>(arms).fill(0)
  const expected = new Array<number>(arms).fill(0)
  sample.counts.forEach((c, p) => {
    let total = 0
    for (let a = 0; a < arms; a++) total += c[a] ?? 0
    const s = shares[p] ?? shares[shares.length - 1]
    for (let a = 0; a < arms; a++) {
      observed[a] = (observed[a] as number) + (c[a] ?? 0)
      expected[a] = (expected[a] as number) + total * (s?.[a] ?? 0)
    }
  })
  return { observed, expected }
}
