#!/usr/bin/env node
// Streamed (SSE) answers through an api: openai route (issue 19, "How we will know"): added time to
// first token and added per-event latency against calling the server directly, and against the
// node floor for streams (a bare node:http proxy piping an undici Pool's answer), at a fixed rate,
// with the proxy's CPU µs per stream and per event.
//
// The fake model server runs in this process, beside the client, so the time an event was written
// and the time the client read it are on one clock: per-event latency = read − written.
//
//   npm run build && node bench/sse.mjs [--duration 10] [--rate 50] [--tokens 40] [--gap-ms 2] [--out bench/results]
import { createServer } from 'node:http'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir, cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startRouter } from './router.mjs'
import { clockTicks, cpuTicks } from './cpu.mjs'

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i < 0 ? fallback : args[i + 1]
}
const DURATION_S = Number(opt('duration', 10))
const RATE = Number(opt('rate', 50))
const TOKENS = Number(opt('tokens', 40))
const GAP_MS = Number(opt('gap-ms', 2))
const FIRST_MS = Number(opt('first-ms', 5))
const OUT = opt('out', 'bench/results')
const SMOKE = args.includes('--smoke')
const DIST = new URL('../dist', import.meta.url).pathname

// --- the fake OpenAI-compatible server: role chunk, tokens GAP_MS apart, usage chunk, [DONE] ---
function startModel() {
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      const usage = body.stream_options?.include_usage === true
      const un = usage ? ',"usage":null' : ''
      const model = JSON.stringify(body.model)
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      res.write(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":${model},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]${un}}\n\n`)
      let i = 0
      const next = () => {
        if (res.destroyed) return
        if (i < TOKENS) {
          // t: when this event was written, on this process's clock (the client's too).
          res.write(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":${model},"choices":[{"index":0,"delta":{"content":"tok${i} t=${performance.now().toFixed(4)}"},"finish_reason":null}]${un}}\n\n`)
          i++
          setTimeout(next, GAP_MS)
          return
        }
        if (usage) res.write(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":${model},"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":${TOKENS},"total_tokens":${12 + TOKENS}}}\n\n`)
        res.end('data: [DONE]\n\n')
      }
      setTimeout(next, FIRST_MS)
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r) }) })))
}

// --- the node floor for streams: read the body, forward it through a Pool, pipe the answer back ---
const FLOOR = `
const { createServer } = require('node:http')
const { Pool } = require(${JSON.stringify(new URL('../node_modules/undici/index.js', import.meta.url).pathname)})
const pool = new Pool(process.argv[1], { connections: 128 })
createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    pool.request({ path: req.url, method: req.method, headers: { 'content-type': 'application/json' }, body }).then(({ statusCode, headers, body: up }) => {
      res.writeHead(statusCode, { 'content-type': headers['content-type'] })
      up.on('data', (c) => res.write(c))
      up.on('end', () => res.end())
    }, () => { res.writeHead(502); res.end() })
  })
}).listen(0, '127.0.0.1', function () { console.log('floor on http://127.0.0.1:' + this.address().port) })
`
function startFloor(modelUrl) {
  const child = spawn(process.execPath, ['-e', FLOOR, modelUrl], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve) => {
    child.stdout.setEncoding('utf8')
    child.stdout.once('data', (d) => resolve({ url: /(http\S+)/.exec(d)[1], pid: child.pid, close: () => { child.kill('SIGTERM') } }))
  })
}

// --- the client: RATE streams a second for DURATION_S, each timed ---
const T = Buffer.from(' t=')
async function oneStream(url, ttfts, eventLat, failures) {
  const start = performance.now()
  try {
    const res = await request(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'bench', stream: true, user: `u${Math.floor(Math.random() * 1e6)}`, messages: [{ role: 'user', content: 'hi' }] }),
    })
    let first = true
    for await (const chunk of res.body) {
      const now = performance.now()
      let i = chunk.indexOf(T)
      while (i >= 0) {
        const j = chunk.indexOf(34, i) // the closing quote
        const written = Number(chunk.toString('latin1', i + 3, j))
        eventLat.push(now - written)
        if (first) {
          ttfts.push(now - start)
          first = false
        }
        i = chunk.indexOf(T, j)
      }
    }
  } catch {
    failures.n++
  }
}

async function load(url, pid) {
  const ttfts = []
  const eventLat = []
  const failures = { n: 0 }
  const cpu0 = pid === null ? null : cpuTicks(pid)
  const running = []
  const total = Math.round(RATE * DURATION_S)
  const t0 = performance.now()
  for (let k = 0; k < total; k++) {
    const due = t0 + (k * 1000) / RATE
    const wait = due - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    running.push(oneStream(url, ttfts, eventLat, failures))
  }
  await Promise.all(running)
  const cpu1 = pid === null ? null : cpuTicks(pid)
  const cpuUs = cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) / clockTicks()) * 1e6
  return { streams: total, failures: failures.n, ttft: summary(ttfts), event: summary(eventLat), cpuUsPerStream: cpuUs === null ? null : cpuUs / total, cpuUsPerEvent: cpuUs === null ? null : cpuUs / Math.max(1, eventLat.length) }
}

function summary(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))])
  return { n: s.length, p50: q(0.5), p99: q(0.99) }
}

const model = await startModel()
const dir = mkdtempSync(join(tmpdir(), 'modelsplit-sse-bench-'))
const config = join(dir, 'router.yaml')
writeFileSync(config, `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "${model.url}", upstream_model: bench-a, connections: 256, price: { input_per_million_tokens: 1, output_per_million_tokens: 2 } }
routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: a, weight: 1 }]
`)
const router = await startRouter(DIST, config)
const floor = await startFloor(model.url)
const cases = [['direct', model.url, null], ['node-floor-sse', floor.url, floor.pid], ['ms-openai-sse', router.url, router.pid]]
if (SMOKE) cases.splice(1, 1)
const results = {}
// Interleaved repeats would be fairer; one run each keeps the case short on the shared machine.
for (const [name, url, pid] of cases) results[name] = await load(url, pid)
await router.close()
floor.close()
await model.close()

const d = results.direct
const rows = Object.entries(results).map(([name, r]) => `| ${name} | ${r.streams} | ${r.failures} | ${r.ttft.p50.toFixed(3)} | ${r.ttft.p99.toFixed(3)} | ${(r.ttft.p99 - d.ttft.p99).toFixed(3)} | ${r.event.p50.toFixed(3)} | ${r.event.p99.toFixed(3)} | ${(r.event.p99 - d.event.p99).toFixed(3)} | ${r.cpuUsPerStream === null ? '—' : r.cpuUsPerStream.toFixed(0)} | ${r.cpuUsPerEvent === null ? '—' : r.cpuUsPerEvent.toFixed(1)} |`)
const md = `# Streamed answers (bench/sse.mjs)

${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} at the end.
${RATE} streams/s for ${DURATION_S} s per case, ${TOKENS} tokens ${GAP_MS} ms apart after ${FIRST_MS} ms; one run per case.
Times in ms; "added" is the case's p99 minus direct's p99. CPU is the proxy process's (utime + stime).

| case | streams | failed | TTFT p50 | TTFT p99 | added TTFT p99 | event p50 | event p99 | added event p99 | CPU µs / stream | CPU µs / event |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}
`
process.stdout.write(md)
if (!SMOKE) {
  mkdirSync(OUT, { recursive: true })
  writeFileSync(join(OUT, 'sse.md'), md)
  writeFileSync(join(OUT, 'sse.json'), JSON.stringify({ options: { DURATION_S, RATE, TOKENS, GAP_MS, FIRST_MS }, results }, null, 1) + '\n')
}
process.exit(Object.values(results).some((r) => r.failures > 0) ? 1 : 0)
