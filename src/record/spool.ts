import { mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { assertNotKernelFileSystem } from '../config/sink.js'
import type { Envelope } from './envelope.js'

/**
 * Records waiting on disk for a sink that is down or slow: a directory of segment files read
 * first to last, each line one envelope (`id TAB type TAB key-as-JSON TAB time TAB record-JSON`).
 * Appends go to the last segment, reads come from the first; a segment is deleted once every line
 * of it is acknowledged, and how far the first one is acknowledged is kept in `ack`, so a restart
 * resends at most the batch that was in flight. A line cut short by a crash is skipped and counted.
 * One process owns a directory at a time (`lock` holds its pid).
 */
export interface SpoolStats {
  /** Bytes of lines not yet acknowledged. */
  readonly bytes: number
  /** Segment files on disk. */
  readonly segments: number
}

interface Segment {
  readonly seq: number
  readonly path: string
  size: number
  /** Bytes from the start acknowledged (only ever non-zero on the first segment). */
  acked: number
}

/** A read batch: the envelopes and, per envelope, the segment offset just past its line. */
export interface SpoolRead {
  readonly envelopes: Envelope[]
  readonly ends: number[]
  readonly seq: number
}

const SUFFIX = '.spool'
// Segment names sort in read order; starting high leaves room to put a batch in front (prepend).
const FIRST_SEQ = 1_000_000_000_000
const TAB = 0x09
const NEWLINE = 0x0a

/** A spool directory already held by a live process (this one's other sink, or another router). */
export class SpoolLockedError extends Error {
  override readonly name = 'SpoolLockedError'
  constructor(readonly dir: string, readonly pid: number) {
    super(`spool ${dir} is in use by process ${pid}; give each router its own recording.spool.path`)
  }
}

// Directories held by sinks of this process: a reload's new sink waits until the old one let go.
const heldHere = new Set<string>()

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function segName(seq: number): string {
  return String(seq).padStart(16, '0') + SUFFIX
}

/** The spool line of an envelope. Tabs and newlines cannot occur in any field: JSON escapes them. */
function lineOf(e: Envelope): string {
  return `${e.id}\t${e.type}\t${JSON.stringify(e.key)}\t${e.time}\t${e.value}\n`
}

function parseLine(buf: Buffer, start: number, end: number): Envelope | undefined {
  const t1 = buf.indexOf(TAB, start)
  const t2 = t1 < 0 || t1 >= end ? -1 : buf.indexOf(TAB, t1 + 1)
  const t3 = t2 < 0 || t2 >= end ? -1 : buf.indexOf(TAB, t2 + 1)
  const t4 = t3 < 0 || t3 >= end ? -1 : buf.indexOf(TAB, t3 + 1)
  if (t4 < 0 || t4 >= end) return undefined
  let key: unknown
  try {
    key = JSON.parse(buf.toString('utf8', t2 + 1, t3))
  } catch {
    return undefined
  }
  if (key !== null && typeof key !== 'string') return undefined
  const value = buf.toString('utf8', t4 + 1, end)
  if (!value.startsWith('{') || !value.endsWith('}')) return undefined
  return { id: buf.toString('utf8', start, t1), type: buf.toString('utf8', t1 + 1, t2), key, time: buf.toString('utf8', t3 + 1, t4), value, bytes: end - start + 1 }
}

export class Spool {
  readonly #dir: string
  readonly #segmentBytes: number
  readonly #onCorrupt: (lines: number) => void
  #segments: Segment[] = []
  #pending = 0
  #tail: { seg: Segment; fh: FileHandle } | undefined
  #reader: { seq: number; fh: FileHandle } | undefined
  // Appends and prepends run one at a time, in call order.
  #writes: Promise<unknown> = Promise.resolve()
  #checkpoint: Promise<unknown> = Promise.resolve()
  #isClosed = false

  private constructor(dir: string, segmentBytes: number, onCorrupt: (lines: number) => void) {
    this.#dir = dir
    this.#segmentBytes = segmentBytes
    this.#onCorrupt = onCorrupt
  }

  /**
   * Opens (creating) the spool directory and takes its lock. Throws SpoolLockedError while a live
   * process holds it (or a sink of this process: call again once that one is closed).
   */
  static async open(dir: string, opts: { segmentBytes: number; onCorrupt?: (lines: number) => void }): Promise<Spool> {
    if (heldHere.has(dir)) throw new SpoolLockedError(dir, process.pid)
    // Checked before mkdir, which never returns for a missing directory under /proc (Node 20).
    assertNotKernelFileSystem(dir)
    await mkdir(dir, { recursive: true })
    const lock = join(dir, 'lock')
    heldHere.add(dir)
    try {
      try {
        await writeFile(lock, `${process.pid}\n`, { flag: 'wx' })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const pid = Number((await readFile(lock, 'utf8').catch(() => '')).trim())
        // A pid that is ours is a lock left by an earlier life of this pid number, not a holder.
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) throw new SpoolLockedError(dir, pid)
        await writeFile(lock, `${process.pid}\n`)
      }
      const spool = new Spool(dir, opts.segmentBytes, opts.onCorrupt ?? (() => {}))
      await spool.#load()
      return spool
    } catch (err) {
      heldHere.delete(dir)
      throw err
    }
  }

  get stats(): SpoolStats {
    return { bytes: this.#pending, segments: this.#segments.length }
  }

  /** Bytes of records not yet acknowledged. */
  get bytes(): number {
    return this.#pending
  }

  get isEmpty(): boolean {
    return this.#pending === 0
  }

  async #load(): Promise<void> {
    const names = (await readdir(this.#dir)).filter((n) => /^[0-9]{16}\.spool$/.test(n)).sort()
    for (const name of names) {
      const path = join(this.#dir, name)
      const size = (await stat(path)).size
      this.#segments.push({ seq: Number(name.slice(0, 16)), path, size, acked: 0 })
    }
    const ack = await readFile(join(this.#dir, 'ack'), 'utf8').catch(() => '')
    const m = /^([0-9]+) ([0-9]+)/.exec(ack)
    if (m !== null) {
      const seg = this.#segments.find((s) => s.seq === Number(m[1]))
      if (seg !== undefined) seg.acked = Math.min(seg.size, Number(m[2]))
    }
    for (const s of this.#segments) this.#pending += s.size - s.acked
    // Fully acknowledged leftovers (a crash between the checkpoint and the unlink) go now.
    while (this.#segments[0] !== undefined && this.#segments[0].acked >= this.#segments[0].size) {
      const s = this.#segments.shift() as Segment
      await unlink(s.path).catch(() => {})
    }
  }

  /** Appends envelopes after everything spooled. Rejects on an I/O error; whole lines written before it stay. */
  append(envelopes: readonly Envelope[]): Promise<void> {
    const run = this.#writes.then(() => this.#append(envelopes))
    this.#writes = run.catch(() => {})
    return run
  }

  /** Puts envelopes in front of everything spooled (a batch that failed after later records were spooled). */
  prepend(envelopes: readonly Envelope[]): Promise<void> {
    const run = this.#writes.then(() => this.#prepend(envelopes))
    this.#writes = run.catch(() => {})
    return run
  }

  async #append(envelopes: readonly Envelope[]): Promise<void> {
    if (envelopes.length === 0) return
    if (this.#isClosed) throw new Error('the spool is closed')
    let tail = this.#tail
    // A tail that is all acknowledged (the sink caught up) is dropped rather than grown forever.
    if (tail !== undefined && (tail.seg.size >= this.#segmentBytes || (this.#segments.length === 1 && tail.seg.acked >= tail.seg.size))) {
      await this.#closeTail()
      tail = undefined
    }
    if (tail === undefined) {
      const last = this.#segments[this.#segments.length - 1]
      const seq = last === undefined ? FIRST_SEQ : last.seq + 1
      const seg: Segment = { seq, path: join(this.#dir, segName(seq)), size: 0, acked: 0 }
      const fh = await open(seg.path, 'a')
      this.#segments.push(seg)
      tail = this.#tail = { seg, fh }
    }
    const buf = Buffer.from(envelopes.map(lineOf).join(''))
    let offset = 0
    try {
      while (offset < buf.length) {
        const { bytesWritten } = await tail.fh.write(buf, offset, buf.length - offset)
        offset += bytesWritten
      }
    } catch (err) {
      // Keep only whole lines: cut the file back to its last newline and start a new segment next time.
      const whole = buf.lastIndexOf(NEWLINE, offset - 1) + 1
      await tail.fh.truncate(tail.seg.size + whole).catch(() => {})
      tail.seg.size += whole
      this.#pending += whole
      await this.#closeTail()
      throw err
    }
    tail.seg.size += buf.length
    this.#pending += buf.length
  }

  async #prepend(envelopes: readonly Envelope[]): Promise<void> {
    if (envelopes.length === 0) return
    const first = this.#segments[0]
    if (first === undefined) return this.#append(envelopes)
    if (this.#isClosed) throw new Error('the spool is closed')
    const seq = first.seq - 1
    const path = join(this.#dir, segName(seq))
    const buf = Buffer.from(envelopes.map(lineOf).join(''))
    // Written aside and renamed, so a crash never leaves half a batch in front of the rest.
    await writeFile(path + '.tmp', buf)
    await rename(path + '.tmp', path)
    this.#segments.unshift({ seq, path, size: buf.length, acked: 0 })
    this.#pending += buf.length
  }

  async #closeTail(): Promise<void> {
    const tail = this.#tail
    if (tail === undefined) return
    this.#tail = undefined
    await tail.fh.close().catch(() => {})
    if (tail.seg.acked >= tail.seg.size) await this.#remove(tail.seg)
  }

  async #remove(seg: Segment): Promise<void> {
    const i = this.#segments.indexOf(seg)
    if (i >= 0) this.#segments.splice(i, 1)
    if (this.#reader?.seq === seg.seq) {
      const r = this.#reader
      this.#reader = undefined
      await r.fh.close().catch(() => {})
    }
    await unlink(seg.path).catch(() => {})
  }

  /**
   * Reads envelopes from the front, up to `maxBytes` (at least one) and `maxCount`, without
   * consuming them: ack() does that. One reader at a time.
   */
  async read(maxBytes: number, maxCount: number): Promise<SpoolRead | undefined> {
    for (;;) {
      const seg = this.#segments[0]
      if (seg === undefined || this.#isClosed) return undefined
      if (seg.acked >= seg.size) {
        // Done with it; the tail stays until the next append replaces it.
        if (this.#tail?.seg === seg) return undefined
        await this.#remove(seg)
        continue
      }
      if (this.#reader?.seq !== seg.seq) {
        await this.#reader?.fh.close().catch(() => {})
        this.#reader = { seq: seg.seq, fh: await open(seg.path, 'r') }
      }
      const fh = this.#reader.fh
      const available = seg.size - seg.acked
      let want = Math.min(available, Math.max(maxBytes, 64 * 1024))
      let buf = Buffer.allocUnsafe(want)
      let got = (await fh.read(buf, 0, want, seg.acked)).bytesRead
      // One line longer than the read: read on until it ends (or the segment does).
      while (buf.lastIndexOf(NEWLINE, got - 1) < 0 && got < available) {
        want = Math.min(available, want * 2)
        const bigger = Buffer.allocUnsafe(want)
        buf.copy(bigger, 0, 0, got)
        buf = bigger
        got += (await fh.read(buf, got, want - got, seg.acked + got)).bytesRead
      }
      const envelopes: Envelope[] = []
      const ends: number[] = []
      let bytes = 0
      let start = 0
      let corrupt = 0
      for (let nl = buf.indexOf(NEWLINE, 0); nl >= 0 && nl < got; nl = buf.indexOf(NEWLINE, start)) {
        if (envelopes.length > 0 && (bytes + nl + 1 - start > maxBytes || envelopes.length >= maxCount)) break
        const e = parseLine(buf, start, nl)
        if (e === undefined) {
          corrupt++
        } else {
          envelopes.push(e)
          bytes += e.bytes
        }
        start = nl + 1
        // Lines skipped count as read: the next envelope's end, or the ack of this batch, passes them.
        if (e !== undefined) ends.push(seg.acked + start)
      }
      if (corrupt > 0) this.#onCorrupt(corrupt)
      // Acknowledging the last envelope passes the lines skipped after it too.
      if (ends.length > 0) ends[ends.length - 1] = seg.acked + start
      if (envelopes.length === 0) {
        const isTail = this.#tail?.seg === seg
        // Nothing whole: past skipped lines, or a cut-short last line of a segment nobody appends to.
        const skip = start > 0 ? start : isTail ? 0 : got
        if (skip === 0) return undefined
        if (start === 0) this.#onCorrupt(1)
        this.#advance(seg, skip)
        continue
      }
      return { envelopes, ends, seq: seg.seq }
    }
  }

  /** Consumes the first `count` envelopes of `read` (all when omitted). */
  async ack(read: SpoolRead, count = read.envelopes.length): Promise<void> {
    if (count <= 0 || this.#isClosed) return
    const seg = this.#segments[0]
    if (seg === undefined || seg.seq !== read.seq) return
    const end = read.ends[count - 1] ?? seg.acked
    this.#advance(seg, end - seg.acked)
    if (seg.acked >= seg.size && this.#tail?.seg !== seg) await this.#remove(seg)
    const next = this.#segments[0]
    const mark = next === undefined ? '' : `${next.seq} ${next.acked}\n`
    const path = join(this.#dir, 'ack')
    this.#checkpoint = this.#checkpoint.then(() => writeFile(path, mark)).catch(() => {})
    await this.#checkpoint
  }

  #advance(seg: Segment, bytes: number): void {
    seg.acked += bytes
    this.#pending -= bytes
  }

  /** Closes the files and lets go of the directory. Records stay for the next open. */
  async close(): Promise<void> {
    if (this.#isClosed) return
    await this.#writes
    this.#isClosed = true
    await this.#checkpoint
    const tail = this.#tail
    this.#tail = undefined
    if (tail !== undefined) {
      await tail.fh.datasync().catch(() => {})
      await tail.fh.close().catch(() => {})
      if (tail.seg.acked >= tail.seg.size) await unlink(tail.seg.path).catch(() => {})
    }
    await this.#reader?.fh.close().catch(() => {})
    this.#reader = undefined
    await unlink(join(this.#dir, 'lock')).catch(() => {})
    heldHere.delete(this.#dir)
  }
}
