import { buildNginxSplit, nginxHash, nginxPick, type NginxSplit } from './nginx.js'
import { buildRendezvous, rendezvousHash, rendezvousPick, rendezvousScore, type RendezvousTable } from './rendezvous.js'

export { buildRendezvous, rendezvousPick, rendezvousHash, rendezvousScore, MAX_USER_ID_BYTES } from './rendezvous.js'
export { buildNginxSplit, nginxHash, nginxPick, nginxSplitClientsBlock } from './nginx.js'
export type { NginxSplit } from './nginx.js'
export type { RendezvousTable } from './rendezvous.js'

export type HashAlgorithm = 'rendezvous' | 'nginx'

export interface SplitSpec {
  readonly algorithm: HashAlgorithm
  readonly salt: string
  readonly models: readonly string[]
  readonly weights: readonly number[]
}

/** What decided one assignment, per model in split order: shown by `modelsplit assign` and `/admin/assign`. */
export interface Explanation {
  readonly model: string
  readonly index: number
  readonly algorithm: HashAlgorithm
  /** The exact bytes hashed (rendezvous: per model; nginx: one key). */
  readonly candidates: readonly {
    readonly model: string
    readonly weight: number
    readonly share: number
    readonly key: string
    readonly hash: number
    /** rendezvous: -ln((hash + 0.5) / 2^32) / weight, lowest wins. */
    readonly score?: number
    /** nginx: the cumulative uint32 threshold and the `split_clients` percentage. */
    readonly threshold?: number
    readonly percent?: string
  }[]
}

/** A route's prebuilt assignment table: pure, no I/O; picking allocates nothing on the common path. */
export class Assigner {
  readonly algorithm: HashAlgorithm
  readonly salt: string
  readonly models: readonly string[]
  readonly weights: readonly number[]
  /** Each model's share of users, 0..1 (nginx: the share its 0.01% percentage gives). */
  readonly shares: Float64Array
  readonly #rendezvous: RendezvousTable | undefined
  readonly #nginx: NginxSplit | undefined
  readonly #cumulative: Float64Array
  readonly #total: number

  constructor(spec: SplitSpec) {
    this.algorithm = spec.algorithm
    this.salt = spec.salt
    this.models = spec.models
    this.weights = spec.weights
    this.#total = spec.weights.reduce((a, b) => a + b, 0)
    this.#cumulative = new Float64Array(spec.weights.length)
    let acc = 0
    spec.weights.forEach((w, i) => { acc += w; this.#cumulative[i] = acc })
    this.shares = Float64Array.from(spec.weights, (w) => w / this.#total)
    if (spec.algorithm === 'nginx') {
      this.#nginx = buildNginxSplit(spec.weights)
      this.shares.fill(0)
      const n = this.#nginx.indices.length
      for (let p = 0; p < n; p++) {
        const pct = this.#nginx.percents[p] as string
        const index = this.#nginx.indices[p] as number
        this.shares[index] = pct === '*' ? 0 : Number.parseFloat(pct) / 100
      }
      const star = this.#nginx.indices[n - 1] as number
      this.shares[star] = Math.max(0, 1 - this.shares.reduce((a, b) => a + b, 0))
    } else {
      this.#rendezvous = buildRendezvous(spec.salt, spec.models, spec.weights)
    }
  }

  /** Index (in split order) of the model this user id is assigned to. */
  pick(userId: string): number {
    if (this.#rendezvous !== undefined) return rendezvousPick(this.#rendezvous, userId)
    return nginxPick(this.#nginx as NginxSplit, nginxHash(userId + this.salt))
  }

  /** A random index drawn by weight: for requests without a user id under `missing_user_id: random`. */
  pickRandom(random: number = Math.random()): number {
    const target = random * this.#total
    const c = this.#cumulative
    for (let i = 0; i < c.length; i++) if (target < (c[i] as number)) return i
    // random() < 1, but float sums can leave target == total: take the last positive weight.
    for (let i = c.length - 1; i >= 0; i--) if ((this.weights[i] as number) > 0) return i
    return 0
  }

  /** The numbers that decided an assignment; not for the request path. */
  explain(userId: string): Explanation {
    const index = this.pick(userId)
    if (this.#rendezvous !== undefined) {
      const table = this.#rendezvous
      return {
        model: this.models[index] as string, index, algorithm: 'rendezvous',
        candidates: this.models.map((model, i) => {
          const hash = rendezvousHash(table, i, userId)
          const weight = this.weights[i] as number
          return { model, weight, share: this.shares[i] as number, key: `${this.salt}:${model}:${userId}`, hash, score: rendezvousScore(hash, weight) }
        }),
      }
    }
    const split = this.#nginx as NginxSplit
    const key = userId + this.salt
    const hash = nginxHash(key)
    return {
      model: this.models[index] as string, index, algorithm: 'nginx',
      candidates: this.models.map((model, i) => {
        const p = split.indices.indexOf(i)
        return {
          model, weight: this.weights[i] as number, share: this.shares[i] as number, key, hash,
          threshold: p < 0 ? undefined : split.thresholds[p], percent: p < 0 ? undefined : split.percents[p],
        }
      }),
    }
  }
}
