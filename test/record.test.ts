import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MAX_OUTCOME_VALUE, RecordWriter, SCHEMA_VERSION, asOutcomeRecord, asPredictionRecord, readRecords, recordFiles } from '../src/record/index.js'
import type { DropWarning, RecordResult, RecordWriterOptions, ReopenReason, SkippedLine } from '../src/record/index.js'

const PARTIAL_FIXTURE = fileURLToPath(new URL('./fixtures/record-partial.jsonl', import.meta.url))

let dir: string
let base: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-record-'))
  base = join(dir, 'nested', 'predictions.jsonl')
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A writer whose onResult/onError calls are tallied. */
function makeWriter (opts: Partial<RecordWriterOptions> = {}) {
  const results: Record<RecordResult, number> = { written: 0, dropped: 0 }
  const errors: unknown[] = []
  const writer = new RecordWriter({
    path: base,
    max_bytes: 1024 * 1024,
    keep: 3,
    onResult: (result, count) => { results[result] += count },
    onError: (err) => { errors.push(err) },
    ...opts
  })
  return { writer, results, errors }
}

async function collect (paths: string[] | string): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = []
  for await (const record of readRecords(paths)) out.push(record)
  return out
}

async function lineCount (path: string): Promise<number> {
  const text = await readFile(path, 'utf8')
  expect(text === '' || text.endsWith('\n')).toBe(true)
  return text === '' ? 0 : text.split('\n').length - 1
}

function prediction (seq: number) {
  return { seq, kind: 'prediction', user: `u${seq % 97}`, primary: { model: 'a', score: seq / 1000 }, shadow: { model: 'b', score: seq / 999 } }
}

describe('RecordWriter', () => {
  it('writes every record as one JSON line, readable back in order', async () => {
    const { writer, results, errors } = makeWriter()
    const sent = Array.from({ length: 250 }, (_, i) => prediction(i))
    for (const r of sent) expect(writer.write(r)).toBe(true)
    await writer.close()

    expect(await collect(base)).toEqual(sent)
    expect(await lineCount(base)).toBe(250)
    expect(writer.stats()).toEqual({ written: 250, dropped: 0, buffered: 0, bufferedBytes: 0 })
    expect(results).toEqual({ written: 250, dropped: 0 })
    expect(errors).toEqual([])
  })

  it('serializes at write time, so later mutation does not change the record', async () => {
    const { writer } = makeWriter()
    const record = { seq: 1, label: 'before' }
    writer.write(record)
    record.label = 'after'
    await writer.close()
    expect(await collect(base)).toEqual([{ seq: 1, label: 'before' }])
  })

  it('close() writes thousands of buffered records and loses none', async () => {
    const { writer, results } = makeWriter({ maxBufferedRecords: 20_000 })
    for (let i = 0; i < 5000; i++) writer.write(prediction(i))
    expect(writer.stats().buffered).toBe(5000)
    await writer.close()

    expect(writer.stats()).toMatchObject({ written: 5000, dropped: 0, buffered: 0 })
    expect(results.written).toBe(5000)
    const read = await collect(base)
    expect(read.map((r) => r.seq)).toEqual(Array.from({ length: 5000 }, (_, i) => i))
  })

  it('flush() resolves once earlier records are on disk, and the writer stays open', async () => {
    const { writer } = makeWriter()
    writer.write(prediction(0))
    writer.write(prediction(1))
    await writer.flush()
    expect(writer.stats()).toMatchObject({ written: 2, buffered: 0 })
    expect(await lineCount(base)).toBe(2)

    writer.write(prediction(2))
    await writer.flush()
    expect(await lineCount(base)).toBe(3)
    await writer.flush() // nothing pending: resolves at once
    await writer.close()
  })

  it('appends to an existing file across writer instances', async () => {
    const first = makeWriter().writer
    first.write(prediction(0))
    await first.close()
    const second = makeWriter().writer
    second.write(prediction(1))
    await second.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual([0, 1])
  })

  it('after a crash left a partial line, new records start on a fresh line', async () => {
    await mkdir(join(dir, 'nested'))
    await copyFile(PARTIAL_FIXTURE, base)
    const { writer } = makeWriter()
    writer.write({ seq: 3 })
    writer.write({ seq: 4 })
    await writer.close()

    const reader = readRecords(base)
    const seqs: unknown[] = []
    for await (const r of reader) seqs.push(r.seq)
    expect(seqs).toEqual([0, 1, 3, 4])
    expect(reader.skipped).toBe(1)
  })
})

describe('RecordWriter rotation', () => {
  it('rotates by size without splitting or losing a line', async () => {
    const maxBytes = 2048
    const { writer } = makeWriter({ max_bytes: maxBytes, keep: 100 })
    const total = 1000
    for (let i = 0; i < total; i++) writer.write(prediction(i))
    await writer.close()

    const files = await recordFiles(base)
    expect(files.length).toBeGreaterThan(10)
    expect(files.at(-1)).toBe(base)
    let lines = 0
    for (const f of files) {
      expect((await stat(f)).size).toBeLessThanOrEqual(maxBytes)
      lines += await lineCount(f)
    }
    expect(lines).toBe(total)
    expect(writer.stats().written).toBe(total)

    const reader = readRecords(files)
    const seqs: unknown[] = []
    for await (const r of reader) seqs.push(r.seq)
    expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(reader.skipped).toBe(0)
  })

  it('rotates across many small batches as well as one big one', async () => {
    const { writer } = makeWriter({ max_bytes: 1000, keep: 1000 })
    for (let i = 0; i < 300; i++) {
      writer.write(prediction(i))
      if (i % 7 === 0) await writer.flush()
    }
    await writer.close()
    const files = await recordFiles(base)
    for (const f of files) expect((await stat(f)).size).toBeLessThanOrEqual(1000)
    expect((await collect(files)).map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i))
  })

  it('keeps exactly `keep` rotated files and deletes older ones', async () => {
    await mkdir(join(dir, 'nested'))
    // Left over from an earlier run with a larger `keep`.
    await writeFile(`${base}.7`, '{"stale":true}\n')
    const { writer } = makeWriter({ max_bytes: 1024, keep: 3 })
    const total = 500
    for (let i = 0; i < total; i++) writer.write(prediction(i))
    await writer.close()

    const files = await recordFiles(base)
    expect(files).toEqual([`${base}.3`, `${base}.2`, `${base}.1`, base])
    const names = (await readdir(join(dir, 'nested'))).sort()
    expect(names).toEqual(['predictions.jsonl', 'predictions.jsonl.1', 'predictions.jsonl.2', 'predictions.jsonl.3'])

    // What is left is the newest records, contiguous, ending with the last one written.
    const seqs = (await collect(files)).map((r) => r.seq as number)
    expect(seqs.at(-1)).toBe(total - 1)
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => total - seqs.length + i))
  })

  it('keep: 0 keeps no rotated file', async () => {
    const { writer } = makeWriter({ max_bytes: 512, keep: 0 })
    for (let i = 0; i < 100; i++) writer.write(prediction(i))
    await writer.close()
    expect(await recordFiles(base)).toEqual([base])
    expect((await collect(base)).at(-1)?.seq).toBe(99)
  })

  it('gives a line longer than max_bytes a file of its own, whole', async () => {
    const { writer } = makeWriter({ max_bytes: 100, keep: 10 })
    writer.write({ seq: 0 })
    writer.write({ seq: 1, blob: 'x'.repeat(500) })
    writer.write({ seq: 2 })
    await writer.close()
    const files = await recordFiles(base)
    expect(files).toEqual([`${base}.2`, `${base}.1`, base])
    expect(await lineCount(`${base}.1`)).toBe(1)
    expect((await collect(files)).map((r) => r.seq)).toEqual([0, 1, 2])
  })
})

describe('RecordWriter buffer bound', () => {
  it('drops and counts records when the disk cannot keep up, with memory bounded', async () => {
    const { writer, results } = makeWriter({ maxBufferedRecords: 100 })
    const total = 10_000
    let maxBuffered = 0
    // A synchronous burst: the flush loop gets no turn until it ends, as with a disk that can't keep up.
    for (let i = 0; i < total; i++) {
      writer.write(prediction(i))
      maxBuffered = Math.max(maxBuffered, writer.stats().buffered)
    }
    expect(maxBuffered).toBe(100)
    expect(writer.stats().dropped).toBe(total - 100)
    await writer.close()

    const { written, dropped, buffered } = writer.stats()
    expect(written + dropped).toBe(total)
    expect(dropped).toBeGreaterThan(0)
    expect(buffered).toBe(0)
    expect(results).toEqual({ written, dropped })
    // The records kept are the ones accepted first, all on disk.
    expect((await collect(base)).map((r) => r.seq)).toEqual(Array.from({ length: written }, (_, i) => i))
  })

  it('bounds buffered bytes too', async () => {
    const maxBufferedBytes = 4096
    const { writer } = makeWriter({ maxBufferedBytes })
    const total = 2000
    let maxBytes = 0
    for (let i = 0; i < total; i++) {
      writer.write(prediction(i))
      maxBytes = Math.max(maxBytes, writer.stats().bufferedBytes)
    }
    expect(maxBytes).toBeLessThanOrEqual(maxBufferedBytes)
    await writer.close()
    const { written, dropped } = writer.stats()
    expect(written + dropped).toBe(total)
    expect(dropped).toBeGreaterThan(0)
    expect((await stat(base)).size).toBe(maxBytes)
  })

  it('counts the batch being written against the bound', async () => {
    const { writer } = makeWriter({ maxBufferedRecords: 10 })
    for (let i = 0; i < 10; i++) writer.write(prediction(i))
    const flushed = writer.flush()
    // The flush loop has taken the batch but not finished writing it: still no room.
    await Promise.resolve()
    await Promise.resolve()
    expect(writer.write(prediction(10))).toBe(false)
    await flushed
    expect(writer.write(prediction(11))).toBe(true)
    await writer.close()
    expect(writer.stats()).toMatchObject({ written: 11, dropped: 1 })
  })
})

describe('RecordWriter failures never reach the caller', () => {
  it('counts write() after close() as dropped', async () => {
    const { writer, results } = makeWriter()
    writer.write(prediction(0))
    const closing = writer.close()
    expect(writer.write(prediction(1))).toBe(false)
    await closing
    expect(() => writer.write(prediction(2))).not.toThrow()
    expect(writer.write(prediction(3))).toBe(false)
    await writer.close() // idempotent
    expect(writer.stats()).toMatchObject({ written: 1, dropped: 3 })
    expect(results).toEqual({ written: 1, dropped: 3 })
  })

  it('reports an error opening the file and counts the records as dropped', async () => {
    await writeFile(join(dir, 'not-a-dir'), 'x')
    const { writer, results, errors } = makeWriter({ path: join(dir, 'not-a-dir', 'predictions.jsonl') })
    for (let i = 0; i < 5; i++) expect(() => writer.write(prediction(i))).not.toThrow()
    await expect(writer.close()).resolves.toBeUndefined()
    expect(errors.length).toBeGreaterThan(0)
    expect(errors[0]).toMatchObject({ code: expect.stringMatching(/^(ENOTDIR|EEXIST)$/) })
    expect(writer.stats()).toMatchObject({ written: 0, dropped: 5, buffered: 0 })
    expect(results).toEqual({ written: 0, dropped: 5 })
  })

  it('drops a record that cannot be serialized and keeps going', async () => {
    const { writer, errors } = makeWriter()
    const circular: Record<string, unknown> = { seq: 1 }
    circular.self = circular
    expect(writer.write({ seq: 0 })).toBe(true)
    expect(writer.write(circular)).toBe(false)
    expect(writer.write({ big: 1n })).toBe(false)
    expect(writer.write({ seq: 2 })).toBe(true)
    await writer.close()
    expect(errors).toHaveLength(2)
    expect(writer.stats()).toMatchObject({ written: 2, dropped: 2 })
    expect((await collect(base)).map((r) => r.seq)).toEqual([0, 2])
  })

  it('survives callbacks that throw', async () => {
    const writer = new RecordWriter({
      path: base,
      max_bytes: 1024,
      keep: 1,
      maxBufferedRecords: 1,
      onResult: () => { throw new Error('metrics broke') },
      onError: () => { throw new Error('logger broke') }
    })
    expect(writer.write({ seq: 0 })).toBe(true)
    expect(writer.write({ seq: 1 })).toBe(false)
    await writer.close()
    expect(writer.stats()).toMatchObject({ written: 1, dropped: 1 })
  })

  it.each([
    [{ max_bytes: 0 }, /max_bytes/],
    [{ keep: -1 }, /keep/],
    [{ maxBufferedRecords: 1.5 }, /maxBufferedRecords/],
    [{ path: '' }, /path/]
  ])('rejects invalid options %o at construction', (opts, message) => {
    expect(() => new RecordWriter({ path: base, max_bytes: 1024, keep: 1, ...opts })).toThrow(message)
  })
})

describe('readRecords', () => {
  it('skips blank lines and a truncated last line, counting the latter', async () => {
    const skips: SkippedLine[] = []
    const progress: Array<[number, number]> = []
    const reader = readRecords(PARTIAL_FIXTURE, {
      onSkip: (info) => skips.push(info),
      onProgress: (read, total) => progress.push([read, total])
    })
    const records: unknown[] = []
    for await (const r of reader) records.push(r)

    expect(records).toEqual([
      { seq: 0, kind: 'prediction', primary: { score: 0.91 }, shadow: { score: 0.88 } },
      { seq: 1, kind: 'outcome', label: 1 }
    ])
    expect(reader.skipped).toBe(1)
    expect(reader.read).toBe(2)
    expect(skips).toEqual([{ path: PARTIAL_FIXTURE, line: 4, reason: 'invalid_json' }])
    const size = (await stat(PARTIAL_FIXTURE)).size
    expect(progress.at(-1)).toEqual([size, size])
  })

  it('skips lines that are JSON but not records', async () => {
    const path = join(dir, 'odd.jsonl')
    await writeFile(path, '{"seq":0}\n42\n[1,2]\nnull\n{"seq":1}\n')
    const reader = readRecords(path)
    expect((await collect(path)).map((r) => r.seq)).toEqual([0, 1])
    for await (const _ of reader) { /* drain */ }
    expect(reader.skipped).toBe(3)
  })

  it('streams in small chunks: lines and multi-byte characters that cross chunk boundaries', async () => {
    const path = join(dir, 'chunks.jsonl')
    const sent = Array.from({ length: 500 }, (_, i) => ({ seq: i, text: 'é✓😀'.repeat(i % 5), pad: 'p'.repeat(i % 13) }))
    await writeFile(path, sent.map((r) => JSON.stringify(r) + '\n').join(''))
    const progress: number[] = []
    const out: unknown[] = []
    for await (const r of readRecords(path, { highWaterMark: 7, onProgress: (read) => progress.push(read) })) out.push(r)
    expect(out).toEqual(sent)
    expect(progress.length).toBeGreaterThan(100)
    expect(progress).toEqual([...progress].sort((a, b) => a - b))
  })

  it('reads several files in the order given and reports progress over all of them', async () => {
    const a = join(dir, 'a.jsonl')
    const b = join(dir, 'b.jsonl')
    await writeFile(a, '{"seq":0}\n{"seq":1}\n')
    await writeFile(b, '{"seq":2}\n')
    let last: [number, number] = [0, 0]
    const seqs: unknown[] = []
    for await (const r of readRecords([a, b], { onProgress: (read, total) => { last = [read, total] } })) seqs.push(r.seq)
    expect(seqs).toEqual([0, 1, 2])
    expect(last).toEqual([30, 30])
  })

  it('stops early without leaking when the consumer breaks', async () => {
    const path = join(dir, 'many.jsonl')
    await writeFile(path, Array.from({ length: 1000 }, (_, i) => `{"seq":${i}}\n`).join(''))
    const reader = readRecords(path, { highWaterMark: 64 })
    for await (const r of reader) if (r.seq === 9) break
    expect(reader.read).toBe(10)
  })
})

describe('recordFiles', () => {
  it('lists rotated siblings oldest first, then the base, ignoring other names', async () => {
    const d = join(dir, 'list')
    const p = join(d, 'predictions.jsonl')
    await mkdir(d)
    for (const suffix of ['1', '2', '10', '01', 'tmp', '1.gz']) await writeFile(`${p}.${suffix}`, '')
    await writeFile(join(d, 'other.jsonl.1'), '')
    await writeFile(p, '')
    expect(await recordFiles(p)).toEqual([`${p}.10`, `${p}.2`, `${p}.1`, p])
  })

  it('returns nothing for a path that does not exist yet', async () => {
    expect(await recordFiles(join(dir, 'missing', 'predictions.jsonl'))).toEqual([])
  })
})

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** Writes records `from`..`to` as a steady stream, a few per event-loop turn, as request traffic would. */
async function produce (writer: RecordWriter, from: number, to: number, onEach?: (seq: number) => void): Promise<void> {
  for (let i = from; i < to; i++) {
    writer.write(prediction(i))
    onEach?.(i)
    if (i % 40 === 39) await tick()
  }
}

describe('RecordWriter buffer sized in bytes', () => {
  it('takes a burst of 15 000 records with the default buffer and drops none', async () => {
    const { writer, results } = makeWriter({ max_bytes: 64 * 1024 * 1024 })
    for (let i = 0; i < 15_000; i++) expect(writer.write(prediction(i))).toBe(true)
    await writer.close()
    expect(results).toEqual({ written: 15_000, dropped: 0 })
    expect(await lineCount(base)).toBe(15_000)
  })

  it('cuts writes at maxWriteBytes and still writes every line whole, in order', async () => {
    const { writer } = makeWriter({ maxWriteBytes: 300 })
    for (let i = 0; i < 500; i++) writer.write(prediction(i))
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(0, 500))
  })
})

describe('RecordWriter.writeBatch: all records or none', () => {
  const batchOf = (from: number, count: number) => range(from, from + count).map(prediction)

  it('queues a batch that fits, and writes it contiguously', async () => {
    const { writer, results } = makeWriter()
    writer.write(prediction(0))
    expect(await writer.writeBatch(batchOf(1, 1000))).toBe(true)
    writer.write(prediction(1001))
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(0, 1002))
    expect(results).toEqual({ written: 1002, dropped: 0 })
  })

  it('refuses a batch that does not fit, taking none of it and counting nothing', async () => {
    const { writer, results } = makeWriter({ maxBufferedBytes: 4096 })
    for (let i = 0; i < 20; i++) writer.write(prediction(i))
    const before = writer.stats()
    expect(await writer.writeBatch(batchOf(100, 30))).toBe(false)
    expect(writer.stats()).toEqual(before)
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(0, 20))
    expect(results).toEqual({ written: 20, dropped: 0 })
  })

  it('waits for room up to its timeout, holding that room against single records meanwhile', async () => {
    const { writer, results } = makeWriter({ maxBufferedBytes: 4096 })
    let i = 0
    while (writer.stats().bufferedBytes < 3500) writer.write(prediction(i++))
    const filled = i
    const waiting = writer.writeBatch(batchOf(1000, 15), { timeoutMs: 5000 })
    // The batch waits for room: a single record may not take it meanwhile.
    expect(writer.write(prediction(999))).toBe(false)
    expect(await waiting).toBe(true)
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual([...range(0, filled), ...range(1000, 1015)])
    expect(results).toEqual({ written: filled + 15, dropped: 1 })
  })

  it('takes a batch larger than the whole buffer once the buffer is empty', async () => {
    const { writer } = makeWriter({ maxBufferedBytes: 1000 })
    writer.write(prediction(0))
    expect(await writer.writeBatch(batchOf(1, 50), { timeoutMs: 5000 })).toBe(true)
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(0, 51))
  })

  it('refuses a batch after its timeout while the file cannot be written, and takes it once it can', async () => {
    const blocker = join(dir, 'blocked')
    await writeFile(blocker, 'a file where the directory should be')
    const { writer, errors } = makeWriter({ path: join(blocker, 'predictions.jsonl') })
    // A batch is taken while the file is not known to fail; the first write finds out.
    expect(await writer.writeBatch(batchOf(0, 10))).toBe(true)
    while (errors.length === 0) await sleep(5)
    const started = performance.now()
    expect(await writer.writeBatch(batchOf(10, 10), { timeoutMs: 200 })).toBe(false)
    expect(performance.now() - started).toBeGreaterThanOrEqual(190)
    expect(writer.stats()).toMatchObject({ written: 0, dropped: 0, buffered: 10 })

    const retried = writer.writeBatch(batchOf(20, 10), { timeoutMs: 5000 })
    await sleep(100)
    await unlink(blocker)
    expect(await retried).toBe(true)
    await writer.close()
    expect((await collect(join(blocker, 'predictions.jsonl'))).map((r) => r.seq)).toEqual([...range(0, 10), ...range(20, 30)])
  })

  it('refuses waiting and later batches once closed', async () => {
    const { writer } = makeWriter({ maxBufferedBytes: 1000 })
    for (let i = 0; i < 5; i++) writer.write(prediction(i))
    const waiting = writer.writeBatch(batchOf(10, 20), { timeoutMs: 5000 })
    await writer.close()
    expect(await waiting).toBe(false)
    expect(await writer.writeBatch(batchOf(40, 1))).toBe(false)
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(0, 5))
  })

  it('refuses a batch with a record that is not JSON, taking none of it', async () => {
    const { writer, errors } = makeWriter()
    expect(await writer.writeBatch([{ seq: 0 }, { big: 1n }])).toBe(false)
    await writer.close()
    expect(errors).toHaveLength(1)
    expect(writer.stats()).toMatchObject({ written: 0, dropped: 0 })
  })
})

describe('RecordWriter keeps what the file refuses', () => {
  it('retries records the file could not take and writes them once it can, dropping none', async () => {
    const blocker = join(dir, 'blocked')
    await writeFile(blocker, 'x')
    const path = join(blocker, 'predictions.jsonl')
    const { writer, errors, results } = makeWriter({ path })
    for (let i = 0; i < 10; i++) expect(writer.write(prediction(i))).toBe(true)
    await sleep(120)
    expect(errors.length).toBeGreaterThan(0)
    expect(writer.stats()).toMatchObject({ written: 0, dropped: 0, buffered: 10 })
    await unlink(blocker)
    await writer.flush()
    await writer.close()
    expect((await collect(path)).map((r) => r.seq)).toEqual(range(0, 10))
    expect(results).toEqual({ written: 10, dropped: 0 })
  })
})

describe('RecordWriter follows a file that moves', () => {
  function reopening (opts: Partial<RecordWriterOptions> = {}) {
    const reopens: ReopenReason[] = []
    // Large enough that the writer's own rotation does not meet the move.
    return { ...makeWriter({ max_bytes: 64 * 1024 * 1024, onReopen: (reason) => reopens.push(reason), ...opts }), reopens }
  }

  it('recreates a deleted directory under load: every record accepted after the deletion is in the new file', async () => {
    const { writer, reopens } = reopening()
    // Traffic runs until 2000 records after the deletion have been accepted.
    let firstAfter = Number.POSITIVE_INFINITY
    let next = 0
    const producing = (async () => {
      for (; next < firstAfter + 2000; next++) {
        writer.write(prediction(next))
        if (next % 40 === 39) await tick()
      }
    })()
    while (writer.stats().written < 1500) await sleep(1)
    try {
      await rm(join(dir, 'nested'), { recursive: true, force: true })
    } catch (err) {
      // As with `rm -rf`, the writer may recreate its file between rm's unlink and rmdir.
      if ((err as { code?: unknown }).code !== 'ENOTEMPTY') throw err
    }
    firstAfter = next
    await producing
    await writer.close()

    const total = next
    const seqs = (await collect(base)).map((r) => r.seq as number)
    expect(seqs.at(-1)).toBe(total - 1)
    expect(seqs[0]).toBeLessThanOrEqual(firstAfter)
    // Contiguous: nothing lost after the deletion, nothing written twice.
    expect(seqs).toEqual(range(seqs[0] ?? 0, total))
    expect(writer.stats()).toMatchObject({ written: total, dropped: 0 })
    expect(reopens.length).toBeGreaterThanOrEqual(1)
    for (const r of reopens) expect(['missing', 'deleted']).toContain(r)
  })

  it('follows a logrotate rename under load: the old and new files hold every record once', async () => {
    const { writer, reopens } = reopening()
    let renamedAt = Number.POSITIVE_INFINITY
    let next = 0
    const producing = (async () => {
      for (; next < renamedAt + 2000; next++) {
        writer.write(prediction(next))
        if (next % 40 === 39) await tick()
      }
    })()
    while (writer.stats().written < 1500) await sleep(1)
    await rename(base, `${base}.rotated`)
    renamedAt = next
    await producing
    await writer.close()
    const total = next

    const old = (await collect(`${base}.rotated`)).map((r) => r.seq)
    const now = (await collect(base)).map((r) => r.seq)
    expect(old.length).toBeGreaterThanOrEqual(1500)
    expect(now.length).toBeGreaterThan(0)
    expect([...old, ...now]).toEqual(range(0, total))
    expect(reopens).toEqual(['missing'])
  })

  it('writes to the new file when the path is replaced (rename of another file onto it)', async () => {
    const { writer, reopens } = reopening()
    await produce(writer, 0, 100)
    await writer.flush()
    const other = join(dir, 'nested', 'fresh.jsonl')
    await writeFile(other, '{"seq":-1}\n')
    await rename(other, base)
    await produce(writer, 100, 200)
    await writer.close()
    expect((await collect(base)).map((r) => r.seq)).toEqual([-1, ...range(100, 200)])
    expect(reopens).toEqual(['replaced'])
  })

  it('reopen() (SIGHUP) closes the file and opens the path again', async () => {
    const { writer, reopens } = reopening()
    await writer.reopen() // nothing open yet: nothing to do
    expect(reopens).toEqual([])
    await produce(writer, 0, 10)
    await writer.flush()
    await rename(base, `${base}.1`)
    await writer.reopen()
    expect(reopens).toEqual(['requested'])
    // The new file exists at once, as logrotate's postrotate expects.
    expect((await stat(base)).size).toBe(0)
    await produce(writer, 10, 20)
    await writer.close()
    expect((await collect(`${base}.1`)).map((r) => r.seq)).toEqual(range(0, 10))
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(10, 20))
    expect(reopens).toEqual(['requested'])
  })

  it('counts from the new size after the file is truncated in place (copytruncate)', async () => {
    const { writer, reopens } = reopening({ max_bytes: 4000, keep: 2 })
    await produce(writer, 0, 20)
    await writer.flush()
    await writeFile(base, '')
    await produce(writer, 20, 30)
    await writer.close()
    // Without noticing the truncation the writer would have rotated these 10 lines away.
    expect(await recordFiles(base)).toEqual([base])
    expect((await collect(base)).map((r) => r.seq)).toEqual(range(20, 30))
    expect(reopens).toEqual([])
  })
})

describe('RecordWriter drop warnings', () => {
  it('warns at most once per interval, with every drop counted by reason', async () => {
    const warnings: DropWarning[] = []
    const { writer } = makeWriter({ maxBufferedRecords: 1, dropWarningIntervalMs: 150, onDropWarning: (w) => warnings.push(w) })
    writer.write(prediction(0))
    for (let i = 1; i <= 100; i++) writer.write(prediction(i))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ dropped: 1, reasons: { buffer_full: 1 } })
    await sleep(250)
    expect(warnings).toHaveLength(2)
    expect(warnings[1]).toMatchObject({ dropped: 99, reasons: { buffer_full: 99, closed: 0 } })
    expect(warnings[1]?.sinceMs).toBeGreaterThanOrEqual(100)
    await writer.close()
    expect(warnings).toHaveLength(2)
  })

  it('reports drops still pending when closed', async () => {
    const warnings: DropWarning[] = []
    const { writer } = makeWriter({ maxBufferedRecords: 1, dropWarningIntervalMs: 60_000, onDropWarning: (w) => warnings.push(w) })
    for (let i = 0; i < 5; i++) writer.write(prediction(i))
    await writer.close()
    expect(warnings.map((w) => w.dropped)).toEqual([1, 3])
  })
})

describe('record schema', () => {
  it('reads outcome records of this schema or older, and nothing else', () => {
    const outcome = { type: 'outcome', schema: SCHEMA_VERSION, ts: 't', route: 'r', request_id: null, user_id: 'u', model: 'a', metric: 'm', value: 2, attributed_by: 'user_id' }
    expect(asOutcomeRecord(outcome)).toBe(outcome)
    const { schema: _schema, ...unversioned } = outcome
    expect(asOutcomeRecord(unversioned)).toBeDefined()
    expect(asOutcomeRecord({ ...outcome, schema: SCHEMA_VERSION + 1 })).toBeUndefined()
    expect(asOutcomeRecord({ ...outcome, value: MAX_OUTCOME_VALUE * 10 })).toBeUndefined()
    expect(asOutcomeRecord({ ...outcome, value: '2' })).toBeUndefined()
    expect(asOutcomeRecord({ ...outcome, type: 'prediction' })).toBeUndefined()
    expect(asPredictionRecord({ type: 'prediction', route: 'r', primary: { model: 'a' } })).toBeDefined()
    expect(asPredictionRecord({ type: 'prediction', route: 'r', primary: {} })).toBeUndefined()
  })
})
