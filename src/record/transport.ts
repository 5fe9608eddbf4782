import type { Envelope } from './envelope.js'

/** Why a send failed (the `reason` label of `modelsplit_sink_errors_total`): a small, fixed set. */
export type SinkErrorReason = 'unreachable' | 'timeout' | 'rejected' | 'too_large' | 'spool' | 'other'

/** A failed send: why, and whether sending the same records again can ever work. */
export class SinkError extends Error {
  override readonly name = 'SinkError'
  constructor(readonly reason: SinkErrorReason, message: string, readonly isPermanent = false, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Where a remote sink sends records: a Kafka topic or an HTTP collector. */
export interface Transport {
  /** The `sink` label: kafka or http. */
  readonly name: 'kafka' | 'http'
  /** Where records go, for logs and /readyz (brokers and topic, or the URL without credentials). */
  readonly destination: string
  /** Connects ahead of the first send; rejects (a SinkError) when the destination cannot be reached. */
  connect(): Promise<void>
  /**
   * Resolves once the destination has acknowledged every envelope; rejects with a SinkError
   * otherwise (some may have arrived: delivery is at least once). Called one at a time.
   */
  send(envelopes: readonly Envelope[]): Promise<void>
  /** Lets go of connections. Never rejects. */
  close(): Promise<void>
}

/** Whether an error of a client library is the network failing (vs. the destination refusing). */
export function isNetworkError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|UND_ERR_SOCKET|UND_ERR_CONNECT_TIMEOUT)$/.test(code)) return true
  }
  return false
}
