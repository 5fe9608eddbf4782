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

function install(): boolean {
  if ((require('kafkajs/package.json') as { version: string }).version !== '2.2.4') return false
  if (require.cache[require.resolve('kafkajs/src/producer/sendMessages.js')] !== undefined) return false
  const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js')
  require(path)
  const mod = require.cache[path]
  if (mod === undefined) return false
  mod.exports = groupMessagesPerPartition
  return true
}

/** Whether kafkajs' producer groups with groupMessagesPerPartition() above (false: its own). */
export const isGroupingLinear = install()
