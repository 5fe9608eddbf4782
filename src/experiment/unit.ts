import murmurhash from 'murmurhash'

/** Fewest and most buckets a route may analyse with (analysis.buckets). */
export const MIN_BUCKETS = 16
export const MAX_BUCKETS = 1024
export const DEFAULT_BUCKETS = 64

// The unit hash has a prefix of its own, so it is independent of every split's salt: which bucket
// a user is in says nothing about which arm they are in.
const PREFIX = Buffer.from('modelsplit-unit:', 'utf8')
const scratch = Buffer.alloc(PREFIX.length + 1024)
PREFIX.copy(scratch, 0)

/** murmurhash3_x86_32("modelsplit-unit:<unit id>", seed 0): the unit's hash, the same in every process and in the Python client. */
export function unitHash(unit: string): number {
  if (unit.length * 3 > scratch.length - PREFIX.length && Buffer.byteLength(unit) > scratch.length - PREFIX.length) {
    return murmurhash.v3(Buffer.concat([PREFIX, Buffer.from(unit, 'utf8')]), 0)
  }
  const n = scratch.write(unit, PREFIX.length, 'utf8')
  return murmurhash.v3(scratch.subarray(0, PREFIX.length + n), 0)
}

/** The bucket of a unit (a user id, or a request id where the unit is the request): its hash mod `buckets`. */
export function unitBucket(unit: string, buckets: number): number {
  return unitHash(unit) % buckets
}
