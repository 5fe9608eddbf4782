// The books of a remote sink: what became of the records it accepted (written, dropped with
// their warnings, quarantined), the callbacks that count them, and flush() waiting on them.
import type { DeliverySinkOptions } from './delivery-options.js'
import { DropWarnings, type DropReason } from './drop-warnings.js'
import type { RecordResult } from './writer.js'

/**
 * Counts records by what became of them and settles flush() waiters. The sink counts the
 * records it accepts itself (on write()'s path) and hands each to one of these methods once.
 */
export class DeliveryLedger {
  readonly #opts: DeliverySinkOptions
  readonly #warnings: DropWarnings
  #written = 0
  #dropped = 0
  #quarantined = 0
  #settled = 0
  #flushWaiters: Array<{ target: number; resolve: () => void }> = []

  constructor(opts: DeliverySinkOptions) {
    this.#opts = opts
    this.#warnings = new DropWarnings(opts.dropWarningIntervalMs ?? 10_000, opts.onDropWarning)
  }

  get written(): number {
    return this.#written
  }

  get dropped(): number {
    return this.#dropped
  }

  get quarantined(): number {
    return this.#quarantined
  }

  /** Records acknowledged by the sink or dropped (accepted ones only). */
  get settled(): number {
    return this.#settled
  }

  /** Resolves once `target` accepted records are settled. */
  flush(target: number): Promise<void> {
    if (this.#settled >= target) return Promise.resolve()
    return new Promise((resolve) => { this.#flushWaiters.push({ target, resolve }) })
  }

  /** Records acknowledged by the sink. */
  wrote(count: number): void {
    this.#written += count
    this.#emit('written', count)
  }

  /** Records the sink refused for good, kept in the quarantine file. */
  kept(count: number, err: unknown): void {
    this.#quarantined += count
    try {
      this.#opts.onQuarantined?.(count, err)
    } catch {
      // A metrics or log callback must not stop delivery.
    }
  }

  settle(count: number): void {
    if (count === 0) return
    this.#settled += count
    for (let w = this.#flushWaiters[0]; w !== undefined && w.target <= this.#settled; w = this.#flushWaiters[0]) {
      this.#flushWaiters.shift()
      w.resolve()
    }
  }

  drop(reason: DropReason, count: number): false {
    if (count === 0) return false
    this.#dropped += count
    this.#emit('dropped', count)
    this.#warnings.note(reason, count)
    return false
  }

  /** The sink is closed: no more drop warnings. */
  stop(): void {
    this.#warnings.stop()
  }

  #emit(result: RecordResult, count: number): void {
    if (count === 0) return
    try {
      this.#opts.onResult?.(result, count)
    } catch {
      // A metrics callback must not break recording.
    }
  }
}
