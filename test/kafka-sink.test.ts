// The Kafka sink against a real Apache Kafka broker (KRaft, one node on 127.0.0.1, from Maven
// Central's jars through scripts/kafka): records keyed by request id with the file sink's fields,
// nothing lost when the broker dies under load or the router gets SIGTERM, report --kafka over
// three routers, one topic. Skipped, saying why, where the broker cannot be fetched.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { EnvelopeFactory, type Envelope } from '../src/record/envelope.js'
import { KafkaTransport } from '../src/record/kafka.js'
import { kafkaClient } from '../src/record/kafka-client.js'
import { readKafkaRecords } from '../src/record/kafka-reader.js'
import { captureIo } from './helpers/cli-io.js'
import { kafkaUnavailable, readTopic, spawnRouter, startBroker, type Broker, type RawMessage } from './helpers/kafka.js'
import { parseMetrics, startRouter } from './helpers/router.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'

const unavailable = kafkaUnavailable()
if (unavailable !== undefined) console.warn(`Kafka sink tests skipped: ${unavailable}`)

let broker: Broker
let models: Upstream[] = []
let dir: string
let topicSeq = 0

beforeAll(async () => {
  if (unavailable !== undefined) return
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-kafka-test-'))
  broker = await startBroker()
  models = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream((req, res) => {
    const body = JSON.stringify({ predictions: [name === 'c' ? 0.52 : 0.5] })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })))
}, 120_000)

afterAll(async () => {
  if (unavailable !== undefined) return
  await broker?.remove()
  await Promise.all(models.map((m) => m.close()))
  await rm(dir, { recursive: true, force: true })
})

function config(opts: { sink: 'file' | 'kafka'; topic?: string; spool?: string; brokers?: string; shutdownMs?: number; file?: string }): string {
  const [a, b, c] = models
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown_timeout_ms: ${opts.shutdownMs ?? 5000}
models:
  a: { url: "${a?.url}" }
  b: { url: "${b?.url}" }
  c: { url: "${c?.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
    shadow: [{ model: c }]
    record: true
    metrics: [{ name: converted, type: binary }]
recording:
  sink: ${opts.sink}
  path: ${opts.file ?? join(dir, `file-${++topicSeq}.jsonl`)}
${opts.sink === 'kafka' ? `  kafka: { brokers: [${opts.brokers ?? broker.address}], topic: ${opts.topic}, linger_ms: 5 }
  spool: { path: ${opts.spool ?? join(dir, `spool-${++topicSeq}`)}, max_bytes: 67108864 }` : ''}
`
}

/** Sends `n` predictions `concurrency` at a time; returns the request ids answered 2xx. */
async function load(url: string, ids: readonly string[], concurrency: number, stop?: { requested: boolean }): Promise<string[]> {
  const ok: string[] = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < ids.length && stop?.requested !== true) {
      const id = ids[next++] as string
      try {
        const res = await fetch(`${url}/r/predict`, { method: 'POST', headers: { 'x-user-id': `u-${id}`, 'x-request-id': id, 'content-type': 'application/json' }, body: '{"x":[1,2,3]}' })
        await res.arrayBuffer()
        if (res.ok) ok.push(id)
      } catch {
        // A router going away mid-request: not a 2xx, not counted.
      }
    }
  }))
  return ok
}

const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

async function readyz(adminUrl: string): Promise<{ sink: { state: string; spooled_bytes: number; reachable: boolean } }> {
  return await (await fetch(`${adminUrl}/readyz`)).json() as { sink: { state: string; spooled_bytes: number; reachable: boolean } }
}

const predictionIds = (messages: RawMessage[]): Set<string> => new Set(messages.filter((m) => m.headers.ce_type === 'org.modelsplit.prediction').map((m) => m.key ?? ''))

describe.skipIf(unavailable !== undefined)('Kafka sink against a real broker', () => {
  it('publishes records keyed by request id, with the same fields as the file sink, as CloudEvents', async () => {
    const topic = 'fields'
    const fileRouter = await startRouter(config({ sink: 'file' }))
    const kafkaRouter = await startRouter(config({ sink: 'kafka', topic }))
    try {
      const sent = ids('f', 20)
      expect(await load(fileRouter.url, sent, 4)).toHaveLength(20)
      expect(await load(kafkaRouter.url, sent, 4)).toHaveLength(20)
      const feedback = { route: 'r', request_id: 'f-3', metric: 'converted', value: 1 }
      for (const r of [fileRouter, kafkaRouter]) {
        const res = await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(feedback) })
        expect(res.status).toBe(200)
      }
      await fileRouter.router.flush()
      await kafkaRouter.router.flush()
      const path = fileRouter.router.current().config.recording.path
      const fileRecords = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
      const messages = await readTopic(broker.address, topic)
      expect(messages).toHaveLength(21)
      const shape = (r: Record<string, unknown>): unknown => JSON.parse(JSON.stringify(r, (k, v: unknown) => k === 'ts' || k === 'latency_ms' ? typeof v : v))
      for (const m of messages) {
        const record = JSON.parse(m.value) as Record<string, unknown>
        expect(m.key).toBe(record.request_id)
        expect(m.headers).toMatchObject({ ce_specversion: '1.0', ce_type: `org.modelsplit.${String(record.type)}`, ce_source: expect.stringMatching(/^\/modelsplit\//) })
        const twin = fileRecords.find((f) => f.request_id === record.request_id && f.type === record.type)
        expect(twin, `file record for ${String(record.request_id)}`).toBeDefined()
        expect(shape(record)).toEqual(shape(twin as Record<string, unknown>))
      }
      expect(new Set(messages.map((m) => m.headers.ce_id)).size).toBe(21)
      // Every record of a request goes to the partition of its key.
      const outcome = messages.find((m) => m.headers.ce_type === 'org.modelsplit.outcome')
      expect(outcome?.partition).toBe(messages.find((m) => m.key === 'f-3' && m.headers.ce_type === 'org.modelsplit.prediction')?.partition)
      const metrics = parseMetrics(await (await fetch(`${kafkaRouter.adminUrl}/metrics`)).text())
      expect(metrics.get('modelsplit_records_total{result="written"}')).toBe(21)
      expect(metrics.get('modelsplit_sink_latency_seconds_count{sink="kafka"}')).toBeGreaterThan(0)
      expect((await readyz(kafkaRouter.adminUrl)).sink).toMatchObject({ sink: 'kafka', state: 'delivering', reachable: true, spooled_bytes: 0 })
    } finally {
      await fileRouter.close()
      await kafkaRouter.close()
    }
  }, 90_000)

  // The sink encodes its record batches itself (src/record/kafka-encode.ts): what the broker took
  // (it checks each batch's CRC32C and, compressed, decompresses it) and a plain kafkajs consumer
  // reads back is byte for byte what was sent, for each codec and both producers.
  it('records read back equal what was sent: UTF-8, null keys, large values, timestamps, headers; lz4, gzip, none; acks all and 1', async () => {
    const factory = new EnvelopeFactory()
    const big = 'x'.repeat(70_000)
    const make = (i: number): Envelope => factory.make({
      type: i % 5 === 4 ? 'outcome' : 'prediction',
      ts: new Date(Date.UTC(2026, 11, 7, 3, 0, 0) + ((i * 7919) % 3000)).toISOString(),
      ...(i % 5 === 4 ? {} : { request_id: `bc-${i}-é` }),
      route: 'r',
      input: { text: i % 3 === 0 ? `héllo wörld 日本語 🚀 ${i}` : 'plain', ...(i === 7 ? { big } : {}) },
    }) as Envelope
    for (const [compression, acks] of [['lz4', 'all'], ['gzip', 'all'], ['none', 'all'], ['lz4', 1]] as const) {
      const topic = `bytes-${compression}-${acks}`
      const transport = new KafkaTransport({ brokers: [broker.address], topic, acks, compression, linger_ms: 5, max_batch_bytes: 1_048_576, client_id: 'bytes-test' }, { source: '/modelsplit/bytes-test' })
      const sent: Envelope[] = []
      try {
        // Three sends: the idempotent producer's sequence has to follow on from one batch to the next.
        for (const n of [1, 30, 12]) {
          const batch = Array.from({ length: n }, (_, k) => make(sent.length + k + 1))
          sent.push(...batch)
          await transport.send(batch)
        }
      } finally {
        await transport.close()
      }
      const read = await readTopic(broker.address, topic)
      expect(read, topic).toHaveLength(sent.length)
      const byId = new Map(read.map((m) => [m.headers.ce_id, m]))
      for (const e of sent) {
        const m = byId.get(e.id)
        expect(m, `${topic}: ${e.id}`).toBeDefined()
        expect(m?.value).toBe(e.value)
        expect(m?.key).toBe(e.key)
        expect(m?.timestamp).toBe(String(Date.parse(e.time)))
        expect(m?.headers).toEqual({ ce_specversion: '1.0', ce_id: e.id, ce_source: '/modelsplit/bytes-test', ce_type: `org.modelsplit.${e.type}` })
      }
      expect(read.some((m) => m.value.includes(big))).toBe(true)
      expect(read.some((m) => m.key === null)).toBe(true)
    }
  }, 120_000)

  it('loses nothing when the broker is killed under load and comes back later; the spool drains', async () => {
    const topic = 'outage'
    const r = await startRouter(config({ sink: 'kafka', topic }))
    try {
      const sent = ids('o', 3000)
      const loading = load(r.url, sent, 8)
      await until('some records', async () => parseMetrics(await r.router.metrics.registry.metrics()).get('modelsplit_records_total{result="written"}')! > 300)
      await broker.kill()
      await until('records spooled', async () => (await readyz(r.adminUrl)).sink.spooled_bytes > 0, 20_000)
      await sleep(1500)
      await broker.start()
      const ok = await loading
      expect(ok.length).toBe(3000)
      await until('the spool to drain', async () => {
        const s = (await readyz(r.adminUrl)).sink
        return s.spooled_bytes === 0 && s.state === 'delivering'
      }, 90_000)
      await r.router.flush()
      const metrics = parseMetrics(await r.router.metrics.registry.metrics())
      expect(metrics.get('modelsplit_records_total{result="dropped"}')).toBe(0)
      expect(metrics.get('modelsplit_records_spooled_bytes')).toBe(0)
      expect([...metrics].filter(([k]) => k.startsWith('modelsplit_sink_errors_total{sink="kafka"')).reduce((s, [, v]) => s + v, 0)).toBeGreaterThan(0)
      const got = predictionIds(await readTopic(broker.address, topic))
      expect(ok.filter((id) => !got.has(id))).toEqual([])
    } finally {
      await r.close()
    }
  }, 180_000)

  it('loses nothing when the router gets SIGTERM mid-load with the broker down: the next start sends the spool', async () => {
    const topic = 'sigterm'
    const file = join(dir, 'sigterm.yaml')
    await writeFile(file, config({ sink: 'kafka', topic, spool: join(dir, 'sigterm-spool'), shutdownMs: 1000 }))
    let router = await spawnRouter(file)
    const stop = { requested: false }
    const loading = load(router.url, ids('s', 100_000), 8, stop)
    await sleep(1000)
    await broker.kill()
    await sleep(1000)
    router.child.kill('SIGTERM')
    expect(await router.exited).toBe(0)
    stop.requested = true
    const ok = await loading
    expect(ok.length).toBeGreaterThan(100)
    await broker.start()
    router = await spawnRouter(file)
    try {
      await until('the spool to drain after the restart', async () => {
        const s = (await readyz(router.adminUrl)).sink
        return s.spooled_bytes === 0 && s.state === 'delivering'
      }, 90_000)
      const got = predictionIds(await readTopic(broker.address, topic))
      expect(ok.filter((id) => !got.has(id))).toEqual([])
    } finally {
      router.child.kill('SIGTERM')
      await router.exited
    }
  }, 180_000)

  it('three routers, one topic: report --kafka equals the report over the union of their records', async () => {
    const topic = 'three'
    const routers = await Promise.all([0, 1, 2].map(async (i) => {
      const file = join(dir, `three-${i}.yaml`)
      await writeFile(file, config({ sink: 'kafka', topic, spool: join(dir, `three-spool-${i}`) }))
      return spawnRouter(file)
    }))
    const served = await Promise.all(routers.map((r, i) => load(r.url, ids(`t${i}`, 400), 4)))
    await Promise.all(routers.map(async (r) => {
      r.child.kill('SIGTERM')
      expect(await r.exited).toBe(0)
    }))
    // The union, read with a plain consumer and written out as the file sink would have, each
    // record once: delivery is at least once (a batch the broker took in part, e.g. while it
    // created the topic, is sent again), and ce_id is what a consumer drops duplicates by.
    const messages = await readTopic(broker.address, topic)
    expect(predictionIds(messages)).toEqual(new Set(served.flat()))
    const unique = [...new Map(messages.map((m) => [m.headers.ce_id, m])).values()]
    const union = join(dir, 'union.jsonl')
    await writeFile(union, unique.map((m) => m.value + '\n').join(''))
    const overFiles = captureIo()
    expect(await runCli(['report', union, '--json'], overFiles.io)).toBe(0)
    const overKafka = captureIo()
    expect(await runCli(['report', '--kafka', broker.address, '--topic', topic, '--from-beginning', '--json'], overKafka.io)).toBe(0)
    const strip = (text: string): unknown => {
      const doc = JSON.parse(text) as Record<string, unknown>
      delete doc.files
      delete doc.source
      delete doc.duplicates
      return doc
    }
    expect((JSON.parse(overKafka.out()) as { duplicates: number }).duplicates).toBe(messages.length - unique.length)
    const report = strip(overKafka.out()) as { records: { predictions: number } }
    expect(report.records.predictions).toBe(1200)
    expect(report).toEqual(strip(overFiles.out()))
    // --since a time after everything: nothing to read.
    const later = captureIo()
    expect(await runCli(['report', '--kafka', broker.address, '--topic', topic, '--since', new Date(Date.now() + 60_000).toISOString(), '--json'], later.io)).toBe(0)
    expect((JSON.parse(later.out()) as { records: { predictions: number } }).records.predictions).toBe(0)
  }, 180_000)
  it('a broker that stops answering mid-read ends the Kafka read with an error after the stall bound, never a hang', async () => {
    const topic = 'stall'
    const producer = kafkaClient({ brokers: [broker.address], client_id: 'stall-test' }).producer()
    await producer.connect()
    // About 3 MiB on one partition: more than one fetch (1 MiB a partition), so the read is under
    // way when the broker is frozen after its first batch.
    const value = JSON.stringify({ type: 'prediction', pad: 'x'.repeat(1000) })
    for (let at = 0; at < 3000; at += 500) {
      await producer.send({ topic, messages: Array.from({ length: 500 }, (_, i) => ({ value, headers: { ce_id: `s-${at + i}` } })) })
    }
    await producer.disconnect()
    const pid = await broker.pid()
    let frozen = false
    let read = 0
    const reader = readKafkaRecords({
      brokers: [broker.address], topic, stallMs: 1500,
      onProgress: () => {
        if (frozen) return
        frozen = true
        process.kill(pid, 'SIGSTOP') // connections stay open; nothing is answered
      },
    })
    try {
      await expect((async () => { for await (const _ of reader) read++ })()).rejects.toThrow(/no message from topic stall for 1\.5 s with \d+ of 3000 still to read/)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    expect(frozen).toBe(true)
    expect(read).toBeGreaterThan(0)
    expect(read).toBeLessThan(3000)
  }, 120_000)
})
