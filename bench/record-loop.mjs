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
const dist = resolve(process.argv[2] ?? 'dist')
const n = Number(process.argv[3] ?? 100000)
const answerText = process.argv[4] ?? '{"predictions":[0.96],"model":"model_a","n":8}'
const { Observer } = await import(`${dist}/shadow/observation.js`)
const { CaptureBudget, Capture } = await import(`${dist}/upstream/capture.js`)
const { recordLine } = await import(`${dist}/record/schema.js`)
let bytes = 0
const sink = { write: (r) => { const l = recordLine(r); bytes += l.length; return true }, flush: async () => {} }
const budget = new CaptureBudget(1 << 30)
const observer = new Observer({ metrics: {}, sink: () => sink, budget })
const route = {
  name: 'rec',
  plan: { isOpenAi: false, config: { grpc: null, compare: {} }, prediction: 'auto', record: true, includeInputs: true, compare: {}, judge: null },
  targets: [{ model: 'model_a', registry: null, price: null }, { model: 'model_b', registry: null, price: null }],
  assigner: { models: ['model_a', 'model_b'], shares: [0.5, 0.5] },
}
const input = Buffer.from(JSON.stringify({ features: [0.12, 3.4, 5.6, 7.8, 0.91, 2, 1, 0] }))
const answer = Buffer.from(answerText)
const one = (i) => {
  const obs = observer.begin(route, `4c65904f-0000-4000-8000-${String(i).padStart(12, '0')}`, `user-${i & 255}`, 'hash', input, false)
  obs.hold()
  const capture = new Capture()
  capture.expect(answer.length)
  capture.add(answer, 1 << 20, budget)
  obs.release()
  obs.primaryDone('model_a', 200, 1.234567 + (i & 1023) / 1000, capture.body(), null, capture)
}
for (let i = 0; i < 50000; i++) one(i)
const t = process.cpuUsage()
for (let i = 0; i < n; i++) one(i)
const u = process.cpuUsage(t)
console.log(((u.user + u.system) / n * 1000).toFixed(0), 'ns/record', bytes)
