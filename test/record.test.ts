import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RecordWriter, readRecords, recordFiles } from '../src/record/index.js'
import type { RecordResult, RecordWriterOptions, SkippedLine } from '../src/record/index.js'

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
