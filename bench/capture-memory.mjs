// What recording costs in memory (issue 18, item 20): N concurrent large answers (3.5 MB JSON by
// default) through a fresh router, once on a route that records them and once on one that does
// not, in separate processes. Reports each router's peak RSS above its idle RSS (VmHWM − VmRSS
// before the load, from /proc), so the difference is what holding answers for records costs.
// limits.max_capture_total_bytes (64 MiB by default) should bound that difference.
//
//   node bench/capture-memory.mjs [--dist DIR] [--concurrency 300] [--rounds 3] [--answer-mb 3.5]
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startRouter } from './router.mjs'

const { values: opts } = parseArgs({
  options: {
    dist: { type: 'string', default: new URL('../dist', import.meta.url).pathname },
    concurrency: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '3' },
    'answer-mb': { type: 'string', default: '3.5' },
  },
})
const concurrency = Number(opts.concurrency)
const rounds = Number(opts.rounds)
const answerBytes = Math.round(Number(opts['answer-mb']) * 1024 * 1024)

/** A model in a child process answering every request with the same large JSON prediction. */
function startModel() {
  const src = `
    const { createServer } = require('node:http')
    const n = Math.floor(${answerBytes} / 8)
    const body = Buffer.from(JSON.stringify({ predictions: Array.from({ length: n }, (_, i) => (i % 1000) / 1000 + 0.0001) }).slice(0, ${answerBytes} - 2) + ']}')
    const s = createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body) }) })
    s.keepAliveTimeout = 60000
    s.listen(0, '127.0.0.1', () => console.log(s.address().port))`
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve) => child.stdout.once('data', (d) => resolve({ url: `http://127.0.0.1:${String(d).trim()}`, close: () => child.kill() })))
}

async function status(pid) {
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { 'x-user-id': String(Math.random()) } }, (res) => {
      let n = 0
      res.on('data', (c) => { n += c.length })
      res.on('end', () => resolve({ status: res.statusCode, bytes: n }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function runCase(dist, modelUrl, record) {
  const dir = await mkdtemp(join(tmpdir(), 'ms-capture-bench-'))
  const config = join(dir, 'router.yaml')
  await writeFile(config, `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
${record ? `recording: { path: ${join(dir, 'records.jsonl')} }\n` : ''}models:
  a: { url: "${modelUrl}", timeout_ms: 60000, connections: ${concurrency} }
routes:
  - name: big
    path: /big
    user_id: [header:x-user-id]
    split: [{ model: a, weight: 1 }]
${record ? '    record: true\n' : ''}`)
  const r = await startRouter(dist, config)
  try {
    await get(`${r.url}/big`) // warm: code paths, pools
    const idle = await status(r.pid)
    let failed = 0
    for (let i = 0; i < rounds; i++) {
      const out = await Promise.all(Array.from({ length: concurrency }, () => get(`${r.url}/big`)))
      failed += out.filter((o) => o.status !== 200 || o.bytes !== answerBytes).length
    }
    const after = await status(r.pid)
    const text = await (await fetch(`${r.adminUrl}/metrics`)).text()
    const sum = (re) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0)
    const skipped = sum(/^modelsplit_capture_budget_exceeded_total\{[^}]*\} (\S+)$/gm)
    const written = sum(/^modelsplit_records_total\{[^}]*result="written"[^}]*\} (\S+)$/gm)
    return { record, idleRss: idle.rss, peakRss: after.hwm, rise: after.hwm - idle.rss, failed, skipped, written }
  } finally {
    await r.close()
    await rm(dir, { recursive: true, force: true })
  }
}

const model = await startModel()
try {
  const mb = (b) => (b / 1048576).toFixed(1)
  const results = []
  for (const record of [false, true]) {
    const c = await runCase(opts.dist, model.url, record)
    results.push(c)
    console.log(`${record ? 'recorded  ' : 'unrecorded'}: idle RSS ${mb(c.idleRss)} MB, peak ${mb(c.peakRss)} MB, rise ${mb(c.rise)} MB, failed ${c.failed}, records ${c.written}, uncaptured ${c.skipped}`)
  }
  const [plain, rec] = results
  console.log(`recording costs ${mb(rec.rise - plain.rise)} MB of peak RSS (${concurrency} × ${mb(answerBytes)} MB answers; capture budget 64 MiB)`)
} finally {
  model.close()
}
