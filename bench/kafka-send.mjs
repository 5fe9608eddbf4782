// The Kafka sink's transport alone: CPU per send of B records (KafkaTransport.send, one at a time as
// the delivery loop sends, acks all / idempotent, lz4), against a running broker. The records are
// built before the measured sends, so only the transport's work (and its GC) is counted.
//
//   node bench/kafka-send.mjs --kafka HOST:PORT [--dist DIR[,DIR2…]] [--batch B] [--sends N] [--warm W] [--rounds R]
//
// Each --dist runs in a child process of its own, round-robin for --rounds rounds (as
// bench/record-cost.mjs), so builds compare under the same machine load. --batch 74 is what the
// bench's ms-record-kafka sends (about 3 600 records/s, linger 20 ms); 2500 is a 1 MiB spool drain.
import { execFileSync } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    dist: { type: 'string', default: fileURLToPath(new URL('../dist', import.meta.url)) },
    kafka: { type: 'string' },
    batch: { type: 'string', default: '74' },
    sends: { type: 'string', default: '800' },
    warm: { type: 'string', default: '1500' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'boolean', default: false },
  },
})
if (values.kafka === undefined) throw new Error('--kafka HOST:PORT is required (scripts/kafka/broker.sh start DIR PORT)')

if (!values.child) {
  const dists = values.dist.split(',').map((d) => resolve(d))
  const results = new Map(dists.map((d) => [d, []]))
  const args = process.argv.slice(2).filter((a, i, all) => a !== '--dist' && all[i - 1] !== '--dist' && !a.startsWith('--dist='))
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const d of dists) {
      const out = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--dist', d, ...args], { encoding: 'utf8' }))
      results.get(d).push(out.cpuUsPerSend)
      process.stderr.write(`round ${r + 1} ${d}: ${out.cpuUsPerSend.toFixed(0)} µs/send, ${(out.cpuUsPerSend / out.batch).toFixed(1)} µs/record\n`)
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const [d, xs] of results) console.log(`${d}: median ${median(xs).toFixed(0)} µs/send, ${(median(xs) / Number(values.batch)).toFixed(1)} µs/record (${xs.map((x) => x.toFixed(0)).join(', ')})`)
} else {
  const { KafkaTransport } = await import(`${values.dist}/record/kafka.js`)
  const transport = new KafkaTransport({ brokers: [values.kafka], topic: 'kafka-send', acks: 'all', compression: 'lz4', client_id: 'kafka-send', linger_ms: 20, max_batch_bytes: 1 << 20 })
  const batch = Number(values.batch)
  let n = 0
  // A prediction record of the bench's /rec route (inputs included), as the envelope carries it.
  const envelope = () => {
    const id = `4c65904f-0000-4000-8000-${String(n).padStart(12, '0')}`
    const ts = new Date().toISOString()
    const value = `{"type":"prediction","ts":"${ts}","request_id":"${id}","route":"rec","user_id":"user-${n & 255}","model":"model_a","status":200,"latency_ms":1.${n % 997},"input":{"features":[0.12,3.4,5.6,7.8,0.91,2,1,0]},"output":{"model":"model_a","prediction":0.96,"n":8},"prediction":0.96}`
    n++
    return { id, type: 'prediction', key: id, time: ts, value, bytes: value.length + 96 }
  }
  const make = () => Array.from({ length: batch }, envelope)
  for (let i = 0; i < Number(values.warm); i++) await transport.send(make())
  const batches = Array.from({ length: Number(values.sends) }, make)
  const before = process.cpuUsage()
  for (const b of batches) await transport.send(b)
  const used = process.cpuUsage(before)
  await transport.close()
  process.stdout.write(JSON.stringify({ batch, cpuUsPerSend: (used.user + used.system) / batches.length }))
}
