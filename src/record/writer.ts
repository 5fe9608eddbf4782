import { resolve } from 'node:path'
import { DropWarnings } from './drop-warnings.js'
import { RecordFile, type ReopenReason } from './file.js'
import { joinLines, type Line } from './line.js'
import { LineBuffer } from './line-buffer.js'
import type { RecordSink } from './sink.js'
import {
  DEFAULT_DROP_WARNING_INTERVAL_MS,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_WRITE_BYTES,
  checkCount,
  type RecordWriterOptions
} from './writer-options.js'

export type { DropReason, DropWarning } from './drop-warnings.js'
export type { ReopenReason } from './file.js'
export type { RecordResult, RecordWriterOptions, RecordWriterStats } from './writer-options.js'

/**
 * How long the first queued line waits for more before a write, unless LINGER_LINES are queued or
 * the writer is closing. Each write costs a stat of the path, the write and an fstat (three trips
 * to the thread pool): at a few thousand records a second, written as they came, those were most
 * of what recording cost. At 10 ms a route recording 500 requests a second still paid them for
 * every 5 records, a third of what a record cost (bench ms-record at --same-rate, issue 22); at
 * 50 ms, for every 25. Records reach the file up to this much later; flush() still waits for them.
 */
const LINGER_MS = 50
const LINGER_LINES = 512
const linger = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, LINGER_MS))

// Retry a file that cannot be written after 50 ms, doubling up to 5 s while it stays broken.
const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 5000

/**
 * Appends records as JSON lines to a size-rotated file through a buffer bounded in bytes.
 *
 * `write()` is synchronous and never throws: it serializes the record and queues the line, or
 * drops and counts it when the buffer is full. `writeBatch()` takes many records all or nothing,
 * waiting for room up to a deadline. A flush loop writes what is queued in writes of up to
 * `maxWriteBytes`. Before each write it stats the path: if the file was deleted, renamed or
 * replaced, it opens the path again (creating the directory); after each write it checks the file
 * still has a name, and writes the batch again to a new file if not. Records the file refuses
 * (disk full, permissions) are kept and retried with backoff, so the buffer, not the disk, decides
 * what is dropped; only close() gives up on them. The buffer, its bounds and its accounting are
 * LineBuffer's (line-buffer.ts); this class adds the file and the loop that writes to it.
 *
 * @example
 * const writer = new RecordWriter({ path: 'data/predictions.jsonl', max_bytes: 64 << 20, keep: 5 })
 * writer.write({ request_id, primary, shadow })
 * await writer.close()
 */
export class RecordWriter extends LineBuffer implements RecordSink {
  readonly #path: string
  readonly #maxBytes: number
  readonly #keep: number
  readonly #maxWriteBytes: number
  readonly #onReopen: RecordWriterOptions['onReopen']

  #reopenWaiters: Array<() => void> = []
  #closing: Promise<void> | undefined
  #draining: Promise<void> | undefined

  readonly #file: RecordFile

  #retryDelayMs = RETRY_MIN_MS
  #retryTimer: NodeJS.Timeout | undefined

  constructor (opts: RecordWriterOptions) {
    // Every option is checked before super(), in this order, so the first bad one is the one named.
    if (typeof opts.path !== 'string' || opts.path === '') {
      throw new TypeError('RecordWriter: path must be a non-empty string, e.g. "data/predictions.jsonl"')
    }
    const path = resolve(opts.path)
    const maxBytes = checkCount('max_bytes', opts.max_bytes, 1)
    const keep = checkCount('keep', opts.keep, 0)
    const maxRecords = checkCount('maxBufferedRecords', opts.maxBufferedRecords ?? Number.MAX_SAFE_INTEGER, 1)
    const maxBufferedBytes = checkCount('maxBufferedBytes', opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, 1)
    const maxWriteBytes = checkCount('maxWriteBytes', opts.maxWriteBytes ?? DEFAULT_MAX_WRITE_BYTES, 1)
    const warningIntervalMs = checkCount(
      'dropWarningIntervalMs',
      opts.dropWarningIntervalMs ?? DEFAULT_DROP_WARNING_INTERVAL_MS,
      0
    )
    const warnings = new DropWarnings(warningIntervalMs, opts.onDropWarning)
    super(maxRecords, maxBufferedBytes, warnings, opts.onResult, opts.onError)
    this.#path = path
    this.#maxBytes = maxBytes
    this.#keep = keep
    this.#maxWriteBytes = maxWriteBytes
    this.#onReopen = opts.onReopen
    this.#file = new RecordFile(this.#path, this.#maxBytes, this.#keep, (reason) => this.#emitReopen(reason), (err) => this.reportError(err))
  }

  /** The absolute path of the current file. */
  get path (): string {
    return this.#path
  }

  /**
   * Stops accepting records, writes everything buffered and closes the file. Waiting batches are
   * refused; records the file still refuses are dropped and counted. Never rejects; safe to call twice.
   */
  close (): Promise<void> {
    this.isClosed = true
    this.#closing ??= this.#finish()
    return this.#closing
  }

  /** Closes the file and opens the path again, e.g. on SIGHUP after logrotate moved it. Never rejects. */
  reopen (): Promise<void> {
    if (this.isClosed) return Promise.resolve()
    return new Promise((resolve) => {
      this.#reopenWaiters.push(resolve)
      this.retryNow()
    })
  }

  protected override kick (): void {
    if (this.#draining !== undefined || this.#retryTimer !== undefined || !this.#hasWork()) return
    this.#draining = this.#drain()
  }

  #hasWork (): boolean {
    return this.lines.length > 0 || this.#reopenWaiters.length > 0 || (this.isFailing && this.batchWaiters.length > 0)
  }

  /** Cancels a pending retry's backoff and runs the loop now. */
  protected override retryNow (): void {
    if (this.#retryTimer !== undefined) {
      clearTimeout(this.#retryTimer)
      this.#retryTimer = undefined
    }
    this.kick()
  }

  #scheduleRetry (): void {
    if (this.#retryTimer !== undefined || this.isClosed) return
    const delay = this.#retryDelayMs
    this.#retryDelayMs = Math.min(RETRY_MAX_MS, delay * 2)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.kick()
    }, delay)
    this.#retryTimer.unref()
  }

  async #finish (): Promise<void> {
    this.refuseWaitingBatches()
    // One last attempt now rather than after a backoff; what the file still refuses is dropped.
    this.retryNow()
    await this.flush()
    await this.#draining
    for (const w of this.#reopenWaiters.splice(0)) w()
    await this.#file.close()
    this.warnings.stop()
  }

  async #drain (): Promise<void> {
    // Yield first, so a burst of synchronous writes becomes one batch.
    await Promise.resolve()
    try {
      while (this.#hasWork()) {
        if (this.#reopenWaiters.length > 0) {
          await this.#reopenRequested()
          continue
        }
        // Let the lines of the next few milliseconds join this write (see LINGER_MS).
        if (!this.isClosed && !this.isFailing && this.lines.length > 0 && this.lines.length < LINGER_LINES) await linger()
        if (this.lines.length === 0) {
          // Failing with nothing queued but a batch waiting: see whether the file works again.
          if (!await this.#probe()) break
          continue
        }
        const lines = this.lines
        const sizes = this.sizes
        this.lines = []
        this.sizes = []
        const done = await this.#writeLines(lines, sizes)
        if (done === lines.length) continue
        // The file refused them: keep the rest, in order, ahead of anything queued since.
        this.lines = lines.slice(done).concat(this.lines)
        this.sizes = sizes.slice(done).concat(this.sizes)
        if (this.isClosed) {
          this.dropQueued('io_error')
          continue
        }
        this.#scheduleRetry()
        break
      }
    } catch (err) {
      // #writeLines accounts for every line and does not throw; this is a last resort.
      this.reportError(err)
    } finally {
      this.#draining = undefined
    }
  }

  async #probe (): Promise<boolean> {
    try {
      await this.#file.ensure()
    } catch (err) {
      this.#fail(err)
      this.#scheduleRetry()
      return false
    }
    this.#recovered()
    return true
  }

  async #reopenRequested (): Promise<void> {
    const waiters = this.#reopenWaiters
    this.#reopenWaiters = []
    if (this.#file.isOpen) {
      try {
        await this.#file.reopen('requested')
      } catch (err) {
        // The next write opens it again (and retries on failure).
        this.#fail(err)
      }
    }
    for (const w of waiters) w()
  }

  /** Writes lines in writes of up to maxWriteBytes, rotating between lines; returns how many are on disk (all, unless the file failed). */
  async #writeLines (lines: Line[], sizes: number[]): Promise<number> {
    const file = this.#file
    let i = 0
    let canRotate = true
    let isRewrite = false
    while (i < lines.length) {
      try {
        await file.ensure()
        // Rotate between lines, never inside one; an empty file takes any line, however long.
        if (canRotate && !file.isEmpty && (sizes[i] ?? 0) > file.room()) {
          // After a failed rotation, don't retry it for every remaining line of the batch.
          canRotate = await file.rotate()
          continue
        }
      } catch (err) {
        this.#fail(err)
        return i
      }
      const room = canRotate ? file.room() : Number.POSITIVE_INFINITY
      let j = i
      let bytes = 0
      while (j < lines.length) {
        const size = sizes[j] ?? 0
        if (j > i && (bytes + size > this.#maxWriteBytes || bytes + size > room)) break
        bytes += size
        j++
      }
      const { written, error } = await file.append(joinLines(lines, i, j))
      if (error !== undefined) {
        // Lines written whole before the failure are on disk; the one cut short is written again.
        let left = written
        let k = i
        let kb = 0
        while (k < j && left >= (sizes[k] ?? 0)) {
          left -= sizes[k] ?? 0
          kb += sizes[k] ?? 0
          k++
        }
        if (k > i) this.markWritten(k - i, kb)
        this.#fail(error)
        return k
      }
      if (!isRewrite && await file.isUnlinked()) {
        // The file lost its name while we wrote (rm -rf): write the same lines again, once, to the path's new file.
        file.forget()
        this.#emitReopen('deleted')
        isRewrite = true
        continue
      }
      isRewrite = false
      this.markWritten(j - i, bytes)
      this.#recovered()
      i = j
    }
    return i
  }

  #fail (err: unknown): void {
    this.reportError(err)
    this.isFailing = true
    this.#file.forget()
  }

  #recovered (): void {
    if (!this.isFailing) return
    this.isFailing = false
    this.#retryDelayMs = RETRY_MIN_MS
    this.admitWaiters()
  }

  #emitReopen (reason: ReopenReason): void {
    if (this.#onReopen === undefined) return
    try {
      this.#onReopen(reason)
    } catch {
      // A metrics callback must not break recording.
    }
  }
}
