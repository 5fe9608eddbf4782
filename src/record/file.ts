import { fstatSync, statSync } from 'node:fs'
import { mkdir, open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { assertNotKernelFileSystem } from '../config/sink.js'
import { rotateFiles } from './files.js'

/**
 * Why the file was reopened: nothing at the path any more (deleted, or renamed away by logrotate),
 * another file at the path (rotated and recreated), our file deleted while a batch was written to
 * it, or `reopen()` (SIGHUP).
 */
export type ReopenReason = 'missing' | 'replaced' | 'deleted' | 'requested'

/** What one append did: bytes on disk (of the text given, after any leading newline), and the error that stopped it. */
export interface AppendResult {
  readonly written: number
  readonly error?: unknown
}

const NEWLINE = 0x0a
const NEWLINE_BYTES = Buffer.from([NEWLINE])

function isNotFound (err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT'
}

/**
 * The open record file, followed by name: appends whole text, rotates by size, and notices (one
 * stat of the path per check) when the path no longer names the open file, reopening it then and
 * creating the directory again if it is gone. Not safe for concurrent calls: one loop drives it.
 *
 * The checks before and after each write (stat of the path, fstat of the file) are synchronous:
 * metadata the kernel holds in memory, answered in a few microseconds, where a trip through the
 * thread pool cost about 100 µs of CPU each on a loaded 2-core machine (futex, eventfd and epoll
 * wake-ups around it), two of the three trips each batch of records paid (issue 22). The write
 * itself stays asynchronous: a write can wait on the disk, a stat of an open file's inode does not.
 */
export class RecordFile {
  readonly #path: string
  readonly #maxBytes: number
  readonly #keep: number
  readonly #onReopen: (reason: ReopenReason) => void
  readonly #onError: (err: unknown) => void
  #fh: FileHandle | undefined
  // Identity of the open file, to notice when the path names another file (or none).
  #ino = 0
  #dev = 0
  #size = 0
  // The file ends in a partial line (a crash, or a failed write): start the next write with '\n'
  // so the new records are not glued onto it.
  #needsNewline = false

  constructor (path: string, maxBytes: number, keep: number, onReopen: (reason: ReopenReason) => void, onError: (err: unknown) => void) {
    this.#path = path
    this.#maxBytes = maxBytes
    this.#keep = keep
    this.#onReopen = onReopen
    this.#onError = onError
  }

  get isOpen (): boolean {
    return this.#fh !== undefined
  }

  /** Bytes more the file can take before it is due for rotation (negative past it). */
  room (): number {
    return this.#maxBytes - this.#size
  }

  get isEmpty (): boolean {
    return this.#size === 0
  }

  /** Opens the file if closed; if open, checks the path still names it, and reopens if not. */
  async ensure (): Promise<void> {
    if (this.#fh === undefined) {
      await this.#open()
      return
    }
    let s
    try {
      s = statSync(this.#path)
    } catch (err) {
      if (!isNotFound(err)) throw err
      await this.reopen('missing')
      return
    }
    if (s.ino !== this.#ino || s.dev !== this.#dev) {
      await this.reopen('replaced')
      return
    }
    // Truncated in place (logrotate copytruncate): appends still land at the end, but rotation
    // must count from the new size.
    if (s.size < this.#size) this.#size = s.size
  }

  /** Closes the file and opens the path again, counting why. */
  async reopen (reason: ReopenReason): Promise<void> {
    this.forget()
    this.#onReopen(reason)
    await this.#open()
  }

  /**
   * Appends `text` (whole lines) to the open file. A failure closes the handle and says how many
   * bytes of `text` made it, so the caller can tell which lines are on disk.
   */
  async append (text: string | Buffer): Promise<AppendResult> {
    const fh = this.#fh
    if (fh === undefined) return { written: 0, error: new Error('RecordFile: the file is not open') }
    const prefix = this.#needsNewline ? 1 : 0
    const buf = typeof text === 'string' ? Buffer.from(prefix === 1 ? '\n' + text : text) : prefix === 1 ? Buffer.concat([NEWLINE_BYTES, text]) : text
    let offset = 0
    try {
      // A regular-file write is normally whole; loop in case the OS takes only part of it.
      while (offset < buf.length) {
        const { bytesWritten } = await fh.write(buf, offset, buf.length - offset)
        offset += bytesWritten
      }
    } catch (error) {
      // The next open sees any partial line and starts on a fresh one.
      this.forget()
      return { written: Math.max(0, offset - prefix), error }
    }
    this.#needsNewline = false
    this.#size += buf.length
    return { written: buf.length - prefix }
  }

  /** Whether the open file has lost its last name (deleted while we wrote to it). */
  async isUnlinked (): Promise<boolean> {
    try {
      return this.#fh !== undefined && fstatSync(this.#fh.fd).nlink === 0
    } catch {
      return false
    }
  }

  /** Closes, shifts the generations and reopens; false if the shift failed (we then keep appending). */
  async rotate (): Promise<boolean> {
    const fh = this.#fh
    this.#fh = undefined
    if (fh !== undefined) await fh.close()
    let isRotated = true
    try {
      await rotateFiles(this.#path, this.#keep)
    } catch (err) {
      // An oversized file beats lost records: report, and go on appending to whatever is at `path`.
      this.#onError(err)
      isRotated = false
    }
    await this.#open()
    return isRotated
  }

  /** Drops the handle without waiting (after a failure, or to reopen). */
  forget (): void {
    const fh = this.#fh
    this.#fh = undefined
    fh?.close().catch(() => {})
  }

  /** Makes the tail durable and closes the file. Never rejects; errors go to onError. */
  async close (): Promise<void> {
    const fh = this.#fh
    this.#fh = undefined
    if (fh === undefined) return
    try {
      // Graceful shutdown: make the tail durable, not just handed to the page cache.
      await fh.datasync()
    } catch (err) {
      this.#onError(err)
    }
    try {
      await fh.close()
    } catch (err) {
      this.#onError(err)
    }
  }

  async #open (): Promise<void> {
    // Checked before mkdir, which never returns for a missing directory under /proc (Node 20).
    assertNotKernelFileSystem(dirname(this.#path))
    await mkdir(dirname(this.#path), { recursive: true })
    const fh = await open(this.#path, 'a+')
    try {
      const s = await fh.stat()
      this.#ino = s.ino
      this.#dev = s.dev
      this.#size = s.size
      this.#needsNewline = false
      if (s.size > 0) {
        // A crash may have left a partial last line: don't glue our first record onto it.
        const last = Buffer.alloc(1)
        await fh.read(last, 0, 1, s.size - 1)
        this.#needsNewline = last[0] !== NEWLINE
      }
    } catch (err) {
      await fh.close().catch(() => {})
      throw err
    }
    this.#fh = fh
  }
}
