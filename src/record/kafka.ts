import { hostname } from 'node:os'
import type { Producer } from 'kafkajs'
import type { KafkaSinkConfig } from '../config/types.js'
import { cloudEventType, type Envelope } from './envelope.js'
import { kafkaClient, kafkajs } from './kafka-client.js'
import { KafkaMessage, installKafkaEncoder } from './kafka-encode.js'
import { createSinkPartitioner } from './kafka-partition.js'
import { SinkError, isNetworkError, type Transport } from './transport.js'

const { CompressionTypes } = kafkajs

const COMPRESSION = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, lz4: CompressionTypes.LZ4 } as const

// Protocol errors that say a record can never be taken, whatever the retries.
const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD'])

/**
 * Produces records to one topic, keyed by request id (decisions: by route), so every record of a
 * request lands in one partition. Each message is a CloudEvent in the Kafka binding's binary mode:
 * the value is the record's JSON exactly as the file sink writes it, `ce_*` headers say what it is,
 * and `ce_id` lets a consumer drop a duplicate. With `acks: all` the producer is idempotent.
 */
export class KafkaTransport implements Transport {
  readonly name = 'kafka' as const
  readonly destination: string
  readonly #config: KafkaSinkConfig
  readonly #client: ReturnType<typeof kafkaClient>
  readonly #source: string
  readonly #sourceBuf: Buffer
  readonly #types = new Map<string, Buffer>()
  #producer: Producer | undefined
  #connecting: Promise<void> | undefined
  #isClosed = false

  constructor(config: KafkaSinkConfig, opts: { source?: string } = {}) {
    this.#config = config
    this.destination = `${config.brokers.join(',')}/${config.topic}`
    this.#client = kafkaClient(config)
    this.#source = opts.source ?? `/modelsplit/${hostname()}`
    this.#sourceBuf = Buffer.from(this.#source)
    installKafkaEncoder()
  }

  #typeBuf(type: string): Buffer {
    let b = this.#types.get(type)
    if (b === undefined) this.#types.set(type, b = Buffer.from(cloudEventType(type)))
    return b
  }

  connect(): Promise<void> {
    if (this.#isClosed) return Promise.reject(new SinkError('other', 'the Kafka sink is closed'))
    this.#connecting ??= this.#connect().catch((err: unknown) => {
      this.#connecting = undefined
      throw toSinkError(err)
    })
    return this.#connecting
  }

  async #connect(): Promise<void> {
    const isIdempotent = this.#config.acks === 'all'
    const producer = this.#client.producer({
      idempotent: isIdempotent,
      // An idempotent producer keeps order with one request in flight per broker.
      maxInFlightRequests: isIdempotent ? 1 : 5,
      // kafkajs' DefaultPartitioner (Java's), with murmur2 in 32-bit arithmetic rather than BigInt.
      createPartitioner: createSinkPartitioner,
      retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1000 },
    })
    this.#producer = producer
    try {
      await producer.connect()
    } catch (err) {
      this.#producer = undefined
      await producer.disconnect().catch(() => {})
      throw err
    }
  }

  async send(envelopes: readonly Envelope[]): Promise<void> {
    await this.connect()
    const producer = this.#producer as Producer
    // Each record with the CloudEvents attributes the Kafka binding requires (ce_specversion,
    // ce_id, ce_source, ce_type) as headers and the record's `ts` as its timestamp, encoded by
    // kafka-encode.ts rather than by kafkajs.
    const messages = new Array<KafkaMessage>(envelopes.length)
    for (let i = 0; i < envelopes.length; i++) {
      const e = envelopes[i] as Envelope
      messages[i] = new KafkaMessage(e.key, e.value, Date.parse(e.time) || Date.now(), e.id, this.#typeBuf(e.type), this.#sourceBuf)
    }
    try {
      await producer.send({ topic: this.#config.topic, acks: this.#config.acks === 'all' ? -1 : 1, compression: COMPRESSION[this.#config.compression], messages })
    } catch (err) {
      const e = toSinkError(err)
      // After anything but a plain network failure, start over with a new producer (and producer
      // id): an idempotent producer whose sequence the broker lost would otherwise fail forever.
      if (e.reason !== 'unreachable') await this.#reset()
      throw e
    }
  }

  async #reset(): Promise<void> {
    const producer = this.#producer
    this.#producer = undefined
    this.#connecting = undefined
    await producer?.disconnect().catch(() => {})
  }

  async close(): Promise<void> {
    this.#isClosed = true
    await this.#connecting?.catch(() => {})
    await this.#reset()
  }
}

/** A kafkajs error as a SinkError with one of our reasons. */
export function toSinkError(err: unknown): SinkError {
  if (err instanceof SinkError) return err
  const message = err instanceof Error ? err.message : String(err)
  const chain: Array<{ name?: unknown; type?: unknown }> = []
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError, depth++) {
    chain.push(e as { name?: unknown; type?: unknown })
  }
  const names = chain.map((e) => String(e.name))
  const types = chain.map((e) => String(e.type))
  if (types.some((t) => TOO_LARGE.has(t))) return new SinkError('too_large', `the broker refused the records as too large: ${message}`, true, { cause: err })
  if (names.includes('KafkaJSRequestTimeoutError') || names.includes('KafkaJSTimeout')) return new SinkError('timeout', `the broker did not answer in time: ${message}`, false, { cause: err })
  if (isNetworkError(err) || names.some((n) => n === 'KafkaJSConnectionError' || n === 'KafkaJSConnectionClosedError' || n === 'KafkaJSBrokerNotFound' || n === 'KafkaJSNoBrokerAvailableError')) {
    return new SinkError('unreachable', `cannot reach the brokers: ${message}`, false, { cause: err })
  }
  if (names.includes('KafkaJSProtocolError') || names.includes('KafkaJSSASLAuthenticationError')) return new SinkError('rejected', `the broker refused the records: ${message}`, false, { cause: err })
  return new SinkError('other', message, false, { cause: err })
}
