/**
 * The record writer's buffer: what was accepted and not yet written, its bounds, batches waiting
 * for room, flush(), and the count of what was written and dropped. The file is writer.ts's.
 */
import type { DropReason, DropWarnings } from './drop-warnings.js'
import { sizeOf, type Line } from './line.js'
import { recordLine } from './schema.js'
import type { WriteBatchOptions } from './sink.js'
import type { RecordResult, RecordWriterOptions, RecordWriterStats } from './writer-options.js'

interface Batch {
  readonly lines: Line[]
  readonly sizes: number[]
  readonly bytes: number
}

interface BatchWaiter extends Batch {
  readonly resolve: (accepted: boolean) => void
  timer: NodeJS.Timeout | undefined
}

// Serializing a large batch yields to the event loop after this much work, so requests keep flowing.
const SLICE_MS = 2

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * The record writer's buffer: records accepted as serialised lines and not yet written, bounded in
 * records and bytes; batches taken all or nothing, waiting in arrival order for room; flush()
 * waiting on a count; and the accounting of what was written and dropped (onResult, the drop
 * warnings, stats()). RecordWriter (writer.ts) adds the file and the loop that writes the lines.
 */
export abstract class LineBuffer {
  readonly #maxRecords: number
  readonly #maxBufferedBytes: number
  readonly #onResult: RecordWriterOptions['onResult']
  readonly #onError: RecordWriterOptions['onError']

  // Lines waiting for the next write, with their UTF-8 sizes; swapped out whole by the flush loop.
  protected lines: Line[] = []
  protected sizes: number[] = []
  // Accepted and not yet written: queued plus in flight.
  #pendingRecords = 0
  #pendingBytes = 0
  // Bytes of batches waiting for room: single records may not take that room meanwhile.
  #reservedBytes = 0
  protected batchWaiters: BatchWaiter[] = []

  #written = 0
  #dropped = 0
  // Records ever queued, and how many of those are settled (written or dropped): flush() waits on these.
  #accepted = 0
  #settled = 0
  #flushWaiters: Array<{ target: number, resolve: () => void }> = []
  protected isClosed = false

  // The last attempt to open or write failed (set by the flush loop); batches wait until one succeeds.
  protected isFailing = false

  protected readonly warnings: DropWarnings

  constructor (
    maxRecords: number,
    maxBufferedBytes: number,
    warnings: DropWarnings,
    onResult: RecordWriterOptions['onResult'],
    onError: RecordWriterOptions['onError']
  ) {
    this.#maxRecords = maxRecords
    this.#maxBufferedBytes = maxBufferedBytes
    this.warnings = warnings
    this.#onResult = onResult
    this.#onError = onError
  }

  /** Starts the flush loop if it has work and is neither running nor waiting out a retry's backoff. */
  protected abstract kick (): void

  /** Cancels a pending retry's backoff and runs the flush loop now. */
  protected abstract retryNow (): void

  /** Queues one record as a JSON line; never blocks, never throws. Returns whether it was accepted. */
  write (record: object): boolean {
    if (this.isClosed) return this.#drop('closed', 1)
    // Serialize now: the caller may mutate or reuse the object as soon as we return.
    const line = this.#serialize(record)
    if (line === undefined) return this.#drop('unserializable', 1)
    const size = sizeOf(line)
    if (this.#pendingRecords >= this.#maxRecords || this.#pendingBytes + this.#reservedBytes + size > this.#maxBufferedBytes) {
      return this.#drop('buffer_full', 1)
    }
    this.#enqueue(line, size)
    this.kick()
    return true
  }

  /**
   * Queues every record or none. Serializes in slices that yield to the event loop, then takes the
   * batch if the buffer has room and the file is writable; otherwise waits up to `timeoutMs` for
   * both (holding the room it needs against single records), and resolves false if they do not come.
   * A batch larger than the whole buffer is taken once the buffer is empty.
   */
  async writeBatch (records: Iterable<object>, opts: WriteBatchOptions = {}): Promise<boolean> {
    if (this.isClosed) return false
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
        if (this.isClosed) return false
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
      this.reportError(err)
      return undefined
    }
    if (line === undefined) {
      this.reportError(new TypeError(`RecordWriter: record is not serializable as JSON (${typeof record})`))
      return undefined
    }
    return line
  }

  #enqueue (line: Line, size: number): void {
    this.lines.push(line)
    this.sizes.push(size)
    this.#pendingRecords++
    this.#pendingBytes += size
    this.#accepted++
  }

  #canAdmit (batch: Batch): boolean {
    if (this.isFailing) return false
    if (this.#pendingRecords === 0) return true
    return this.#pendingRecords + batch.lines.length <= this.#maxRecords && this.#pendingBytes + batch.bytes <= this.#maxBufferedBytes
  }

  #admit (batch: Batch, timeoutMs: number): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false)
    // Batches are taken in arrival order: a small one does not overtake a large one that waits.
    if (this.batchWaiters.length === 0 && this.#canAdmit(batch)) {
      this.#enqueueBatch(batch)
      this.kick()
      return Promise.resolve(true)
    }
    if (!(timeoutMs > 0)) return Promise.resolve(false)
    return new Promise((resolve) => {
      const waiter: BatchWaiter = { ...batch, resolve, timer: undefined }
      waiter.timer = setTimeout(() => this.#giveUp(waiter), timeoutMs)
      this.#reservedBytes += batch.bytes
      this.batchWaiters.push(waiter)
      // A file that failed is retried on a backoff timer; a batch waiting on it is worth a try now.
      if (this.isFailing) this.retryNow()
    })
  }

  #enqueueBatch (batch: Batch): void {
    // One copy of the arrays (none when the queue is empty), not one push per line: a large
    // batch is taken in a single short step.
    if (this.lines.length === 0) {
      this.lines = batch.lines
      this.sizes = batch.sizes
    } else {
      this.lines = this.lines.concat(batch.lines)
      this.sizes = this.sizes.concat(batch.sizes)
    }
    this.#pendingRecords += batch.lines.length
    this.#pendingBytes += batch.bytes
    this.#accepted += batch.lines.length
  }

  #giveUp (waiter: BatchWaiter): void {
    const i = this.batchWaiters.indexOf(waiter)
    if (i < 0) return
    this.batchWaiters.splice(i, 1)
    clearTimeout(waiter.timer)
    this.#reservedBytes -= waiter.bytes
    waiter.resolve(false)
    // The batch behind it may fit where this one did not.
    this.admitWaiters()
  }

  protected admitWaiters (): void {
    let admitted = false
    for (let w = this.batchWaiters[0]; w !== undefined && this.#canAdmit(w); w = this.batchWaiters[0]) {
      this.batchWaiters.shift()
      clearTimeout(w.timer)
      this.#reservedBytes -= w.bytes
      this.#enqueueBatch(w)
      w.resolve(true)
      admitted = true
    }
    if (admitted) this.kick()
  }

  protected markWritten (records: number, bytes: number): void {
    this.#written += records
    this.#release(records, bytes)
    this.#emit('written', records)
  }

  protected dropQueued (reason: DropReason): void {
    const count = this.lines.length
    let bytes = 0
    for (const s of this.sizes) bytes += s
    this.lines = []
    this.sizes = []
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
    if (this.batchWaiters.length > 0) this.admitWaiters()
  }

  #drop (reason: DropReason, count: number): false {
    if (count === 0) return false
    this.#dropped += count
    this.#emit('dropped', count)
    this.warnings.note(reason, count)
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

  protected reportError (err: unknown): void {
    if (this.#onError === undefined) return
    try {
      this.#onError(err)
    } catch {
      // Same: the error sink must not break recording.
    }
  }

  /** Refuses every batch waiting for room (the writer is closing) and gives back the room they held. */
  protected refuseWaitingBatches (): void {
    for (const w of this.batchWaiters.splice(0)) {
      clearTimeout(w.timer)
      this.#reservedBytes -= w.bytes
      w.resolve(false)
    }
  }
}
