/**
 * What a RecordWriter is told and what it tells back: its options with their defaults and the
 * check each count gets, the results it reports, and its counters.
 */
import type { DropWarning } from './drop-warnings.js'
import type { ReopenReason } from './file.js'

/** What happened to records, reported through `onResult` (the `result` label of `modelsplit_records_total`). */
export type RecordResult = 'written' | 'dropped'

export interface RecordWriterOptions {
  /** The JSONL file to append to; parent directories are created (again, if deleted). */
  path: string
  /** Rotate before a line would take the file past this many bytes (a single longer line gets a file of its own). */
  max_bytes: number
  /** Rotated files to keep (`path.1` … `path.<keep>`); older ones are deleted. 0 keeps none. */
  keep: number
  /** Bytes of serialized records accepted but not yet on disk, at most. Default 64 MiB. */
  maxBufferedBytes?: number
  /** Records accepted but not yet on disk, at most. Default: no limit but the bytes. */
  maxBufferedRecords?: number
  /** Bytes handed to one write call; batches are cut at this size (short enough that building one never stalls requests). Default 256 KiB. */
  maxWriteBytes?: number
  /** Shortest time between two `onDropWarning` calls. Default 10 000 ms. */
  dropWarningIntervalMs?: number
  /** Called with every batch written and every record dropped; must not throw (a throw is swallowed). */
  onResult?: (result: RecordResult, count: number) => void
  /** Called with errors serializing, opening, writing or rotating. Records that could not be written are kept and retried. */
  onError?: (err: unknown) => void
  /** Called when the writer closes its file and opens the path again (`modelsplit_record_file_reopened_total`). */
  onReopen?: (reason: ReopenReason) => void
  /** Called at most once per `dropWarningIntervalMs` when records were dropped, so a log says so without flooding. */
  onDropWarning?: (warning: DropWarning) => void
}

export interface RecordWriterStats {
  /** Records on disk (handed to the OS) since the writer was created. */
  written: number
  /** Records refused: buffer full, not serializable, written after close(), or unwritable at close. */
  dropped: number
  /** Records accepted and not yet written, including the batch being written. */
  buffered: number
  /** Bytes of those buffered records. */
  bufferedBytes: number
}

export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
export const DEFAULT_MAX_WRITE_BYTES = 256 * 1024
export const DEFAULT_DROP_WARNING_INTERVAL_MS = 10_000

/** The value if it is a safe integer of at least `min`; otherwise a RangeError naming the option. */
export function checkCount (name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`RecordWriter: ${name} must be an integer >= ${min}, got ${String(value)}`)
  }
  return value
}
