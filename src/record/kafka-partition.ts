// The Kafka sink's partitioner: kafkajs' DefaultPartitioner (the Java client's: murmur2 of the
// key's UTF-8 bytes, positive, modulo the partitions; no key: round robin over the partitions with
// a leader), with murmur2 in 32-bit integer arithmetic. kafkajs computes it with its 64-bit Long
// (BigInt) type, which took a tenth of the sink's CPU per record; the partition is the same for
// every key (test/kafka-encode.test.ts checks it against kafkajs' own murmur2).
import { randomBytes } from 'node:crypto'

const SEED = 0x9747b28c
const M = 0x5bd1e995

/** The Java client's murmur2 (Utils.murmur2) of `data[0, length)`, as a signed 32-bit integer. */
function murmur2Bytes(data: Uint8Array, length: number): number {
  let h = (SEED ^ length) | 0
  const length4 = length >>> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = (data[i4] as number) | ((data[i4 + 1] as number) << 8) | ((data[i4 + 2] as number) << 16) | ((data[i4 + 3] as number) << 24)
    k = Math.imul(k, M)
    k ^= k >>> 24
    k = Math.imul(k, M)
    h = Math.imul(h, M) ^ k
  }
  const tail = length & ~3
  const rest = length & 3
  if (rest === 3) h ^= (data[tail + 2] as number) << 16
  if (rest >= 2) h ^= (data[tail + 1] as number) << 8
  if (rest >= 1) h = Math.imul(h ^ (data[tail] as number), M)
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

// Keys are UTF-8 encoded into this buffer (grown when a key is longer), not into a new one each.
let scratch = Buffer.allocUnsafe(256)

/** murmur2 of the UTF-8 bytes of `key`. */
export function murmur2(key: string): number {
  if (key.length * 3 > scratch.length) scratch = Buffer.allocUnsafe(key.length * 3)
  return murmur2Bytes(scratch, scratch.write(key, 0, 'utf8'))
}

interface PartitionMetadata { readonly partitionId: number; readonly leader: number }

type PartitionerArgs = {
  topic: string
  partitionMetadata: readonly PartitionMetadata[]
  message: { key?: unknown; partition?: unknown }
}

/** A kafkajs `createPartitioner`: the same partition as its DefaultPartitioner for every message. */
export function createSinkPartitioner(): (args: PartitionerArgs) => number {
  const counters = new Map<string, number>()
  return ({ topic, partitionMetadata, message }) => {
    if (typeof message.partition === 'number') return message.partition
    const numPartitions = partitionMetadata.length
    if (typeof message.key === 'string') return (murmur2(message.key) & 0x7fffffff) % numPartitions
    let counter = counters.get(topic) ?? randomBytes(4).readUInt32BE(0)
    counters.set(topic, ++counter)
    const available = partitionMetadata.filter((p) => p.leader >= 0)
    if (available.length > 0) return (available[(counter & 0x7fffffff) % available.length] as PartitionMetadata).partitionId
    return (counter & 0x7fffffff) % numPartitions
  }
}
