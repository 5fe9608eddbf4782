/**
 * The router-wide budget for model answers held in memory for comparison and records
 * (limits.max_capture_total_bytes). Captures take what their buffers cost as they grow and give
 * it back when their record is written; a capture that would go past the budget stops, and its
 * answer streams on to the client uncaptured.
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

const EMPTY = Buffer.alloc(0)
const ACTIVE: readonly Buffer[] = Object.freeze([])

/**
 * One answer being captured, up to a per-answer cap, within the shared budget. The answer is
 * copied into one buffer the capture owns, so what the budget counts is what the capture keeps
 * alive: no list of the parser's chunks (views that can pin larger socket buffers) beside a
 * joined copy of them. The buffer is sized once from the answer's Content-Length when it has one,
 * else doubles as it fills; while it grows, the old and the new one are both counted.
 */
export class Capture {
  #buf: Buffer | null = null
  #active = true
  /** What the budget holds for this capture: the size of its buffer, not the bytes in it. */
  #cost = 0
  #expected = 0
  bytes = 0
  /** Why the answer was not captured whole, or null. */
  skipped: 'max_capture_bytes' | 'capture_budget' | null = null

  /** Whether bytes are still being captured (false once stopped or released). */
  get active(): boolean {
    return this.#active
  }

  /** @deprecated Use `active`: null once the capture stopped, as when it held a chunk list. */
  get chunks(): readonly Buffer[] | null {
    return this.#active ? ACTIVE : null
  }

  /** Bytes this capture holds of the budget now. */
  get cost(): number {
    return this.#cost
  }

  /** The answer's declared length (Content-Length): its buffer is sized to it, up to the cap. */
  expect(length: number): void {
    this.#expected = length
  }

  add(chunk: Buffer, cap: number, budget: CaptureBudget): void {
    if (!this.#active) return
    const need = this.bytes + chunk.length
    // An answer declared longer than the cap will not fit: stop before paying for a buffer.
    if (need > cap || this.#expected > cap) return this.#stop('max_capture_bytes', budget)
    let buf = this.#buf
    if (buf === null || need > buf.length) {
      const grown = buf === null ? this.#expected : 2 * buf.length
      const size = Math.min(cap, grown > need ? grown : need)
      if (!budget.take(size)) return this.#stop('capture_budget', budget)
      const next = Buffer.allocUnsafe(size)
      if (buf !== null) buf.copy(next, 0, 0, this.bytes)
      budget.give(this.#cost)
      this.#cost = size
      this.#buf = buf = next
    }
    chunk.copy(buf, this.bytes)
    this.bytes = need
  }

  /** The answer (undefined when skipped); its bytes stay taken until release(). */
  body(): Buffer | undefined {
    if (!this.#active) return undefined
    const buf = this.#buf
    return buf === null ? EMPTY : buf.subarray(0, this.bytes)
  }

  /**
   * Drops the answer but keeps its bytes taken, returning how many: the record made of it is
   * queued in its sink, and the caller gives them back (budget.give) once the sink has written it,
   * so the budget bounds captures and the records made of them together.
   */
  detach(): number {
    const cost = this.#cost
    this.#cost = 0
    this.bytes = 0
    this.#buf = null
    this.#active = false
    return cost
  }

  release(budget: CaptureBudget): void {
    budget.give(this.#cost)
    this.#cost = 0
    this.bytes = 0
    this.#buf = null
    this.#active = false
  }

  #stop(reason: 'max_capture_bytes' | 'capture_budget', budget: CaptureBudget): void {
    this.skipped = reason
    this.release(budget)
  }
}
