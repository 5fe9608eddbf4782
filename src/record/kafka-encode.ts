// The Kafka sink's own encoding of Produce requests (record batches v2: varints, CRC32C), sent
// through kafkajs' producer, which keeps everything else: metadata, partitioning, the idempotent
// producer's id, epoch and sequences, retries, the connection (TLS, SASL), reading the response.
//
// Why: kafkajs encodes each record through five growable Encoders (512 zeroed bytes each, doubled
// and copied as they fill), turns every string to bytes twice (size, then write) and does the
// timestamps in 64-bit BigInt arithmetic; in the profile of the sink that was most of its CPU per
// record. Here a partition's records are measured once and written once into one buffer.
//
// The hook: kafkajs 2.2.4 (pinned exactly in package.json) looks up the Produce request of the
// version the broker speaks in its request table at every send. For v3 and later (the record
// batch v2 format, the only one an idempotent producer uses), a request whose messages are this
// module's `KafkaMessage`s is encoded here; any other message (another kafkajs user in the same
// process) goes to kafkajs' own encoder. The response is kafkajs' own for that version.
import { createRequire } from 'node:module'
import { promisify } from 'node:util'
import { gzip as gzipCb } from 'node:zlib'
import { lz4Frame } from './lz4.js'

const gzip = promisify(gzipCb)

/** A record on its way to Kafka, as the sink gives it to kafkajs' producer.send(). */
export class KafkaMessage {
  /** The partition key, read by kafkajs' partitioner (murmur2, as the Java client). */
  readonly key: string | null
  /** The record's JSON; kafkajs checks that it is there, this module writes it. */
  readonly value: string
  /** Milliseconds since the epoch (CreateTime). */
  readonly ts: number
  /** The `ce_id` header. */
  readonly id: string
  /** The `ce_type` header's value, shared by every record of the type. */
  readonly type: Buffer
  /** The `ce_source` header's value, shared by every record of the sink. */
  readonly source: Buffer
  constructor(key: string | null, value: string, ts: number, id: string, type: Buffer, source: Buffer) {
    this.key = key
    this.value = value
    this.ts = ts
    this.id = id
    this.type = type
    this.source = source
  }
}

/** What a partition's records are encoded with: the same for every partition of one send. */
export interface BatchParams {
  /** kafkajs' codec number: 0 none, 1 gzip, 3 lz4. */
  readonly compression: number
  readonly producerId: bigint
  readonly producerEpoch: number
  readonly firstSequence: number
}

const CODEC_NONE = 0
const CODEC_GZIP = 1
const CODEC_LZ4 = 3

// Header keys and the fixed header values, with their length varints, written as they are.
const H_SPECVERSION = headerPrefix('ce_specversion', Buffer.from('1.0'))
const K_ID = keyPrefix('ce_id')
const K_SOURCE = keyPrefix('ce_source')
const K_TYPE = keyPrefix('ce_type')

function keyPrefix(key: string): Buffer {
  const k = Buffer.from(key)
  const b = Buffer.allocUnsafe(varintSize(k.length) + k.length)
  b.set(k, writeVarint(b, 0, k.length))
  return b
}

function headerPrefix(key: string, value: Buffer): Buffer {
  const k = keyPrefix(key)
  const b = Buffer.allocUnsafe(k.length + varintSize(value.length) + value.length)
  k.copy(b, 0)
  b.set(value, writeVarint(b, k.length, value.length))
  return b
}

/** Bytes of `n` (a safe integer) as a zigzag varint. */
function varintSize(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1
  let size = 1
  while (z >= 128) {
    z = Math.floor(z / 128)
    size++
  }
  return size
}

/** Writes `n` (a safe integer) as a zigzag varint at `o`; returns the offset after it. */
function writeVarint(b: Buffer, o: number, n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1
  while (z >= 128) {
    b[o++] = (z % 128) | 128
    z = Math.floor(z / 128)
  }
  b[o++] = z
  return o
}

// CRC32C (Castagnoli), as the record batch v2 format checks it, eight bytes a step ("slicing by
// 8", Intel's method; the sink's profile had the table-per-byte loop as its top function): table k
// holds the CRC of a byte followed by k zero bytes, so eight lookups fold in eight bytes at once.
const CRC_TABLES = (() => {
  const t = new Int32Array(256 * 8)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[i] = c
  }
  for (let k = 1; k < 8; k++) {
    for (let i = 0; i < 256; i++) {
      const prev = t[(k - 1) * 256 + i] as number
      t[k * 256 + i] = (prev >>> 8) ^ (t[prev & 0xff] as number)
    }
  }
  return t
})()

/** The CRC32C of `b[from, to)`. */
export function crc32c(b: Uint8Array, from = 0, to = b.length): number {
  const t = CRC_TABLES
  let crc = -1
  let i = from
  for (const end = to - ((to - from) & 7); i < end; i += 8) {
    const x = crc ^ ((b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24))
    crc = (t[1792 + (x & 0xff)] as number) ^ (t[1536 + ((x >>> 8) & 0xff)] as number)
      ^ (t[1280 + ((x >>> 16) & 0xff)] as number) ^ (t[1024 + (x >>> 24)] as number)
      ^ (t[768 + (b[i + 4] as number)] as number) ^ (t[512 + (b[i + 5] as number)] as number)
      ^ (t[256 + (b[i + 6] as number)] as number) ^ (t[b[i + 7] as number] as number)
  }
  for (; i < to; i++) crc = (t[(crc ^ (b[i] as number)) & 0xff] as number) ^ (crc >>> 8)
  return (crc ^ -1) >>> 0
}

/** Writes a non-negative safe integer as int64 (big-endian) at `o`. */
function writeInt64(b: Buffer, o: number, n: number): void {
  b.writeUInt32BE(Math.floor(n / 0x1_0000_0000), o)
  b.writeUInt32BE(n >>> 0, o + 4)
}

/** The records of one batch, one after another (what is compressed when the batch is). */
function encodeRecords(messages: readonly KafkaMessage[], firstTimestamp: number): Buffer {
  const n = messages.length
  const sizes = new Array<number>(n * 4)
  let total = 0
  for (let i = 0; i < n; i++) {
    const m = messages[i] as KafkaMessage
    const keyLen = m.key === null ? -1 : Buffer.byteLength(m.key)
    const valueLen = Buffer.byteLength(m.value)
    const idLen = Buffer.byteLength(m.id)
    const body = 1 + varintSize(m.ts - firstTimestamp) + varintSize(i)
      + varintSize(keyLen) + Math.max(keyLen, 0)
      + varintSize(valueLen) + valueLen
      + 1 // 4 headers
      + H_SPECVERSION.length
      + K_ID.length + varintSize(idLen) + idLen
      + K_SOURCE.length + varintSize(m.source.length) + m.source.length
      + K_TYPE.length + varintSize(m.type.length) + m.type.length
    sizes[i * 4] = body
    sizes[i * 4 + 1] = keyLen
    sizes[i * 4 + 2] = valueLen
    sizes[i * 4 + 3] = idLen
    total += varintSize(body) + body
  }
  const b = Buffer.allocUnsafe(total)
  let o = 0
  for (let i = 0; i < n; i++) {
    const m = messages[i] as KafkaMessage
    const keyLen = sizes[i * 4 + 1] as number
    const valueLen = sizes[i * 4 + 2] as number
    const idLen = sizes[i * 4 + 3] as number
    o = writeVarint(b, o, sizes[i * 4] as number)
    b[o++] = 0 // attributes
    o = writeVarint(b, o, m.ts - firstTimestamp)
    o = writeVarint(b, o, i)
    o = writeVarint(b, o, keyLen)
    if (m.key !== null) o += b.write(m.key, o, keyLen, 'utf8')
    o = writeVarint(b, o, valueLen)
    o += b.write(m.value, o, valueLen, 'utf8')
    b[o++] = 8 // zigzag(4): ce_specversion, ce_id, ce_source, ce_type
    o += H_SPECVERSION.copy(b, o)
    o += K_ID.copy(b, o)
    o = writeVarint(b, o, idLen)
    o += b.write(m.id, o, idLen, 'utf8')
    o += K_SOURCE.copy(b, o)
    o = writeVarint(b, o, m.source.length)
    o += m.source.copy(b, o)
    o += K_TYPE.copy(b, o)
    o = writeVarint(b, o, m.type.length)
    o += m.type.copy(b, o)
  }
  return b
}

// Record batch v2 up to its records: baseOffset 8, batchLength 4, partitionLeaderEpoch 4, magic 1,
// crc 4, attributes 2, lastOffsetDelta 4, firstTimestamp 8, maxTimestamp 8, producerId 8,
// producerEpoch 2, baseSequence 4, records count 4.
const BATCH_HEADER = 61
const CRC_FROM = 21

/** One partition's records as a record batch v2 (its bytes as they go in the Produce request). */
export async function encodeBatch(messages: readonly KafkaMessage[], p: BatchParams): Promise<Buffer> {
  let first = Number.POSITIVE_INFINITY
  let max = 0
  for (const m of messages) {
    if (m.ts < first) first = m.ts
    if (m.ts > max) max = m.ts
  }
  let records = encodeRecords(messages, first)
  if (p.compression === CODEC_LZ4) records = lz4Frame(records)
  else if (p.compression === CODEC_GZIP) records = await gzip(records)
  else if (p.compression !== CODEC_NONE) throw new Error(`compression codec ${p.compression} is not supported by the Kafka sink`)
  const b = Buffer.allocUnsafe(BATCH_HEADER + records.length)
  b.writeUInt32BE(0, 0) // baseOffset: the broker assigns offsets
  b.writeUInt32BE(0, 4)
  b.writeInt32BE(b.length - 12, 8)
  b.writeInt32BE(-1, 12) // partitionLeaderEpoch: the broker's to set
  b[16] = 2 // magic
  b.writeInt16BE(p.compression, 21)
  b.writeInt32BE(messages.length - 1, 23)
  writeInt64(b, 27, first)
  writeInt64(b, 35, max)
  b.writeBigInt64BE(p.producerId, 43)
  b.writeInt16BE(p.producerEpoch, 51)
  b.writeInt32BE(p.firstSequence, 53)
  b.writeInt32BE(messages.length, 57)
  records.copy(b, BATCH_HEADER)
  b.writeUInt32BE(crc32c(b, CRC_FROM), 17)
  return b
}

interface TopicData {
  topic: string
  partitions: Array<{ partition: number; firstSequence?: number; messages: unknown[] }>
}

interface ProduceArgs {
  acks: number
  timeout: number
  compression: number
  topicData: TopicData[]
  transactionalId?: string | null
  producerId: unknown
  producerEpoch: number
}

/** The body of a Produce request v3..v7 (the same layout in each) with our record batches. */
async function encodeProduce(args: ProduceArgs): Promise<Buffer> {
  const parts: Buffer[] = []
  const head = Buffer.allocUnsafe(12)
  head.writeInt16BE(-1, 0) // transactional_id: null
  head.writeInt16BE(args.acks, 2)
  head.writeInt32BE(args.timeout, 4)
  head.writeInt32BE(args.topicData.length, 8)
  parts.push(head)
  for (const t of args.topicData) {
    const name = Buffer.from(t.topic)
    const th = Buffer.allocUnsafe(2 + name.length + 4)
    th.writeInt16BE(name.length, 0)
    name.copy(th, 2)
    th.writeInt32BE(t.partitions.length, 2 + name.length)
    parts.push(th)
    for (const p of t.partitions) {
      const batch = await encodeBatch(p.messages as KafkaMessage[], {
        compression: args.compression,
        producerId: toBigInt(args.producerId),
        producerEpoch: args.producerEpoch,
        firstSequence: p.firstSequence ?? 0,
      })
      const ph = Buffer.allocUnsafe(8)
      ph.writeInt32BE(p.partition, 0)
      ph.writeInt32BE(batch.length, 4)
      parts.push(ph, batch)
    }
  }
  return Buffer.concat(parts)
}

/** kafkajs' producer id: a number (-1, none yet), a decimal string from the broker, or its Long. */
function toBigInt(id: unknown): bigint {
  if (typeof id === 'bigint') return id
  const value = typeof id === 'object' && id !== null ? (id as { value?: unknown }).value : undefined
  return typeof value === 'bigint' ? value : BigInt(String(id))
}

function isOurs(topicData: readonly TopicData[]): boolean {
  return topicData[0]?.partitions[0]?.messages[0] instanceof KafkaMessage
}

type Built = { request: { encode: () => Promise<unknown> } & Record<string, unknown>; response: unknown }
type VersionFn = (args: ProduceArgs) => Built
let isInstalled = false

/** Routes kafkajs' Produce requests (v3 and later) with `KafkaMessage`s through encodeProduce(). */
export function installKafkaEncoder(): void {
  if (isInstalled) return
  isInstalled = true
  const require = createRequire(import.meta.url)
  const produce = require('kafkajs/src/protocol/requests/produce/index.js') as {
    versions: string[]
    protocol: (o: { version: number }) => VersionFn
  }
  const original = produce.protocol
  produce.protocol = ({ version }) => {
    const fn = original({ version })
    if (version < 3) return fn
    return (args) => {
      const built = fn(args)
      // The sink's producer is never transactional: anything else is kafkajs' to encode.
      if (!isOurs(args.topicData) || (args.transactionalId ?? null) !== null) return built
      const encode = async (): Promise<{ buf: Buffer; buffer: Buffer }> => {
        const b = await encodeProduce(args)
        // What kafkajs' request framing reads of an Encoder.
        return { buf: b, buffer: b }
      }
      return { request: { ...built.request, encode }, response: built.response }
    }
  }
}
