// What one prediction record costs the router, in process and without HTTP: the observer's
// bookkeeping of a finished request (parse the answer, build the record), its serialisation and
// the sink (the JSONL file, or Kafka with a broker given by --kafka), as CPU µs per record of the
// whole process (process.cpuUsage: main thread, thread pool and kernel), at a paced rate.
//
//   node bench/record-cost.mjs [--dist DIR[,DIR2…]] [--sink file|kafka|none|serialise] [--kafka HOST:PORT]
//                              [--per-tick N] [--tick-ms MS] [--records N] [--rounds R]
//
// Each --dist (a built dist/, e.g. one of an earlier commit) runs in a child process of its own,
// round-robin for --rounds rounds, so builds compare under the same machine load; the median per
// build is printed. A bench run's ms-record against ms-split measures the same thing with the
// proxying around it, but on a machine other jobs load its CPU per request moves by more than the
// record costs; this one moves less (every build sees the same load, a round apart).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { recordOne } from './record-fixture.mjs'

const { values } = parseArgs({
  options: {
    dist: { type: 'string', default: fileURLToPath(new URL('../dist', import.meta.url)) },
    sink: { type: 'string', default: 'file' },
    kafka: { type: 'string' },
    'per-tick': { type: 'string', default: '5' },
    'tick-ms': { type: 'string', default: '10' },
    records: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'boolean', default: false },
  },
})

if (!values.child) {
  const dists = values.dist.split(',').map((d) => resolve(d))
  const results = new Map(dists.map((d) => [d, []]))
  const args = process.argv.slice(2).filter((a, i, all) => a !== '--dist' && all[i - 1] !== '--dist' && !a.startsWith('--dist='))
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const d of dists) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--dist', d, ...args], { encoding: 'utf8' })
      const us = JSON.parse(out).cpuUsPerRecord
      results.get(d).push(us)
      process.stderr.write(`round ${r + 1} ${d}: ${us.toFixed(1)} µs/record\n`)
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const [d, xs] of results) console.log(`${d}: median ${median(xs).toFixed(1)} µs/record (${xs.map((x) => x.toFixed(1)).join(', ')})`)
} else {
  const dist = values.dist
  const { Observer } = await import(`${dist}/shadow/observation.js`)
  const { CaptureBudget } = await import(`${dist}/upstream/capture.js`)
  const { recordLine } = await import(`${dist}/record/schema.js`)
  const dir = mkdtempSync(join(tmpdir(), 'record-cost-'))
  let sink
  if (values.sink === 'kafka') {
    const { DeliverySink } = await import(`${dist}/record/delivery.js`)
    const { KafkaTransport } = await import(`${dist}/record/kafka.js`)
    // As the bench's ms-record-kafka: acks all (idempotent), lz4, linger 20 ms.
    const transport = new KafkaTransport({ brokers: [values.kafka], topic: 'record-cost', acks: 'all', compression: 'lz4', client_id: 'record-cost', linger_ms: 20, max_batch_bytes: 1 << 20 })
    sink = new DeliverySink({ transport, spoolDir: join(dir, 'spool'), spoolMaxBytes: 1 << 30, lingerMs: 20, maxBatchBytes: 1 << 20, closeTimeoutMs: 5000 })
    await sink.started
  } else if (values.sink === 'file') {
    const { RecordWriter } = await import(`${dist}/record/writer.js`)
    sink = new RecordWriter({ path: join(dir, 'p.jsonl'), max_bytes: 1 << 30, keep: 1 })
  } else {
    const serialise = values.sink === 'serialise'
    sink = { write: (r) => { if (serialise) recordLine(r); return true }, flush: async () => {}, close: async () => {} }
  }
  const budget = new CaptureBudget(1 << 30)
  const observer = new Observer({ metrics: {}, sink: () => sink, budget })
  const one = await recordOne(dist, observer, budget)
  const perTick = Number(values['per-tick'])
  const tickMs = Number(values['tick-ms'])
  const pace = async (from, to) => {
    for (let i = from; i < to;) {
      for (let k = 0; k < perTick && i < to; k++) one(i++)
      await new Promise((r) => setTimeout(r, tickMs))
    }
    await sink.flush()
  }
  const n = Number(values.records)
  await pace(0, Math.min(2000, n))
  const before = process.cpuUsage()
  await pace(0, n)
  const used = process.cpuUsage(before)
  await sink.close()
  rmSync(dir, { recursive: true, force: true })
  process.stdout.write(JSON.stringify({ cpuUsPerRecord: (used.user + used.system) / n }))
}
