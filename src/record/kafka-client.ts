// kafkajs set up the way both the Kafka sink and the Kafka reader need it: LZ4 registered, no
// logging of its own (failures reach us as errors, counted and logged once by the sink), and the
// connection options read from the sink's config, secrets read from their files here and now.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
// First, before kafkajs loads: see the module.
import './kafka-preload.js'
import kafkajs, { type KafkaConfig, type SASLOptions } from 'kafkajs'
import type { KafkaSinkConfig } from '../config/types.js'
import { lz4Frame, lz4Unframe } from './lz4.js'

const { CompressionCodecs, CompressionTypes, Kafka, logLevel } = kafkajs

CompressionCodecs[CompressionTypes.LZ4] = () => ({
  compress: async (encoder: { buffer: Buffer }) => lz4Frame(encoder.buffer),
  decompress: async (buffer: Buffer) => lz4Unframe(buffer),
})

// kafkajs 2.2.4 (pinned exactly) re-arms a timer in every connection's request queue after each
// check of its pending requests, even with none pending and no throttle: the delay is then
// negative, so the check runs again a millisecond later, forever, from the first request on. A
// router with a Kafka sink woke about a thousand times a second per broker connection, idle or
// not (issue 22: most of what the sink cost per record at 500 records a second). The check is
// only scheduled when there is something to check: requests waiting, or a throttle to wait out.
// A request that cannot go at once is queued through push(), which schedules the check itself.
interface RequestQueueProto {
  pending: unknown[]
  throttledUntil: number
  scheduleCheckPendingRequests(this: RequestQueueProto): void
}
// Only on the version it was written for: another kafkajs is left as it is (and still works).
const requireKafka = createRequire(import.meta.url)
if ((requireKafka('kafkajs/package.json') as { version: string }).version === '2.2.4') {
  const RequestQueue = requireKafka('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueProto }
  const scheduleCheck = RequestQueue.prototype.scheduleCheckPendingRequests
  RequestQueue.prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueueProto): void {
    if (this.pending.length === 0 && !(this.throttledUntil > Date.now())) return
    scheduleCheck.call(this)
  }
}

export { kafkajs }

/** What a Kafka client connects with: the brokers and, when configured, SASL and TLS. */
export type KafkaConnection = Pick<KafkaSinkConfig, 'brokers' | 'client_id' | 'sasl' | 'tls'>

/** A kafkajs client for `conn`; reads the password and TLS files now. */
export function kafkaClient(conn: KafkaConnection, opts: { connectionTimeoutMs?: number; requestTimeoutMs?: number } = {}): InstanceType<typeof Kafka> {
  const config: KafkaConfig = {
    clientId: conn.client_id,
    brokers: [...conn.brokers],
    connectionTimeout: opts.connectionTimeoutMs ?? 3000,
    requestTimeout: opts.requestTimeoutMs ?? 10_000,
    logLevel: logLevel.NOTHING,
    // The sink retries from its spool; the client's own retries only cover blips.
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1000 },
  }
  if (conn.tls !== undefined) {
    const t = conn.tls
    config.ssl = {
      ...(t.ca_file !== undefined ? { ca: [readFileSync(t.ca_file)] } : {}),
      ...(t.cert_file !== undefined ? { cert: readFileSync(t.cert_file) } : {}),
      ...(t.key_file !== undefined ? { key: readFileSync(t.key_file) } : {}),
    }
  }
  if (conn.sasl !== undefined) {
    const password = readFileSync(conn.sasl.password_file, 'utf8').replace(/\r?\n$/, '')
    config.sasl = { mechanism: conn.sasl.mechanism, username: conn.sasl.username, password } as SASLOptions
  }
  return new Kafka(config)
}
