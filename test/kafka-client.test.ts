import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
// Importing the sink's client module applies its fix to kafkajs' request queue.
import '../src/record/kafka-client.js'

// kafkajs' per-connection request queue (the class the Kafka sink's producer sends through). In
// kafkajs 2.2.4 it checked its pending requests again every millisecond, forever, once the first
// request had gone: an idle router with a Kafka sink woke ~1000 times a second per connection.
interface Queue {
  pending: unknown[]
  throttledUntil: number
  push(r: { entry: object; expectResponse: boolean; sendRequest: () => void }): void
  fulfillRequest(r: { correlationId: number; payload: Buffer; size: number }): void
  checkPendingRequests(): void
  destroy(): void
}
const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as new (o: object) => Queue
const logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }

function newQueue(maxInFlightRequests: number): { queue: Queue; checks: () => number; sent: number[] } {
  const queue = new RequestQueue({ maxInFlightRequests, requestTimeout: 10_000, enforceRequestTimeout: false, clientId: 'test', broker: '127.0.0.1:9092', logger })
  let checks = 0
  const check = queue.checkPendingRequests.bind(queue)
  queue.checkPendingRequests = () => {
    checks++
    check()
  }
  return { queue, checks: () => checks, sent: [] }
}

/** Pushes request `id`; the "broker" answers it when `answer` is called. */
function request(q: ReturnType<typeof newQueue>, id: number): { done: Promise<unknown>; answer: () => void } {
  let resolve!: (v: unknown) => void
  let reject!: (e: unknown) => void
  const done = new Promise((res, rej) => { resolve = res; reject = rej })
  q.queue.push({
    entry: { apiKey: 0, apiName: 'Produce', apiVersion: 7, correlationId: id, resolve, reject },
    expectResponse: true,
    sendRequest: () => q.sent.push(id),
  })
  return { done, answer: () => q.queue.fulfillRequest({ correlationId: id, payload: Buffer.alloc(0), size: 0 }) }
}

const idle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('the Kafka client request queue', () => {
  it('does nothing between requests once nothing is pending (no timer checking every millisecond)', async () => {
    const q = newQueue(1)
    const r = request(q, 1)
    r.answer()
    await r.done
    const before = q.checks()
    // kafkajs 2.2.4 unpatched: about 100 checks here (one per millisecond, fewer on a loaded machine).
    await idle(150)
    expect(q.checks() - before).toBe(0)
    q.queue.destroy()
  })

  it('still sends a request that waited for an in-flight one, once that one is answered', async () => {
    const q = newQueue(1)
    const first = request(q, 1)
    const second = request(q, 2)
    expect(q.sent).toEqual([1])
    first.answer()
    await first.done
    expect(q.sent).toEqual([1, 2])
    second.answer()
    await second.done
    q.queue.destroy()
  })

  it('still sends a request held by a broker throttle when the throttle ends, with nothing else happening', async () => {
    const q = newQueue(5)
    q.queue.throttledUntil = Date.now() + 30
    const r = request(q, 1)
    expect(q.sent).toEqual([])
    // Nothing but the queue's own timer can send it now.
    for (let i = 0; i < 200 && q.sent.length === 0; i++) await idle(10)
    expect(q.sent).toEqual([1])
    r.answer()
    await r.done
    q.queue.destroy()
  })
})

// kafkajs' grouping of a send's messages by partition and its request framing, replaced by
// kafka-preload.ts (linear; one buffer per request), against kafkajs' own from their files.
describe('kafkajs grouping by partition and request framing', () => {
  it('groups as kafkajs 2.2.4 does: the same partitions, each with its messages in send order', async () => {
    const { groupMessagesPerPartition } = await import('../src/record/kafka-preload.js')
    const require = createRequire(import.meta.url)
    const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js')
    const kept = require.cache[path]
    delete require.cache[path]
    const theirs = require(path) as typeof groupMessagesPerPartition
    if (kept !== undefined) require.cache[path] = kept
    expect(theirs).not.toBe(groupMessagesPerPartition)
    const partitionMetadata = [0, 1, 2, 3, 4].map((partitionId) => ({ partitionId }))
    for (const n of [0, 1, 2, 7, 300]) {
      const messages = Array.from({ length: n }, (_, i) => ({ key: `k${(i * 7919) % 13}`, i }))
      const partitioner = ({ message }: { message: unknown }): number => Number((message as { key: string }).key.slice(1)) % 5
      const args = { topic: 't', partitionMetadata, messages, partitioner }
      expect(groupMessagesPerPartition(args)).toEqual(theirs(args))
    }
    expect(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages: [{}], partitioner: () => 0 })).toEqual({})
  })

  it('frames requests byte for byte as kafkajs 2.2.4 does: kafkajs’ own Encoders and the sink’s Produce bodies; client id null, ASCII, UTF-8', async () => {
    const { frameRequest } = await import('../src/record/kafka-preload.js')
    const require = createRequire(import.meta.url)
    const path = require.resolve('kafkajs/src/protocol/request.js')
    const kept = require.cache[path]
    delete require.cache[path]
    const theirs = require(path) as typeof frameRequest
    if (kept !== undefined) require.cache[path] = kept
    expect(theirs).not.toBe(frameRequest)
    const Encoder = require('kafkajs/src/protocol/encoder.js') as new () => { writeString(s: string): unknown; writeInt32(n: number): unknown; buffer: Buffer; buf: Buffer }
    const encoder = new Encoder()
    encoder.writeString('bench-records')
    encoder.writeInt32(7)
    const big = randomBytes(70_000)
    const bodies = [async () => encoder, async () => ({ buf: big, buffer: big }), async () => ({ buf: Buffer.alloc(0), buffer: Buffer.alloc(0) })]
    for (const encode of bodies) {
      for (const clientId of [null, 'modelsplit', 'modèle-日本']) {
        const args = { correlationId: 123_456, clientId, request: { apiKey: 0, apiVersion: 7, encode } }
        expect((await frameRequest(args)).buffer.equals((await theirs(args)).buffer), String(clientId)).toBe(true)
      }
    }
  })

  it('are the ones kafkajs’ producer and connections use when the sink’s client module loads kafkajs', () => {
    // A process of its own: here kafkajs may already be loaded by another test file's imports.
    const dist = fileURLToPath(new URL('../dist/record/', import.meta.url))
    const script = `const p = await import(${JSON.stringify(`${dist}kafka-preload.js`)}); await import(${JSON.stringify(`${dist}kafka-client.js`)});
      const { createRequire } = await import('node:module'); const require = createRequire(${JSON.stringify(dist)});
      const g = require.cache[require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js')];
      const s = require.cache[require.resolve('kafkajs/src/producer/sendMessages.js')];
      const r = require.cache[require.resolve('kafkajs/src/protocol/request.js')];
      console.log(JSON.stringify({ linear: p.isGroupingLinear, ours: g?.exports === p.groupMessagesPerPartition, producerLoaded: s !== undefined, framing: p.isFramingOurs, framingOurs: r?.exports === p.frameRequest }))`
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual({ linear: true, ours: true, producerLoaded: true, framing: true, framingOurs: true })
  })
})
