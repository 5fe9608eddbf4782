import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DeliverySink, type DeliverySinkOptions } from '../src/record/delivery.js'
import type { Envelope } from '../src/record/envelope.js'
import { SinkError, type Transport } from '../src/record/transport.js'

const dirs: string[] = []
const sinks: DeliverySink[] = []
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.close()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** A destination that can be taken down, slowed or made to refuse large batches. */
class FakeTransport implements Transport {
  readonly name = 'kafka' as const
  readonly destination = 'fake'
  received: Envelope[] = []
  sends = 0
  isDown = false
  delayMs = 0
  maxCount = Infinity
  async connect(): Promise<void> {
    if (this.isDown) throw new SinkError('unreachable', 'down')
  }
  async send(envelopes: readonly Envelope[]): Promise<void> {
    this.sends++
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs))
    if (this.isDown) throw new SinkError('unreachable', 'down')
    if (envelopes.length > this.maxCount) throw new SinkError('too_large', 'too large', true)
    this.received.push(...envelopes)
  }
  async close(): Promise<void> {}
  keys(): string[] {
    return this.received.map((e) => e.key ?? '')
  }
}

async function setup(over: Partial<DeliverySinkOptions> = {}, dir?: string): Promise<{ sink: DeliverySink; transport: FakeTransport; dir: string; results: Record<string, number>; errors: string[] }> {
  dir ??= await mkdtemp(join(tmpdir(), 'modelsplit-delivery-'))
  if (!dirs.includes(dir)) dirs.push(dir)
  const transport = (over.transport as FakeTransport | undefined) ?? new FakeTransport()
  const results: Record<string, number> = { written: 0, dropped: 0 }
  const errors: string[] = []
  const sink = new DeliverySink({
    transport, spoolDir: join(dir, 'spool'), spoolMaxBytes: 1 << 20, lingerMs: 5, maxBatchBytes: 4096, closeTimeoutMs: 500,
    onResult: (r, n) => { results[r] = (results[r] ?? 0) + n },
    onSinkError: (reason) => errors.push(reason),
    ...over,
  })
  sinks.push(sink)
  await sink.started
  return { sink, transport, dir, results, errors }
}

const rec = (i: number): object => ({ type: 'prediction', schema: 1, ts: new Date(0).toISOString(), request_id: `r${i}`, route: 'a', pad: 'x'.repeat(100) })
const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('DeliverySink', () => {
  it('sends records in batches, in order, and counts them written once acknowledged', async () => {
    const { sink, transport, results } = await setup()
    for (let i = 0; i < 500; i++) expect(sink.write(rec(i))).toBe(true)
    await sink.flush()
    expect(transport.keys()).toEqual(Array.from({ length: 500 }, (_, i) => `r${i}`))
    expect(transport.sends).toBeGreaterThan(10)
    expect(results).toEqual({ written: 500, dropped: 0 })
    expect(JSON.parse(transport.received[0]?.value ?? '')).toEqual(rec(0))
  })

  it('spools while the destination is down and sends everything, in order, once it is back', async () => {
    const transport = new FakeTransport()
    transport.isDown = true
    const { sink, results, errors } = await setup({ transport })
    for (let i = 0; i < 300; i++) sink.write(rec(i))
    // Out of memory is not yet in the spool: an append may still be under way, so wait for the bytes too.
    await until(() => sink.status().state === 'spooling' && sink.stats().buffered === 0 && sink.status().spooled_bytes > 300 * 100)
    expect(sink.status().reachable).toBe(false)
    expect(errors[0]).toBe('unreachable')
    // A feedback batch is acknowledged once it is in the spool.
    expect(await sink.writeBatch([rec(300), rec(301)], { timeoutMs: 1000 })).toBe(true)
    for (let i = 302; i < 400; i++) sink.write(rec(i))
    transport.isDown = false
    await sink.flush()
    expect(transport.keys()).toEqual(Array.from({ length: 400 }, (_, i) => `r${i}`))
    expect(results).toEqual({ written: 400, dropped: 0 })
    await until(() => sink.status().state === 'delivering')
    expect(sink.status()).toMatchObject({ reachable: true, spooled_bytes: 0 })
  })

  it('leaves what it could not send in the spool at close, and the next sink sends it first', async () => {
    const down = new FakeTransport()
    down.isDown = true
    const first = await setup({ transport: down, closeTimeoutMs: 50 })
    for (let i = 0; i < 100; i++) first.sink.write(rec(i))
    expect(await first.sink.writeBatch([rec(100)], { timeoutMs: 1000 })).toBe(true)
    await first.sink.close()
    expect(first.results.written).toBe(0)
    const second = await setup({}, first.dir)
    second.sink.write(rec(101))
    await until(() => second.transport.received.length === 102)
    expect(second.transport.keys()).toEqual(Array.from({ length: 102 }, (_, i) => `r${i}`))
  })

  it('drops and counts records when the spool is full, and refuses a batch it has no room for', async () => {
    const transport = new FakeTransport()
    transport.isDown = true
    const warnings: unknown[] = []
    const { sink, results } = await setup({ transport, spoolMaxBytes: 1 << 20, onDropWarning: (w) => warnings.push(w) })
    const big = (i: number): object => ({ ...rec(i), pad: 'y'.repeat(10_000) })
    for (let i = 0; i < 150; i++) sink.write(big(i))
    await until(() => sink.stats().buffered === 0 && results.dropped! > 0)
    expect(sink.status().spooled_bytes).toBeLessThanOrEqual(1 << 20)
    expect(results.dropped).toBeGreaterThan(40)
    expect(warnings[0]).toMatchObject({ reasons: { spool_full: expect.any(Number) } })
    expect(await sink.writeBatch([big(1000)], { timeoutMs: 50 })).toBe(false)
    expect(sink.write(rec(2000))).toBe(true)
  })

  it('sends halves of a batch the destination refuses as too large, and quarantines a record too large alone', async () => {
    const transport = new FakeTransport()
    transport.maxCount = 3
    const { sink, results, dir } = await setup({ transport })
    for (let i = 0; i < 20; i++) sink.write(rec(i))
    await sink.flush()
    expect(transport.keys()).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`))
    transport.maxCount = 0
    sink.write(rec(20))
    await sink.flush()
    expect(results).toEqual({ written: 20, dropped: 0 })
    expect(sink.stats().quarantined).toBe(1)
    const kept = JSON.parse(await readFile(join(dir, 'spool', 'quarantine.jsonl'), 'utf8')) as { record: string }
    expect(JSON.parse(kept.record)).toEqual(rec(20))
  })

  it('spools records that pile up behind a slow destination, and feedback does not wait on it', async () => {
    const transport = new FakeTransport()
    transport.delayMs = 300
    const { sink } = await setup({ transport, spillBytes: 8192 })
    for (let i = 0; i < 200; i++) sink.write(rec(i))
    const t0 = Date.now()
    expect(await sink.writeBatch([rec(200)], { timeoutMs: 100 })).toBe(true)
    expect(Date.now() - t0).toBeLessThan(1000)
    transport.delayMs = 0
    await sink.flush()
    expect(transport.keys()).toEqual(Array.from({ length: 201 }, (_, i) => `r${i}`))
  })
})

describe('DeliverySink across a reload', () => {
  it('waits for the sink it replaces to let go of the spool, then sends what that one left, first', async () => {
    const down = new FakeTransport()
    down.isDown = true
    const old = await setup({ transport: down, closeTimeoutMs: 100 })
    for (let i = 0; i < 10; i++) old.sink.write(rec(i))
    const transport = new FakeTransport()
    const next = new DeliverySink({ transport, spoolDir: join(old.dir, 'spool'), spoolMaxBytes: 1 << 20, lingerMs: 5, maxBatchBytes: 4096, closeTimeoutMs: 500 })
    sinks.push(next)
    // The new sink takes records at once, and holds them until the spool is its own.
    for (let i = 10; i < 15; i++) expect(next.write(rec(i))).toBe(true)
    let isStarted = false
    void next.started.then(() => { isStarted = true })
    await new Promise((r) => setTimeout(r, 300))
    expect(isStarted).toBe(false)
    expect(next.status().state).toBe('starting')
    await old.sink.close()
    await next.flush()
    expect(transport.keys()).toEqual(Array.from({ length: 15 }, (_, i) => `r${i}`))
  })
})
