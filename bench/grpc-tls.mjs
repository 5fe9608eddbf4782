#!/usr/bin/env node
// gRPC over TLS: unary ModelInfer (small tensor) through modelsplit's gRPC listener with
// listen.grpc.tls, against the Node floor for TLS (a bare node:http2 secure server forwarding
// each stream on one pooled h2c session) and against the same router in cleartext. Reports
// calls/s and the proxy's CPU µs per call (process CPU from /proc over the calls it served).
// Uses dist/ (npm run build first) and openssl for a throwaway certificate.
//   node bench/grpc-tls.mjs [--seconds 5] [--concurrency 32] [--sessions 4]
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clockTicks, cpuTicks } from './cpu.mjs'

import { METHOD, MODEL, REQUEST } from './grpc-call.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i < 0 ? d : Number(args[i + 1]) }
const SECONDS = opt('seconds', 5)
const CONCURRENCY = opt('concurrency', 32)
const SESSIONS = opt('sessions', 4)

// The floor for TLS: bench/grpc.mjs's forwarder behind a node:http2 secure server (ALPN h2).
const FLOOR = `
import { readFileSync } from 'node:fs'
import { connect, createSecureServer } from 'node:http2'
const [cert, key, target] = process.argv.slice(-3)
const upstream = connect(target)
const s = createSecureServer({ cert: readFileSync(cert), key: readFileSync(key) })
s.on('stream', (st, headers) => {
  st.on('error', () => {})
  const out = {}
  for (const k in headers) if (k[0] !== ':' || k === ':path' || k === ':method') out[k] = headers[k]
  const up = upstream.request(out)
  up.on('error', () => {})
  let trailers = null
  up.on('response', (h) => {
    const r = { ':status': 200 }
    for (const k in h) if (k[0] !== ':') r[k] = h[k]
    st.respond(r, { waitForTrailers: true })
  })
  up.on('trailers', (t) => { trailers = t })
  st.on('wantTrailers', () => st.sendTrailers(trailers ?? { 'grpc-status': '13' }))
  st.pipe(up)
  up.pipe(st)
})
s.listen(0, '127.0.0.1', () => console.log('https://127.0.0.1:' + s.address().port))
`

const ROUTER = `
import { buildServer } from '${join(ROOT, 'dist/server.js')}'
const r = await buildServer({ configFile: process.argv.at(-1), watch: false, defaultMetrics: false })
const { grpcUrl } = await r.listen({ port: 0, adminPort: 0, grpcPort: 0, host: '127.0.0.1', adminHost: '127.0.0.1', grpcHost: '127.0.0.1' })
console.log(grpcUrl)
`

function start(code, argv = []) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, ...argv], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT })
  return new Promise((resolve) => {
    child.stdout.once('data', (d) => resolve({ child, url: String(d).trim().split('\n').pop() }))
  })
}

async function load(url, ca) {
  const sessions = Array.from({ length: SESSIONS }, () => connect(url, ca === undefined ? {} : { ca, servername: 'localhost' }))
  let done = 0
  let failed = 0
  const end = performance.now() + SECONDS * 1000
  const worker = async (w) => {
    const s = sessions[w % SESSIONS]
    let i = 0
    while (performance.now() < end) {
      const ok = await new Promise((resolve) => {
        const req = s.request({ ':method': 'POST', ':path': METHOD, 'content-type': 'application/grpc', te: 'trailers', 'x-user-id': `user-${w}-${i++}` })
        let status = null
        req.on('trailers', (t) => { status = t['grpc-status'] })
        req.on('response', (h) => { if (h['grpc-status'] !== undefined) status = h['grpc-status'] })
        req.on('error', () => {})
        req.resume()
        req.on('close', () => resolve(status === '0'))
        req.end(REQUEST)
      })
      if (ok) done++
      else failed++
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)))
  for (const s of sessions) s.close()
  return { done, failed }
}

async function measure(name, url, pid, ca) {
  await load(url, ca) // warm-up run, not counted
  const t0 = cpuTicks(pid)
  const started = performance.now()
  const { done, failed } = await load(url, ca)
  const seconds = (performance.now() - started) / 1000
  const cpu = t0 === null ? null : ((cpuTicks(pid) - t0) / clockTicks()) * 1e6 / done
  return { case: name, calls: done, failed, calls_per_s: Math.round(done / seconds), cpu_us_per_call: cpu === null ? null : Math.round(cpu) }
}

const dir = await mkdtemp(join(tmpdir(), 'ms-grpc-tls-bench-'))
const cert = join(dir, 'router.crt')
const key = join(dir, 'router.key')
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
const ca = await readFile(cert)
const model = await start(MODEL)
const model2 = await start(MODEL)
const floor = await start(FLOOR, [cert, key, model.url])
const routerConfig = async (name, tls) => {
  const file = join(dir, name)
  await writeFile(file, `listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0${tls ? ', tls: { cert_file: router.crt, key_file: router.key }' : ''} } }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "${model.url}" }
  b: { url: "${model2.url}" }
routes:
  - name: infer
    grpc: { method: ${METHOD} }
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
`)
  return file
}
const cleartext = await start(ROUTER, [await routerConfig('h2c.yaml', false)])
const tls = await start(ROUTER, [await routerConfig('tls.yaml', true)])
const rows = []
rows.push(await measure('node:http2 TLS floor', floor.url, floor.child.pid, ca))
rows.push(await measure('modelsplit grpc split, TLS', tls.url, tls.child.pid, ca))
rows.push(await measure('modelsplit grpc split, h2c', cleartext.url, cleartext.child.pid))
const floorRow = rows[0]
for (const r of rows) {
  r.cpu_vs_tls_floor = r.cpu_us_per_call === null || floorRow.cpu_us_per_call === null ? null : +(r.cpu_us_per_call / floorRow.cpu_us_per_call).toFixed(2)
  r.rate_vs_tls_floor = +(r.calls_per_s / floorRow.calls_per_s).toFixed(2)
}
console.table(rows)
console.log(JSON.stringify({ seconds: SECONDS, concurrency: CONCURRENCY, sessions: SESSIONS, rows }))
for (const p of [model, model2, floor, cleartext, tls]) p.child.kill()
await rm(dir, { recursive: true, force: true })
