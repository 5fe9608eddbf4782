// Changes to kafkajs that must be made before kafkajs itself is loaded: kafka-client.ts imports
// this module first. kafkajs' modules keep what they require in constants, so a module replaced
// after its users loaded would not be used by them.
//
// kafkajs 2.2.4 groups a send's messages by partition with a reduce that copies the partition's
// array for every message (`[...current, message]`) and builds an object for each: quadratic in
// the records per partition, about a microsecond a record at the bench's batches of ~25 per
// partition and far more for the 1 MiB batches of a spool drain (issue 22). The same grouping
// here appends. Only on the version it was written for, and only if kafkajs' producer is not
// loaded yet (something else in the process imported kafkajs first): otherwise kafkajs keeps its own.
//
// It also frames every request (size, api key and version, correlation id, client id, body) into
// one buffer of the right size, where kafkajs copied the body into a 512-byte zeroed Encoder grown
// by doubling (zeroed again), then all of it into a second one: two zeroed buffers of the next
// power of two and two copies per request, 4 MiB for a Produce request of 1 MiB.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

interface GroupArgs {
  topic: string
  partitionMetadata: readonly unknown[]
  messages: readonly unknown[]
  partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: unknown }) => number
}

/** kafkajs' groupMessagesPerPartition, in linear time: partition -> its messages, in send order. */
export function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: GroupArgs): Record<number, unknown[]> {
  const result: Record<number, unknown[]> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const list = result[partition]
    if (list === undefined) result[partition] = [message]
    else list.push(message)
  }
  return result
}

interface RequestArgs {
  correlationId: number
  clientId: string | null | undefined
  request: { apiKey: number; apiVersion: number; encode: () => Promise<{ buffer: Buffer }> }
}

/** kafkajs' request framing (protocol/request.js), into one buffer: what the connection writes. */
export async function frameRequest({ correlationId, clientId, request }: RequestArgs): Promise<{ buffer: Buffer }> {
  const body = (await request.encode()).buffer
  const clientLen = clientId == null ? 0 : Buffer.byteLength(clientId)
  const b = Buffer.allocUnsafe(14 + clientLen + body.length)
  b.writeInt32BE(b.length - 4, 0)
  b.writeInt16BE(request.apiKey, 4)
  b.writeInt16BE(request.apiVersion, 6)
  b.writeInt32BE(correlationId, 8)
  // A Kafka nullable string: int16 length, -1 for null.
  b.writeInt16BE(clientId == null ? -1 : clientLen, 12)
  if (clientId != null) b.write(clientId, 14, clientLen, 'utf8')
  body.copy(b, 14 + clientLen)
  return { buffer: b }
}

/** Replaces kafkajs' module at `path` (relative to kafkajs) unless its user `before` is loaded already. */
function replace(path: string, before: string, exports: unknown): boolean {
  if (require.cache[require.resolve(`kafkajs/${before}`)] !== undefined) return false
  const resolved = require.resolve(`kafkajs/${path}`)
  require(resolved)
  const mod = require.cache[resolved]
  if (mod === undefined) return false
  mod.exports = exports
  return true
}

const isKafkajs224 = (require('kafkajs/package.json') as { version: string }).version === '2.2.4'

/** Whether kafkajs' producer groups with groupMessagesPerPartition() above (false: its own). */
export const isGroupingLinear = isKafkajs224
  && replace('src/producer/groupMessagesPerPartition.js', 'src/producer/sendMessages.js', groupMessagesPerPartition)

/** Whether kafkajs' connections frame requests with frameRequest() above (false: its own). */
export const isFramingOurs = isKafkajs224 && replace('src/protocol/request.js', 'src/network/connection.js', frameRequest)
