// How a remote sink's destination is doing: reachable or not (one log line per change, not per
// retry), the last error /readyz shows, sink errors counted, and the backoff between failed sends.
import { RETRY_MAX_MS, RETRY_MIN_MS, type DeliverySinkOptions } from './delivery-options.js'
import { SinkError, type SinkErrorReason } from './transport.js'

/** The destination's state as the send loop sees it, and the callbacks that report it. */
export class DeliveryHealth {
  readonly #opts: DeliverySinkOptions
  #retryAt = 0
  #retryDelay = RETRY_MIN_MS
  #isReachable = false
  #lastError: string | null = null

  constructor(opts: DeliverySinkOptions) {
    this.#opts = opts
  }

  /** When the next send may be tried (performance.now()); 0 when at once. */
  get retryAt(): number {
    return this.#retryAt
  }

  /** How long the next backoff waits. */
  get retryDelay(): number {
    return this.#retryDelay
  }

  get isReachable(): boolean {
    return this.#isReachable
  }

  get lastError(): string | null {
    return this.#lastError
  }

  /** Why records are not going out when no send failed (the spool cannot be opened or written). */
  noteError(message: string): void {
    this.#lastError = message
  }

  backoff(): void {
    this.#retryAt = performance.now() + this.#retryDelay
    this.#retryDelay = Math.min(RETRY_MAX_MS, this.#retryDelay * 2)
  }

  /** A send worked: the next failure waits the shortest delay again. */
  resetDelay(): void {
    this.#retryDelay = RETRY_MIN_MS
  }

  /** The next send may go at once, and a failure then waits the shortest delay. */
  retryNow(): void {
    this.#retryAt = 0
    this.#retryDelay = RETRY_MIN_MS
  }

  failed(err: unknown): void {
    if (this.#isReachable || this.#lastError === null) this.#opts.onReachable?.(false, err)
    this.#isReachable = false
    this.#lastError = err instanceof Error ? err.message : String(err)
    this.sinkError(err instanceof SinkError ? err.reason : 'other', err)
  }

  reachable(): void {
    if (!this.#isReachable && this.#lastError !== null) this.#opts.onReachable?.(true)
    this.#isReachable = true
  }

  sinkError(reason: SinkErrorReason, err: unknown): void {
    try {
      this.#opts.onSinkError?.(reason, err)
    } catch {
      // A metrics or log callback must not stop delivery.
    }
  }
}
