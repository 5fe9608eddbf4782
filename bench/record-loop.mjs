// What the observer and the serialiser cost per prediction record, without a sink, pacing or HTTP:
// the bench's /rec record (split, `record: true`, inputs, `prediction: auto`, the bench model's
// answer) built and serialised in a tight loop, as process CPU ns per record. bench/record-cost.mjs
// measures the same with the file sink at a paced rate, where a timer wake-up per tick costs more
// than the record on a loaded machine; this one resolves differences of a microsecond.
//
//   node bench/record-loop.mjs DIST [RECORDS] [ANSWER]     e.g. node bench/record-loop.mjs dist 100000
//
// Run it for two builds in turn (an old one built as bench/README.md says) and compare; the bytes
// printed must be the same for both (the records are the same text).
import { resolve } from 'node:path'
import { ANSWER, recordOne } from './record-fixture.mjs'
const dist = resolve(process.argv[2] ?? 'dist')
const n = Number(process.argv[3] ?? 100000)
const { Observer } = await import(`${dist}/shadow/observation.js`)
const { CaptureBudget } = await import(`${dist}/upstream/capture.js`)
const { recordLine } = await import(`${dist}/record/schema.js`)
let bytes = 0
const sink = { write: (r) => { const l = recordLine(r); bytes += l.length; return true }, flush: async () => {} }
const budget = new CaptureBudget(1 << 30)
const observer = new Observer({ metrics: {}, sink: () => sink, budget })
const one = await recordOne(dist, observer, budget, { answerText: process.argv[4] ?? ANSWER, varyLatency: true })
for (let i = 0; i < 50000; i++) one(i)
const t = process.cpuUsage()
for (let i = 0; i < n; i++) one(i)
const u = process.cpuUsage(t)
console.log(((u.user + u.system) / n * 1000).toFixed(0), 'ns/record', bytes)
