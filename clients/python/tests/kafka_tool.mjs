// The Kafka side of the at-scale end-to-end test (test_at_scale_spark.py), with the client the
// router's own sink is built on (dist/record/kafka-client.js: kafkajs with LZ4), never the code
// under test's reader:
//   node kafka_tool.mjs create BROKER TOPIC           a topic of one partition (its order is the order of the records)
//   node kafka_tool.mjs dump BROKER TOPIC             every message to its current end, one JSON line each:
//                                                     {partition, offset, key, value, headers}
//   node kafka_tool.mjs produce BROKER TOPIC < LINES  each stdin line {key, value, headers} produced, in order
import { createInterface } from 'node:readline'
import { kafkaClient } from '../../../dist/record/kafka-client.js'

const [cmd, broker, topic] = process.argv.slice(2)
const kafka = kafkaClient({ brokers: [broker], client_id: 'at-scale-test' }, { requestTimeoutMs: 30_000, connectionTimeoutMs: 10_000 })

if (cmd === 'create') {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true })
  await admin.disconnect()
} else if (cmd === 'produce') {
  const producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 })
  await producer.connect()
  const messages = []
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue
    const m = JSON.parse(line)
    messages.push({ key: m.key ?? null, value: m.value, headers: m.headers ?? {}, partition: 0 })
  }
  await producer.send({ topic, messages, acks: -1 })
  await producer.disconnect()
} else if (cmd === 'dump') {
  const admin = kafka.admin()
  await admin.connect()
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]))
  await admin.disconnect()
  const left = new Set([...ends].filter(([, high]) => high > 0).map(([p]) => p))
  const out = []
  if (left.size > 0) {
    const consumer = kafka.consumer({ groupId: `dump-${process.pid}-${Date.now()}` })
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reading ${topic} timed out`)), 120_000)
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          out.push({
            partition, offset: Number(message.offset), key: message.key?.toString() ?? null, value: message.value?.toString() ?? '',
            headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
          })
          if (Number(message.offset) + 1 >= (ends.get(partition) ?? 0)) left.delete(partition)
          if (left.size === 0) { clearTimeout(timer); resolve() }
        },
      })
    })
    await consumer.disconnect()
  }
  out.sort((a, b) => a.partition - b.partition || a.offset - b.offset)
  for (const m of out) process.stdout.write(JSON.stringify(m) + '\n')
} else {
  process.stderr.write('usage: kafka_tool.mjs create|dump|produce BROKER TOPIC\n')
  process.exit(2)
}
