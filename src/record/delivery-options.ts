// The options a DeliverySink takes, what it reports to /readyz, and its fixed timings: the
// sink's contract with sinks.ts and the cluster admin, apart from how it delivers.
import type { DropWarning } from './drop-warnings.js'
import type { SinkErrorReason, Transport } from './transport.js'
import type { RecordResult } from './writer.js'

export interface DeliverySinkOptions {
  readonly transport: Transport
  /** The spool directory (one per process). */
  readonly spoolDir: string
  /** Bytes of records the spool may hold; past it records are dropped and counted. */
  readonly spoolMaxBytes: number
  /** How long the first record of a batch waits for others before the batch is sent. */
  readonly lingerMs: number
  /** Bytes of records in one send, at most (a single larger record goes alone). */
  readonly maxBatchBytes: number
  /** After close(), how long records may take to reach the sink before the rest is left in the spool. */
  readonly closeTimeoutMs: number
  /** Bytes of records held in memory, at most; past it write() drops. Default 64 MiB. */
  readonly maxBufferedBytes?: number
  /** Records waiting in memory past this many bytes go to the spool (the sink is slow). Default 4 × maxBatchBytes, at least 4 MiB. */
  readonly spillBytes?: number
  readonly dropWarningIntervalMs?: number
  /** Records acknowledged by the sink (`written`) or dropped, as the file writer reports them. */
  readonly onResult?: (result: RecordResult, count: number) => void
  /** A send failed, or the spool could not be written: `modelsplit_sink_errors_total{reason}`. */
  readonly onSinkError?: (reason: SinkErrorReason, err: unknown) => void
  /** Seconds one successful send took: `modelsplit_sink_latency_seconds`. */
  readonly onLatency?: (seconds: number) => void
  /** Bytes waiting in the spool, after each change: `modelsplit_records_spooled_bytes`. */
  readonly onSpooled?: (bytes: number) => void
  readonly onDropWarning?: (warning: DropWarning) => void
  /** Records the sink refused for good, kept in `quarantineFile`: `modelsplit_records_quarantined_total`. */
  readonly onQuarantined?: (count: number, err: unknown) => void
  /** Where refused records go, one JSON line each. Default `quarantine.jsonl` in the spool directory. */
  readonly quarantineFile?: string
  /**
   * Spool directories of earlier processes (workers that died, or a larger --workers) this sink
   * drains: their records move into its own spool, in order, and the emptied directory is removed.
   * Each directory's lock keeps two processes from draining the same one.
   */
  readonly adopt?: () => Promise<readonly string[]>
  /** Records moved out of an adopted directory, once it is empty. */
  readonly onAdopted?: (dir: string, count: number) => void
  /** Errors worth a log line that are not a failed send (a spool held by another process). */
  readonly onError?: (err: unknown) => void
  /** The sink stopped taking records (with the error), or takes them again: for one log line per change, not per retry. */
  readonly onReachable?: (isReachable: boolean, err?: unknown) => void
}

/** What /readyz says about the sink. */
export interface DeliveryStatus {
  readonly sink: 'kafka' | 'http'
  readonly destination: string
  /** delivering: records go straight to the sink; spooling: they wait on disk for it; starting: the spool is not open yet. */
  readonly state: 'starting' | 'delivering' | 'spooling'
  /** Whether the last send (or connection attempt) worked. */
  readonly reachable: boolean
  readonly spooled_bytes: number
  readonly last_error: string | null
  readonly dropped: number
}

// Defaults and timings of the delivery loop.
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
export const SPILL_CHUNK_BYTES = 1024 * 1024
export const RETRY_MIN_MS = 100
export const RETRY_MAX_MS = 5000
export const LOCK_RETRY_MS = 200

