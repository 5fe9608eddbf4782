import { randomUUID } from 'node:crypto'
import { kafkaClient } from './kafka-client.js'

export interface ReadKafkaOptions {
  readonly brokers: readonly string[]
  readonly topic: string
  /** Only records the broker stamped at or after this time (default: from the beginning). */
  readonly since?: Date
  /** Called after each batch with records read so far and the total to read (offsets, sized when reading starts). */
  readonly onProgress?: (read: number, total: number) => void
  /**
   * How long the read may go without a batch while records are still to come before it fails
   * (default 60 s: a broker restart and the consumer group's rejoin fit in it). The read never
   * hangs: a consumer that reconnected but receives nothing is an error, never a wait forever.
   */
  readonly stallMs?: number
}

/** How long a read waits without a batch before it fails, unless told otherwise. */
export const DEFAULT_STALL_MS = 60_000

/** The iterable readKafkaRecords returns: iterate once; the counts grow as it goes. */
export interface KafkaRecordReader extends AsyncIterable<Record<string, unknown>> {
  /** Messages whose value is not a JSON object. */
  readonly skipped: number
  /** Records yielded. */
  readonly read: number
  /** Messages dropped because a message with the same `ce_id` was read before (a sink's retry). */
  readonly duplicates: number
}

// Messages held between the consumer and the reader, at most, before the consumer waits.
const HIGH_WATER = 10_000

/**
 * Streams the records of a topic as it stands when reading starts: every partition from its
 * start (or from the first offset at `since`) up to its end at that moment, then stops. A message
 * whose `ce_id` header was seen before is a duplicate from an at-least-once retry and is skipped,
 * so the records read are each record once. Order is per partition, not across partitions.
 */
export function readKafkaRecords(opts: ReadKafkaOptions): KafkaRecordReader {
  let skipped = 0
  let read = 0
  let duplicates = 0

  async function * iterate(): AsyncGenerator<Record<string, unknown>> {
    const kafka = kafkaClient({ brokers: opts.brokers, client_id: 'modelsplit-report' })
    const admin = kafka.admin()
    await admin.connect()
    // `next`: the first offset of the partition not read yet. A consumer that kafkajs restarted after
    // a crash, or that rejoins its group, fetches from the partition's start again (nothing is
    // committed): what it had read is skipped, so each message is still read once.
    let ranges: Map<number, { start: bigint; end: bigint; next: bigint }>
    try {
      const ends = await admin.fetchTopicOffsets(opts.topic)
      const starts = opts.since === undefined ? undefined : await admin.fetchTopicOffsetsByTimestamp(opts.topic, opts.since.getTime())
      ranges = new Map(ends.map((p) => {
        const at = starts?.find((s) => s.partition === p.partition)?.offset
        // fetchTopicOffsetsByTimestamp gives -1 when nothing is that recent: nothing to read there.
        const start = at === undefined ? BigInt(p.low) : BigInt(at) < 0n ? BigInt(p.high) : BigInt(at)
        return [p.partition, { start, end: BigInt(p.high), next: start }]
      }))
    } finally {
      await admin.disconnect()
    }
    let total = 0
    const open = new Set<number>()
    for (const [partition, r] of ranges) {
      if (r.start < r.end) {
        open.add(partition)
        total += Number(r.end - r.start)
      }
    }
    if (open.size === 0) return

    const queue: Record<string, unknown>[] = []
    const seen = new Set<string>()
    let wake: (() => void) | undefined
    let resume: (() => void) | undefined
    let failure: unknown
    let consumed = 0
    const signal = (): void => {
      const w = wake
      wake = undefined
      w?.()
    }
    const consumer = kafka.consumer({ groupId: `modelsplit-report-${randomUUID()}`, allowAutoTopicCreation: false })
    consumer.on(consumer.events.CRASH, (e) => {
      // A retriable error (the broker went away) restarts the consumer by itself; the stall bound
      // below still ends a read that gets nothing after it. Anything else ends the read now.
      if (e.payload.restart) return
      failure ??= new Error(`the consumer of topic ${opts.topic} stopped (${e.payload.error.message}) with ${total - consumed} of ${total} still to read`)
      signal()
    })
    try {
      await consumer.connect()
      await consumer.subscribe({ topic: opts.topic, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          const range = ranges.get(batch.partition)
          if (range === undefined || !open.has(batch.partition)) return
          for (const m of batch.messages) {
            const offset = BigInt(m.offset)
            resolveOffset(m.offset)
            if (offset < range.next) continue
            if (offset >= range.end) break
            range.next = offset + 1n
            consumed++
            if (offset === range.end - 1n) open.delete(batch.partition)
            const id = m.headers?.ce_id?.toString()
            if (id !== undefined) {
              if (seen.has(id)) {
                duplicates++
                continue
              }
              seen.add(id)
            }
            let value: unknown
            try {
              value = JSON.parse(m.value?.toString('utf8') ?? '')
            } catch {
              value = undefined
            }
            if (typeof value !== 'object' || value === null || Array.isArray(value)) skipped++
            else queue.push(value as Record<string, unknown>)
          }
          opts.onProgress?.(consumed, total)
          signal()
          while (queue.length > HIGH_WATER) {
            await new Promise<void>((resolve) => { resume = resolve })
            await heartbeat()
          }
        },
      })
      for (const [partition, r] of ranges) if (open.has(partition)) consumer.seek({ topic: opts.topic, partition, offset: String(r.start) })
      for (;;) {
        while (queue.length > 0) {
          const record = queue.shift() as Record<string, unknown>
          read++
          if (queue.length <= HIGH_WATER) {
            const r = resume
            resume = undefined
            r?.()
          }
          yield record
        }
        if (failure !== undefined) throw failure
        if (open.size === 0) break
        await new Promise<void>((resolve) => {
          const stallMs = opts.stallMs ?? DEFAULT_STALL_MS
          const timer = setTimeout(() => {
            failure ??= new Error(`no message from topic ${opts.topic} for ${stallMs / 1000} s with ${total - consumed} of ${total} still to read (is the broker up?)`)
            wake = undefined
            resolve()
          }, stallMs)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    } finally {
      resume?.()
      // A consumer whose broker stopped answering may wait on its fetch to leave: bounded, so a
      // failed read ends (the client's own request timeout closes what is left).
      let bound: NodeJS.Timeout | undefined
      await Promise.race([
        consumer.disconnect().catch(() => {}),
        new Promise<void>((resolve) => { bound = setTimeout(resolve, 10_000) }),
      ])
      clearTimeout(bound)
    }
  }

  return {
    get skipped() { return skipped },
    get read() { return read },
    get duplicates() { return duplicates },
    [Symbol.asyncIterator]: iterate,
  }
}
