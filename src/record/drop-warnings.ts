/**
 * Why records were dropped: no room, not JSON, the file failed while closing, written after
 * close(), no room left in a remote sink's spool, or refused by the sink for good (too large).
 */
export type DropReason = 'buffer_full' | 'unserializable' | 'io_error' | 'closed' | 'spool_full' | 'rejected'

/** Records dropped since the last warning, handed to `onDropWarning` at most once per interval. */
export interface DropWarning {
  readonly dropped: number
  readonly reasons: Readonly<Record<DropReason, number>>
  /** Milliseconds these drops span: since the previous warning, or since the writer was created. */
  readonly sinceMs: number
}

function noDrops (): Record<DropReason, number> {
  return { buffer_full: 0, unserializable: 0, io_error: 0, closed: 0, spool_full: 0, rejected: 0 }
}

/**
 * Turns drops into warnings a log can take: the first at once, then at most one per interval
 * with everything dropped since, so a disk that cannot keep up is said once, not per record.
 */
export class DropWarnings {
  readonly #intervalMs: number
  readonly #onWarning: ((warning: DropWarning) => void) | undefined
  #counts = noDrops()
  #total = 0
  #since = Date.now()
  #lastAt = Number.NEGATIVE_INFINITY
  #timer: NodeJS.Timeout | undefined
  #isStopped = false

  constructor (intervalMs: number, onWarning: ((warning: DropWarning) => void) | undefined) {
    this.#intervalMs = intervalMs
    this.#onWarning = onWarning
  }

  /** Counts drops; warns now if the last warning is an interval old, else once it is. */
  note (reason: DropReason, count: number): void {
    if (this.#onWarning === undefined) return
    this.#counts[reason] += count
    this.#total += count
    if (this.#timer !== undefined || this.#isStopped) return
    const wait = this.#lastAt + this.#intervalMs - Date.now()
    if (wait <= 0) {
      this.#warn()
      return
    }
    this.#timer = setTimeout(() => this.#warn(), wait)
    this.#timer.unref()
  }

  /** Says what is pending now, and schedules nothing more (the writer is closed). */
  stop (): void {
    this.#isStopped = true
    this.#warn()
  }

  #warn (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#total === 0 || this.#onWarning === undefined) return
    const now = Date.now()
    const warning: DropWarning = { dropped: this.#total, reasons: this.#counts, sinceMs: now - this.#since }
    this.#counts = noDrops()
    this.#total = 0
    this.#since = now
    this.#lastAt = now
    try {
      this.#onWarning(warning)
    } catch {
      // A logging callback must not break recording.
    }
  }
}
