import { mkdir, open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { rotateFiles } from './files.js'

/** What happened to records, reported through `onResult` (the `result` label of `modelsplit_records_total`). */
export type RecordResult = 'written' | 'dropped'

export interface RecordWriterOptions {
  /** The JSONL file to append to; parent directories are created. */
  path: string
  /** Rotate before a line would take the file past this many bytes (a single longer line gets a file of its own). */
  max_bytes: number
  /** Rotated files to keep (`path.1` … `path.<keep>`); older ones are deleted. 0 keeps none. */
  keep: number
  /** Records accepted but not yet on disk, at most. Default 10 000. */
  maxBufferedRecords?: number
  /** Bytes of serialized records accepted but not yet on disk, at most. Default 8 MiB. */
  maxBufferedBytes?: number
  /** Called with every batch written and every record dropped; must not throw (a throw is swallowed). */
  onResult?: (result: RecordResult, count: number) => void
  /** Called with errors serializing, opening, writing or rotating; the records affected are counted as dropped. */
  onError?: (err: unknown) => void
}

export interface RecordWriterStats {
  /** Records on disk (handed to the OS) since the writer was created. */
  written: number
  /** Records refused: buffer full, not serializable, I/O error, or written after close(). */
  dropped: number
  /** Records accepted and not yet written, including the batch being written. */
  buffered: number
  /** Bytes of those buffered records. */
  bufferedBytes: number
}

const DEFAULT_MAX_BUFFERED_RECORDS = 10_000
const DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024
const NEWLINE = 0x0a

function checkCount (name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`RecordWriter: ${name} must be an integer >= ${min}, got ${String(value)}`)
  }
  return value
}

/**
 * Appends records as JSON lines to a size-rotated file through a bounded buffer.
 *
 * `write()` is synchronous and never throws: it serializes the record, and either queues the
 * line or, when the buffer is full or the writer closed, drops and counts it. A flush loop
 * takes everything queued, writes it with one `write` per file it lands in, and repeats while
 * there is data. Buffered counts include the batch in flight, so memory stays within the bounds
 * however slow the disk is.
 *
 * @example
 * const writer = new RecordWriter({ path: 'data/predictions.jsonl', max_bytes: 64 << 20, keep: 5 })
 * writer.write({ request_id, primary, shadow })
 * await writer.close()
 */
export class RecordWriter {
  readonly #path: string
  readonly #maxBytes: number
  readonly #keep: number
  readonly #maxRecords: number
  readonly #maxBufferedBytes: number
  readonly #onResult: ((result: RecordResult, count: number) => void) | undefined
  readonly #onError: ((err: unknown) => void) | undefined

  // Lines waiting for the next batch, with their UTF-8 sizes; swapped out whole by the flush loop.
  #lines: string[] = []
  #sizes: number[] = []
  // Accepted and not yet written: queued plus in flight.
  #pendingRecords = 0
  #pendingBytes = 0

  #written = 0
  #dropped = 0
  // Records ever queued, and how many of those are settled (written or dropped): flush() waits on these.
  #accepted = 0
  #settled = 0
  #waiters: Array<{ target: number, resolve: () => void }> = []
  #isClosed = false
  #closing: Promise<void> | undefined
  #draining: Promise<void> | undefined

  #fh: FileHandle | undefined
  #fileSize = 0
  // The file ends in a partial line (a crash, or a failed write): start the next write with '\n'
  // so the new records are not glued onto it.
  #needsNewline = false

  constructor (opts: RecordWriterOptions) {
    if (typeof opts.path !== 'string' || opts.path === '') {
      throw new TypeError('RecordWriter: path must be a non-empty string, e.g. "data/predictions.jsonl"')
    }
    this.#path = resolve(opts.path)
    this.#maxBytes = checkCount('max_bytes', opts.max_bytes, 1)
    this.#keep = checkCount('keep', opts.keep, 0)
    this.#maxRecords = checkCount('maxBufferedRecords', opts.maxBufferedRecords ?? DEFAULT_MAX_BUFFERED_RECORDS, 1)
    this.#maxBufferedBytes = checkCount('maxBufferedBytes', opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES, 1)
    this.#onResult = opts.onResult
    this.#onError = opts.onError
  }

  /** The absolute path of the current file. */
  get path (): string {
    return this.#path
  }

  /** Queues one record as a JSON line; never blocks, never throws. Returns whether it was accepted. */
  write (record: object): boolean {
    if (this.#isClosed) return this.#drop(1)
    let json: string | undefined
    try {
      // Serialize now: the caller may mutate or reuse the object as soon as we return.
      json = JSON.stringify(record)
    } catch (err) {
      this.#reportError(err)
      return this.#drop(1)
    }
    if (json === undefined) {
      this.#reportError(new TypeError(`RecordWriter: record is not serializable as JSON (${typeof record})`))
      return this.#drop(1)
    }
    const line = json + '\n'
    const size = Buffer.byteLength(line)
    if (this.#pendingRecords >= this.#maxRecords || this.#pendingBytes + size > this.#maxBufferedBytes) {
      return this.#drop(1)
    }
    this.#lines.push(line)
    this.#sizes.push(size)
    this.#pendingRecords++
    this.#pendingBytes += size
    this.#accepted++
    if (this.#draining === undefined) this.#draining = this.#startDrain()
    return true
  }

  /** Resolves when every record accepted before the call is written (or dropped on an I/O error). */
  flush (): Promise<void> {
    // Wait for a count, not for an idle loop: under steady load the loop may never go idle.
    const target = this.#accepted
    if (this.#settled >= target) return Promise.resolve()
    return new Promise((resolve) => { this.#waiters.push({ target, resolve }) })
  }

  /** Stops accepting records, writes everything buffered and closes the file. Never rejects; safe to call twice. */
  close (): Promise<void> {
    this.#isClosed = true
    this.#closing ??= this.#finish()
    return this.#closing
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

  async #finish (): Promise<void> {
    await this.flush()
    const fh = this.#fh
    this.#fh = undefined
    if (fh === undefined) return
    try {
      // Graceful shutdown: make the tail durable, not just handed to the page cache.
      await fh.datasync()
    } catch (err) {
      this.#reportError(err)
    }
    try {
      await fh.close()
    } catch (err) {
      this.#reportError(err)
    }
  }

  async #startDrain (): Promise<void> {
    // Yield first, so a burst of synchronous writes becomes one batch.
    await Promise.resolve()
    try {
      while (this.#lines.length > 0) {
        const lines = this.#lines
        const sizes = this.#sizes
        this.#lines = []
        this.#sizes = []
        await this.#writeBatch(lines, sizes)
      }
    } catch (err) {
      this.#reportError(err)
    } finally {
      this.#draining = undefined
    }
  }

  /** Writes one batch, one fs write per file it lands in; accounts for every line in it. */
  async #writeBatch (lines: string[], sizes: number[]): Promise<void> {
    let start = 0
    try {
      if (this.#fh === undefined) await this.#openFile()
      let chunkBytes = 0
      let canRotate = true
      for (let i = 0; i < lines.length; i++) {
        const size = sizes[i] ?? 0
        const used = this.#fileSize + chunkBytes
        // Rotate between lines, never inside one; an empty file takes any line, however long.
        if (canRotate && used > 0 && used + size > this.#maxBytes) {
          if (i > start) await this.#writeChunk(lines, sizes, start, i, chunkBytes)
          start = i
          chunkBytes = 0
          // After a failed rotation, don't retry it for every remaining line of the batch.
          canRotate = await this.#rotate()
        }
        chunkBytes += size
      }
      if (lines.length > start) await this.#writeChunk(lines, sizes, start, lines.length, chunkBytes)
      start = lines.length
    } catch (err) {
      this.#reportError(err)
      let bytes = 0
      for (let i = start; i < lines.length; i++) bytes += sizes[i] ?? 0
      this.#release(lines.length - start, bytes)
      this.#drop(lines.length - start)
    }
  }

  async #writeChunk (lines: string[], sizes: number[], from: number, to: number, bytes: number): Promise<void> {
    const fh = this.#fh
    if (fh === undefined) throw new Error('RecordWriter: file is not open')
    const text = (this.#needsNewline ? '\n' : '') + (from === 0 && to === lines.length ? lines.join('') : lines.slice(from, to).join(''))
    const buf = Buffer.from(text)
    let offset = 0
    try {
      // A regular-file write is normally whole; loop in case the OS takes only part of it.
      while (offset < buf.length) {
        const { bytesWritten } = await fh.write(buf, offset, buf.length - offset)
        offset += bytesWritten
      }
    } catch (err) {
      // A partial line may now end the file: terminate it before the next batch, and reopen.
      if (offset > 0) this.#needsNewline = true
      this.#fileSize += offset
      this.#fh = undefined
      fh.close().catch(() => {})
      throw err
    }
    this.#needsNewline = false
    this.#fileSize += buf.length
    this.#release(to - from, bytes)
    this.#written += to - from
    this.#emit('written', to - from)
  }

  async #openFile (): Promise<void> {
    await mkdir(dirname(this.#path), { recursive: true })
    const fh = await open(this.#path, 'a+')
    try {
      const { size } = await fh.stat()
      this.#fileSize = size
      this.#needsNewline = false
      if (size > 0) {
        // A crash may have left a partial last line: don't glue our first record onto it.
        const last = Buffer.alloc(1)
        await fh.read(last, 0, 1, size - 1)
        this.#needsNewline = last[0] !== NEWLINE
      }
    } catch (err) {
      await fh.close().catch(() => {})
      throw err
    }
    this.#fh = fh
  }

  /** Closes, shifts the generations and reopens; false if the shift failed (we then keep appending). */
  async #rotate (): Promise<boolean> {
    const fh = this.#fh
    this.#fh = undefined
    if (fh !== undefined) await fh.close()
    let isRotated = true
    try {
      await rotateFiles(this.#path, this.#keep)
    } catch (err) {
      // An oversized file beats lost records: report, and go on appending to whatever is at `path`.
      this.#reportError(err)
      isRotated = false
    }
    await this.#openFile()
    return isRotated
  }

  #release (records: number, bytes: number): void {
    this.#pendingRecords -= records
    this.#pendingBytes -= bytes
    this.#settled += records
    // Waiters are queued in target order, so only the front ones can be due.
    for (let w = this.#waiters[0]; w !== undefined && w.target <= this.#settled; w = this.#waiters[0]) {
      this.#waiters.shift()
      w.resolve()
    }
  }

  #drop (count: number): false {
    this.#dropped += count
    this.#emit('dropped', count)
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

  #reportError (err: unknown): void {
    if (this.#onError === undefined) return
    try {
      this.#onError(err)
    } catch {
      // Same: the error sink must not break recording.
    }
  }
}
