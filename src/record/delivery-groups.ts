// The writeBatch() bookkeeping of a remote sink: a batch waits for room, then, once admitted,
// holds spool room for its records until each is in the sink or the spool.
import type { Envelope } from './envelope.js'

/** A writeBatch() batch once admitted: it is acknowledged when each record is in the sink or in the spool. */
export interface Group {
  left: number
  /** Spool bytes still held for this batch's records not yet in the sink or the spool. */
  reserved: number
  isRefused: boolean
  readonly resolve: (ok: boolean) => void
  timer: NodeJS.Timeout | undefined
}

/** A writeBatch() batch waiting for room, in order. */
export interface Waiter {
  readonly envelopes: Envelope[]
  readonly bytes: number
  readonly timeoutMs: number
  readonly resolve: (ok: boolean) => void
  timer: NodeJS.Timeout | undefined
}

/**
 * Each record of a writeBatch batch is in the sink or the spool (or, if `isRefused`, never will be).
 * Returns the spool bytes these records no longer hold, for the sink's total.
 */
export function settleGroups(envelopes: Envelope[], groups: Array<Group | undefined>, isRefused: boolean): number {
  let released = 0
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]
    if (g === undefined) continue
    const b = (envelopes[i] as Envelope).bytes
    g.reserved -= b
    released += b
    g.left--
    if (isRefused) g.isRefused = true
    if (g.left === 0) {
      clearTimeout(g.timer)
      g.resolve(!g.isRefused)
    }
  }
  return released
}
