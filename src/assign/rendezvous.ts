import murmurhash from 'murmurhash'

const TWO_32 = 4294967296
const ENCODER = new TextEncoder()

/** Longest user id (in UTF-8 bytes) hashed in full; ids are typically UUIDs or integers. */
export const MAX_USER_ID_BYTES = 1024

/**
 * Weighted rendezvous hashing (highest random weight, logarithmic method):
 *   h_m = murmurhash3_x86_32("<salt>:<model>:<user id>", seed 0), u_m = (h_m + 0.5) / 2^32,
 *   score_m = -ln(u_m) / weight_m, and the user goes to the lowest score.
 * -ln(u) is an Exp(1) draw, so score_m ~ Exp(weight_m) and P(m wins) = weight_m / Σ weights;
 * changing one weight only moves users into or out of that model.
 */
export interface RendezvousTable {
  readonly models: readonly string[]
  readonly weights: Float64Array
  /** UTF-8 of "<salt>:<model>:" per model, followed by room for the user id. */
  readonly buffers: readonly Buffer[]
  readonly prefixLengths: Uint32Array
}

/** Builds the per-model byte prefixes once, so picking does no string concatenation. */
export function buildRendezvous(salt: string, models: readonly string[], weights: readonly number[]): RendezvousTable {
  const buffers = models.map((m) => {
    const prefix = ENCODER.encode(`${salt}:${m}:`)
    const buf = Buffer.alloc(prefix.length + MAX_USER_ID_BYTES)
    buf.set(prefix, 0)
    return buf
  })
  return {
    models,
    weights: Float64Array.from(weights),
    buffers,
    prefixLengths: Uint32Array.from(models.map((m) => Buffer.byteLength(`${salt}:${m}:`))),
  }
}

/** The hash of one model for one user: murmurhash3_x86_32 of "<salt>:<model>:<user id>". */
export function rendezvousHash(table: RendezvousTable, index: number, userId: string): number {
  const buf = table.buffers[index] as Buffer
  const start = table.prefixLengths[index] as number
  // A UTF-16 unit is at most 3 UTF-8 bytes, so only long ids can overflow the scratch room;
  // those take the slow path and are still hashed in full, as the offline formula does.
  if (userId.length * 3 > MAX_USER_ID_BYTES && Buffer.byteLength(userId) > MAX_USER_ID_BYTES) {
    return murmurhash.v3(Buffer.concat([buf.subarray(0, start), Buffer.from(userId, 'utf8')]), 0)
  }
  const n = buf.write(userId, start, 'utf8')
  return murmurhash.v3(buf.subarray(0, start + n), 0)
}

/** Score of a hash under a weight; the lowest score wins. A weight of 0 scores +Infinity. */
export function rendezvousScore(hash: number, weight: number): number {
  return weight > 0 ? -Math.log((hash + 0.5) / TWO_32) / weight : Infinity
}

/** Index of the model this user is assigned to. */
export function rendezvousPick(table: RendezvousTable, userId: string): number {
  const weights = table.weights
  let best = -1
  let bestScore = Infinity
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number
    if (w <= 0) continue
    const score = rendezvousScore(rendezvousHash(table, i, userId), w)
    // Equal scores need equal hashes and weights; breaking the tie by name, not by list
    // position, keeps the promise that reordering the split moves nobody.
    if (score < bestScore || (score === bestScore && best >= 0 && (table.models[i] as string) < (table.models[best] as string))) {
      bestScore = score
      best = i
    }
  }
  return best
}
