/**
 * The router-wide budget for model answers held in memory for comparison and records
 * (limits.max_capture_total_bytes). Captures take bytes as chunks arrive and give them back
 * when their record is written; a capture that would go past the budget stops, and its answer
 * streams on to the client uncaptured.
 */
export class CaptureBudget {
  #used = 0
  limit: number

  constructor(limit: number) {
    this.limit = limit
  }

  /** Bytes held now. */
  get used(): number {
    return this.#used
  }

  /** Takes `bytes` if they fit; false (taking nothing) if not. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false
    this.#used += bytes
    return true
  }

  give(bytes: number): void {
    this.#used -= bytes
    if (this.#used < 0) this.#used = 0
  }
}

/** One answer being captured: chunks up to a per-answer cap, within the shared budget. */
export class Capture {
  chunks: Buffer[] | null = []
  bytes = 0
  /** Why the answer was not captured whole, or null. */
  skipped: 'max_capture_bytes' | 'capture_budget' | null = null

  add(chunk: Buffer, cap: number, budget: CaptureBudget): void {
    if (this.chunks === null) return
    const n = chunk.length
    if (this.bytes + n > cap) return this.#stop('max_capture_bytes', budget)
    if (!budget.take(n)) return this.#stop('capture_budget', budget)
    this.bytes += n
    this.chunks.push(chunk)
  }

  /** The answer as one buffer (undefined when skipped); the bytes stay taken until release(). */
  body(): Buffer | undefined {
    const c = this.chunks
    if (c === null) return undefined
    return c.length === 1 ? c[0] : Buffer.concat(c, this.bytes)
  }

  release(budget: CaptureBudget): void {
    budget.give(this.bytes)
    this.bytes = 0
    this.chunks = null
  }

  #stop(reason: 'max_capture_bytes' | 'capture_budget', budget: CaptureBudget): void {
    this.skipped = reason
    budget.give(this.bytes)
    this.bytes = 0
    this.chunks = null
  }
}
