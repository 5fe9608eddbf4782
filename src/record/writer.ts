import { resolve } from 'node:path'
import { DropWarnings, type DropReason } from './drop-warnings.js'
import { RecordFile, type ReopenReason } from './file.js'
import { joinLines, sizeOf, type Line } from './line.js'
import { recordLine } from './schema.js'
import type { RecordSink, WriteBatchOptions } from './sink.js'
import {
  DEFAULT_DROP_WARNING_INTERVAL_MS,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_WRITE_BYTES,
  checkCount,
  type RecordResult,
  type RecordWriterOptions,
  type RecordWriterStats
} from './writer-options.js'

export type { DropReason, DropWarning } from './drop-warnings.js'
export type { ReopenReason } from './file.js'
export type { RecordResult, RecordWriterOptions, RecordWriterStats } from './writer-options.js'

interface Batch {
  readonly lines: Line[]
  readonly sizes: number[]
  readonly bytes: number
}

interface BatchWaiter extends Batch {
  readonly resolve: (accepted: boolean) => void
  timer: NodeJS.Timeout | undefined
}

// Retry a file that cannot be written after 50 ms, doubling up to 5 s while it stays broken.
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

const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 5000
// Serializing a large batch yields to the event loop after this much work, so requests keep flowing.
const SLICE_MS = 2

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

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
 * what is dropped; only close() gives up on them.
 *
 * @example
 * const writer = new RecordWriter({ path: 'data/predictions.jsonl', max_bytes: 64 << 20, keep: 5 })
 * writer.write({ request_id, primary, shadow })
 * await writer.close()
 */
export class RecordWriter implements RecordSink {
  readonly #path: string
  readonly #maxBytes: number
  readonly #keep: number
  readonly #maxRecords: number
  readonly #maxBufferedBytes: number
  readonly #maxWriteBytes: number
  readonly #onResult: RecordWriterOptions['onResult']
  readonly #onError: RecordWriterOptions['onError']
  readonly #onReopen: RecordWriterOptions['onReopen']

  // Lines waiting for the next write, with their UTF-8 sizes; swapped out whole by the flush loop.
  #lines: Line[] = []
  #sizes: number[] = []
  // Accepted and not yet written: queued plus in flight.
  #pendingRecords = 0
  #pendingBytes = 0
  // Bytes of batches waiting for room: single records may not take that room meanwhile.
  #reservedBytes = 0
  #batchWaiters: BatchWaiter[] = []

  #written = 0
  #dropped = 0
  // Records ever queued, and how many of those are settled (written or dropped): flush() waits on these.
  #accepted = 0
  #settled = 0
  #flushWaiters: Array<{ target: number, resolve: () => void }> = []
  #reopenWaiters: Array<() => void> = []
  #isClosed = false
  #closing: Promise<void> | undefined
  #draining: Promise<void> | undefined

  readonly #file: RecordFile

  // The last attempt to open or write failed; batches wait until one succeeds.
  #isFailing = false
  #retryDelayMs = RETRY_MIN_MS
  #retryTimer: NodeJS.Timeout | undefined

  readonly #warnings: DropWarnings

  constructor (opts: RecordWriterOptions) {
    if (typeof opts.path !== 'string' || opts.path === '') {
      throw new TypeError('RecordWriter: path must be a non-empty string, e.g. "data/predictions.jsonl"')
    }
    this.#path = resolve(opts.path)
    this.#maxBytes = checkCount('max_bytes', opts.max_bytes, 1)
    this.#keep = checkCount('keep', opts.keep, 0)
    this.#maxRecords = checkCount('maxBufferedRecords', opts.maxBufferedRecords ?? Number.MAX_SAFE_INTEGER, 1)
    this.#maxBufferedBytes = checkCount('maxBufferedBytes', opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, 1)
    this.#maxWriteBytes = checkCount('maxWriteBytes', opts.maxWriteBytes ?? DEFAULT_MAX_WRITE_BYTES, 1)
    this.#warnings = new DropWarnings(checkCount('dropWarningIntervalMs', opts.dropWarningIntervalMs ?? DEFAULT_DROP_WARNING_INTERVAL_MS, 0), opts.onDropWarning)
    this.#onResult = opts.onResult
    this.#onError = opts.onError
    this.#onReopen = opts.onReopen
    this.#file = new RecordFile(this.#path, this.#maxBytes, this.#keep, (reason) => this.#emitReopen(reason), (err) => this.#reportError(err))
  }

  /** The absolute path of the current file. */
  get path (): string {
    return this.#path
  }

  /** Queues one record as a JSON line; never blocks, never throws. Returns whether it was accepted. */
  write (record: object): boolean {
    if (this.#isClosed) return this.#drop('closed', 1)
    // Serialize now: the caller may mutate or reuse the object as soon as we return.
    const line = this.#serialize(record)
    if (line === undefined) return this.#drop('unserializable', 1)
    const size = sizeOf(line)
    if (this.#pendingRecords >= this.#maxRecords || this.#pendingBytes + this.#reservedBytes + size > this.#maxBufferedBytes) {
      return this.#drop('buffer_full', 1)
    }
    this.#enqueue(line, size)
    this.#kick()
    return true
  }

  /**
   * Queues every record or none. Serializes in slices that yield to the event loop, then takes the
   * batch if the buffer has room and the file is writable; otherwise waits up to `timeoutMs` for
   * both (holding the room it needs against single records), and resolves false if they do not come.
   * A batch larger than the whole buffer is taken once the buffer is empty.
   */
  async writeBatch (records: Iterable<object>, opts: WriteBatchOptions = {}): Promise<boolean> {
    if (this.#isClosed) return false
    const lines: Line[] = []
    const sizes: number[] = []
    let bytes = 0
    let sliceStart = performance.now()
    for (const record of records) {
      const line = this.#serialize(record)
      if (line === undefined) return false
      const size = sizeOf(line)
      lines.push(line)
      sizes.push(size)
      bytes += size
      if ((lines.length & 255) === 0 && performance.now() - sliceStart > SLICE_MS) {
        await yieldToEventLoop()
        if (this.#isClosed) return false
        sliceStart = performance.now()
      }
    }
    if (lines.length === 0) return true
    return this.#admit({ lines, sizes, bytes }, opts.timeoutMs ?? 0)
  }

  /** Resolves when every record accepted before the call is written (or dropped). While the file cannot be written, that waits for it. */
  flush (): Promise<void> {
    // Wait for a count, not for an idle loop: under steady load the loop may never go idle.
    const target = this.#accepted
    if (this.#settled >= target) return Promise.resolve()
    return new Promise((resolve) => { this.#flushWaiters.push({ target, resolve }) })
  }

  /**
   * Stops accepting records, writes everything buffered and closes the file. Waiting batches are
   * refused; records the file still refuses are dropped and counted. Never rejects; safe to call twice.
   */
  close (): Promise<void> {
    this.#isClosed = true
    this.#closing ??= this.#finish()
    return this.#closing
  }

  /** Closes the file and opens the path again, e.g. on SIGHUP after logrotate moved it. Never rejects. */
  reopen (): Promise<void> {
    if (this.#isClosed) return Promise.resolve()
    return new Promise((resolve) => {
      this.#reopenWaiters.push(resolve)
      this.#retryNow()
    })
  }

  /** Counters since creation. */
  stats (): RecordWriterStats {
    return {
      written: this.#written,
      dropped: this.#dropped,
      buffered: this.#pendingRecords,
      bufferedBytes: this.#pendingBytes
    }
  }

  #serialize (record: object): Line | undefined {
    let line: Line | undefined
    try {
      line = recordLine(record)
    } catch (err) {
      this.#reportError(err)
      return undefined
    }
    if (line === undefined) {
      this.#reportError(new TypeError(`RecordWriter: record is not serializable as JSON (${typeof record})`))
      return undefined
    }
    return line
  }

  #enqueue (line: Line, size: number): void {
    this.#lines.push(line)
    this.#sizes.push(size)
    this.#pendingRecords++
    this.#pendingBytes += size
    this.#accepted++
  }

  #canAdmit (batch: Batch): boolean {
    if (this.#isFailing) return false
    if (this.#pendingRecords === 0) return true
    return this.#pendingRecords + batch.lines.length <= this.#maxRecords && this.#pendingBytes + batch.bytes <= this.#maxBufferedBytes
  }

  #admit (batch: Batch, timeoutMs: number): Promise<boolean> {
    if (this.#isClosed) return Promise.resolve(false)
    // Batches are taken in arrival order: a small one does not overtake a large one that waits.
    if (this.#batchWaiters.length === 0 && this.#canAdmit(batch)) {
      this.#enqueueBatch(batch)
      this.#kick()
      return Promise.resolve(true)
    }
    if (!(timeoutMs > 0)) return Promise.resolve(false)
    return new Promise((resolve) => {
      const waiter: BatchWaiter = { ...batch, resolve, timer: undefined }
      waiter.timer = setTimeout(() => this.#giveUp(waiter), timeoutMs)
      this.#reservedBytes += batch.bytes
      this.#batchWaiters.push(waiter)
      // A file that failed is retried on a backoff timer; a batch waiting on it is worth a try now.
      if (this.#isFailing) this.#retryNow()
    })
  }

  #enqueueBatch (batch: Batch): void {
    // One copy of the arrays (none when the queue is empty), not one push per line: a large
    // batch is taken in a single short step.
    if (this.#lines.length === 0) {
      this.#lines = batch.lines
      this.#sizes = batch.sizes
    } else {
      this.#lines = this.#lines.concat(batch.lines)
      this.#sizes = this.#sizes.concat(batch.sizes)
    }
    this.#pendingRecords += batch.lines.length
    this.#pendingBytes += batch.bytes
    this.#accepted += batch.lines.length
  }

  #giveUp (waiter: BatchWaiter): void {
    const i = this.#batchWaiters.indexOf(waiter)
    if (i < 0) return
    this.#batchWaiters.splice(i, 1)
    clearTimeout(waiter.timer)
    this.#reservedBytes -= waiter.bytes
    waiter.resolve(false)
    // The batch behind it may fit where this one did not.
    this.#admitWaiters()
  }

  #admitWaiters (): void {
    let admitted = false
    for (let w = this.#batchWaiters[0]; w !== undefined && this.#canAdmit(w); w = this.#batchWaiters[0]) {
      this.#batchWaiters.shift()
      clearTimeout(w.timer)
      this.#reservedBytes -= w.bytes
      this.#enqueueBatch(w)
      w.resolve(true)
      admitted = true
    }
    if (admitted) this.#kick()
  }

  #kick (): void {
    if (this.#draining !== undefined || this.#retryTimer !== undefined || !this.#hasWork()) return
    this.#draining = this.#drain()
  }

  #hasWork (): boolean {
    return this.#lines.length > 0 || this.#reopenWaiters.length > 0 || (this.#isFailing && this.#batchWaiters.length > 0)
  }

  /** Cancels a pending retry's backoff and runs the loop now. */
  #retryNow (): void {
    if (this.#retryTimer !== undefined) {
      clearTimeout(this.#retryTimer)
      this.#retryTimer = undefined
    }
    this.#kick()
  }

  #scheduleRetry (): void {
    if (this.#retryTimer !== undefined || this.#isClosed) return
    const delay = this.#retryDelayMs
    this.#retryDelayMs = Math.min(RETRY_MAX_MS, delay * 2)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#kick()
    }, delay)
    this.#retryTimer.unref()
  }

  async #finish (): Promise<void> {
    for (const w of this.#batchWaiters.splice(0)) {
      clearTimeout(w.timer)
      this.#reservedBytes -= w.bytes
      w.resolve(false)
    }
    // One last attempt now rather than after a backoff; what the file still refuses is dropped.
    this.#retryNow()
    await this.flush()
    await this.#draining
    for (const w of this.#reopenWaiters.splice(0)) w()
    await this.#file.close()
    this.#warnings.stop()
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
        if (!this.#isClosed && !this.#isFailing && this.#lines.length > 0 && this.#lines.length < LINGER_LINES) await linger()
        if (this.#lines.length === 0) {
          // Failing with nothing queued but a batch waiting: see whether the file works again.
          if (!await this.#probe()) break
          continue
        }
        const lines = this.#lines
        const sizes = this.#sizes
        this.#lines = []
        this.#sizes = []
        const done = await this.#writeLines(lines, sizes)
        if (done === lines.length) continue
        // The file refused them: keep the rest, in order, ahead of anything queued since.
        this.#lines = lines.slice(done).concat(this.#lines)
        this.#sizes = sizes.slice(done).concat(this.#sizes)
        if (this.#isClosed) {
          this.#dropQueued('io_error')
          continue
        }
        this.#scheduleRetry()
        break
      }
    } catch (err) {
      // #writeLines accounts for every line and does not throw; this is a last resort.
      this.#reportError(err)
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
        if (k > i) this.#markWritten(k - i, kb)
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
      this.#markWritten(j - i, bytes)
      this.#recovered()
      i = j
    }
    return i
  }

  #fail (err: unknown): void {
    this.#reportError(err)
    this.#isFailing = true
    this.#file.forget()
  }

  #recovered (): void {
    if (!this.#isFailing) return
    this.#isFailing = false
    this.#retryDelayMs = RETRY_MIN_MS
    this.#admitWaiters()
  }

  #markWritten (records: number, bytes: number): void {
    this.#written += records
    this.#release(records, bytes)
    this.#emit('written', records)
  }

  #dropQueued (reason: DropReason): void {
    const count = this.#lines.length
    let bytes = 0
    for (const s of this.#sizes) bytes += s
    this.#lines = []
    this.#sizes = []
    this.#release(count, bytes)
    this.#drop(reason, count)
  }

  #release (records: number, bytes: number): void {
    this.#pendingRecords -= records
    this.#pendingBytes -= bytes
    this.#settled += records
    // Waiters are queued in target order, so only the front ones can be due.
    for (let w = this.#flushWaiters[0]; w !== undefined && w.target <= this.#settled; w = this.#flushWaiters[0]) {
      this.#flushWaiters.shift()
      w.resolve()
    }
    if (this.#batchWaiters.length > 0) this.#admitWaiters()
  }

  #drop (reason: DropReason, count: number): false {
    if (count === 0) return false
    this.#dropped += count
    this.#emit('dropped', count)
    this.#warnings.note(reason, count)
    return false
  }

  #emit (result: RecordResult, count: number): void {
    if (this.#onResult === undefined || count === 0) return
    try {
      this.#onResult(result, count)
    } catch {
      // A metrics callback must not break recording.
    }
  }

  #emitReopen (reason: ReopenReason): void {
    if (this.#onReopen === undefined) return
    try {
      this.#onReopen(reason)
    } catch {
      // Same: a metrics callback must not break recording.
    }
  }

  #reportError (err: unknown): void {
    if (this.#onError === undefined) return
    try {
      this.#onError(err)
    } catch {
      // Same: the error sink must not break recording.
    }
  }
}
