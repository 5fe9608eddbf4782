// What the Kafka/HTTP sink does with records it can never deliver, and with directories it can
// never write: a record the collector refuses is quarantined and the rest goes on (issue 18 item
// 13); records held in memory while the spool cannot be opened are counted (item 14); a record
// directory on /proc is refused instead of hanging mkdir (item 15).
import { createServer, type Server } from 'node:http'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { DeliverySink } from '../src/record/delivery.js'
import { HttpTransport } from '../src/record/http-sink.js'
import { openSink } from '../src/record/sinks.js'
import { RecordWriter } from '../src/record/writer.js'
import { Metrics } from '../src/metrics/index.js'
import type { RecordingConfig } from '../src/config/types.js'
import { parseMetrics } from './helpers/router.js'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'modelsplit-refusals-'))
  dirs.push(d)
  return d
}

interface Collector { url: string; keys: string[]; refusals: number }

/** A collector on 127.0.0.1 that refuses (400) a body that is not JSON and (422) a batch holding a record marked poison. */
async function startCollector(): Promise<Collector> {
  const state: Collector = { url: '', keys: [], refusals: 0 }
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      let events: Array<{ partitionkey?: string; data: { poison?: boolean } }>
      try {
        events = JSON.parse(body) as typeof events
      } catch {
        state.refusals++
        res.writeHead(400).end()
        return
      }
      if (events.some((e) => e.data.poison === true)) {
        state.refusals++
        res.writeHead(422).end()
        return
      }
      for (const e of events) state.keys.push(e.partitionkey ?? '')
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/records`
  onTestFinished(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return state
}

const until = async (what: string, cond: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const rec = (id: string, extra: object = {}): object => ({ type: 'prediction', schema: 1, ts: '2024-01-01T00:00:00.000Z', request_id: id, route: 'r', ...extra })
const line = (id: string, value: string): string => `${id}\tprediction\t${JSON.stringify(id)}\t2024-01-01T00:00:00.000Z\t${value}\n`

describe('a record the collector refuses', () => {
  it('is quarantined beside the spool and counted, and everything behind it (feedback included) is delivered', async () => {
    const collector = await startCollector()
    const dir = await tempDir()
    const spoolDir = join(dir, 'spool')
    // A spool left by an earlier run: a good line, a damaged one that still looks like JSON, a good one.
    await mkdir(spoolDir, { recursive: true })
    await writeFile(join(spoolDir, '0001000000000000.spool'),
      line('s0', JSON.stringify(rec('s0'))) + line('s1', '{"type":"prediction","request_id":"s1",}') + line('s2', JSON.stringify(rec('s2'))))
    const quarantined: number[] = []
    const sink = new DeliverySink({
      transport: new HttpTransport({ url: collector.url, format: 'cloudevents-batch', timeout_ms: 2000 }),
      spoolDir, spoolMaxBytes: 1 << 20, lingerMs: 5, maxBatchBytes: 64 * 1024, closeTimeoutMs: 1000,
      onQuarantined: (n) => quarantined.push(n),
    })
    onTestFinished(() => sink.close())
    await sink.started
    for (let i = 0; i < 5; i++) sink.write(rec(`m${i}`))
    sink.write(rec('poison', { poison: true }))
    for (let i = 5; i < 10; i++) sink.write(rec(`m${i}`))
    // Acknowledged feedback behind the refused record still arrives.
    expect(await sink.writeBatch([rec('fb')], { timeoutMs: 5000 })).toBe(true)
    const want = ['s0', 's2', ...Array.from({ length: 10 }, (_, i) => `m${i}`), 'fb']
    await until('every deliverable record', () => want.every((k) => collector.keys.includes(k)))
    expect(collector.keys.filter((k) => k !== '')).toEqual(want)
    expect(quarantined.reduce((a, b) => a + b, 0)).toBe(2)
    expect(sink.stats()).toMatchObject({ quarantined: 2, dropped: 0 })
    const kept = (await readFile(join(spoolDir, 'quarantine.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; reason: string; record: string })
    expect(kept.map((k) => k.id)).toEqual(['s1', expect.any(String)])
    expect(kept[0]?.record).toBe('{"type":"prediction","request_id":"s1",}')
    expect(kept[0]?.reason).toContain('400')
    expect(JSON.parse(kept[1]?.record ?? '{}')).toMatchObject({ request_id: 'poison' })
    expect(kept[1]?.reason).toContain('422')
  })

  it('is counted in modelsplit_records_quarantined_total', async () => {
    const collector = await startCollector()
    const dir = await tempDir()
    const metrics = new Metrics({ defaultMetrics: false })
    const recording = { sink: 'http', http: { url: collector.url, format: 'cloudevents-batch', timeout_ms: 2000 }, spool: { path: join(dir, 'spool'), max_bytes: 1 << 20 } } as unknown as RecordingConfig
    const quiet = { info: () => {}, warn: () => {}, error: () => {} }
    const sink = openSink(recording, { filePath: join(dir, 'r.jsonl'), spoolPath: join(dir, 'spool'), closeTimeoutMs: 1000, metrics, log: () => quiet })
    onTestFinished(() => sink.close())
    sink.write(rec('poison', { poison: true }))
    sink.write(rec('ok'))
    await until('the good record', () => collector.keys.includes('ok'))
    const m = parseMetrics(await metrics.registry.metrics())
    expect(m.get('modelsplit_records_quarantined_total{sink="http"}')).toBe(1)
  })
})

describe('a spool directory that cannot be used', () => {
  it('counts the records it holds in memory in modelsplit_records_buffered', async () => {
    const collector = await startCollector()
    const dir = await tempDir()
    // A file where the spool directory should be: the spool never opens.
    await writeFile(join(dir, 'spool'), 'not a directory\n')
    const metrics = new Metrics({ defaultMetrics: false })
    const recording = { sink: 'http', http: { url: collector.url, format: 'cloudevents-batch', timeout_ms: 2000 }, spool: { path: join(dir, 'spool'), max_bytes: 1 << 20 } } as unknown as RecordingConfig
    const errors: string[] = []
    const log = { info: () => {}, warn: () => {}, error: (_o: object, msg: string) => { errors.push(msg) } }
    const sink = openSink(recording, { filePath: join(dir, 'r.jsonl'), spoolPath: join(dir, 'spool'), closeTimeoutMs: 200, metrics, log: () => log })
    onTestFinished(() => sink.close())
    for (let i = 0; i < 7; i++) sink.write(rec(`h${i}`))
    await until('the spool error in the log', () => errors.length > 0)
    const m = parseMetrics(await metrics.registry.metrics())
    expect(m.get('modelsplit_records_buffered')).toBe(7)
    expect(m.get('modelsplit_records_total{result="written"}')).toBe(0)
  })
})

describe('a record directory under /proc', () => {
  it('is reported by the file writer instead of hanging in mkdir, and close() returns', async () => {
    const errors: unknown[] = []
    const writer = new RecordWriter({ path: '/proc/modelsplit-missing/records.jsonl', max_bytes: 1 << 20, keep: 1, onError: (e) => errors.push(e) })
    writer.write(rec('p0'))
    await until('the error', () => errors.length > 0, 5000)
    expect(String((errors[0] as Error).message)).toContain('/proc')
    await writer.close()
    expect(writer.stats()).toMatchObject({ written: 0, dropped: 1 })
  })

  it('is reported by the spool instead of hanging in mkdir', async () => {
    const errors: unknown[] = []
    const sink = new DeliverySink({
      transport: new HttpTransport({ url: 'http://127.0.0.1:9/records', format: 'cloudevents-batch', timeout_ms: 100 }),
      spoolDir: '/proc/modelsplit-missing/spool', spoolMaxBytes: 1 << 20, lingerMs: 5, maxBatchBytes: 4096, closeTimeoutMs: 100,
      onError: (e) => errors.push(e),
    })
    await until('the error', () => errors.length > 0, 5000)
    expect(String((errors[0] as Error).message)).toContain('/proc')
    expect(sink.status()).toMatchObject({ state: 'starting', last_error: expect.stringContaining('kernel') })
    await sink.close()
  })
})
