#!/usr/bin/env node
// gRPC bench: unary ModelInfer with a small tensor, called directly, through bare node:http2
// forwarders (the floor: what Node itself needs to proxy a call) and through modelsplit's gRPC
// listener (a 50/50 split of two model servers). Reports calls/s and each proxy's CPU µs per call
// (process CPU from /proc over the calls it served). Uses dist/ (npm run build first).
//   node bench/grpc.mjs [--seconds 5] [--concurrency 32] [--sessions 4] [--rounds 1] [--rate R]
//                       [--baseline DIST] [--profile DIR] [--pin]
// The floor a split is held to splits too, as bench/node-floor.mjs does for HTTP: murmur2 of
// x-user-id picks one of the same two model servers, one pooled session each ("node:http2 floor").
// "node:http2 floor, one upstream" forwards everything to one server on one session: cheaper
// (one socket's reads and writes carry every call), shown for comparison with earlier runs.
// --rounds N measures every case N times, interleaved (direct, floors, router, then again), and
// reports the ratio of each round and their median: on a shared machine the CPU per call moves
// with the load of the moment, which a ratio taken from one round is more robust to.
// --rate R paces the load at R calls/s (open loop, at most --concurrency in flight) instead of
// as fast as the proxy answers: CPU per call falls as the rate rises (more frames per syscall),
// so cases compared at one rate compare their work, not their batching.
// --baseline DIST: also runs the router built in DIST (another commit's `dist/`, e.g. from
// `git archive <commit> src tsconfig*.json` built with tsc) as "modelsplit grpc split (baseline)".
// --pin: each proxy (the floors, the router) on the last CPU, this process (the load) and the
// model servers on the others (bench/pin.mjs): a proxy's CPU per call then is its own work, not
// what a load generator and model servers sharing its core do to its caches and time slices.
// --profile DIR: the floor and the router run under the V8 profiler for their measured runs; the
// profiles go to DIR and their top self-time functions are printed (profiling slows both).
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:http2'
import { tmpdir } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clockTicks, cpuTicks } from './cpu.mjs'
import { pinPlan, pinTree } from './pin.mjs'
import { summariseProfile } from './profile.mjs'

import { METHOD, MODEL, REQUEST } from './grpc-call.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i < 0 ? d : Number(args[i + 1]) }
const SECONDS = opt('seconds', 5)
const CONCURRENCY = opt('concurrency', 32)
const SESSIONS = opt('sessions', 4)
const ROUNDS = opt('rounds', 1)
const RATE = opt('rate', 0)
const PROFILE = args.includes('--profile') ? args[args.indexOf('--profile') + 1] : null
const BASELINE = args.includes('--baseline') ? args[args.indexOf('--baseline') + 1] : null

// The floor: each stream forwarded on a pooled session, headers, data and trailers relayed. With
// two upstreams, murmur2(x-user-id) < 2^31 picks the first (nginx's split_clients 50%, as
// bench/node-floor.mjs splits HTTP).
const FLOOR = `
import { connect, createServer } from 'node:http2'
import murmurhash from 'murmurhash'
const urls = process.argv.slice(1)
const upstreams = urls.map((u) => connect(u))
const encoder = new TextEncoder()
const s = createServer()
s.on('stream', (st, headers) => {
  st.on('error', () => {})
  const out = {}
  for (const k in headers) if (k[0] !== ':' || k === ':path' || k === ':method') out[k] = headers[k]
  const id = headers['x-user-id']
  const upstream = upstreams.length === 1 || id === undefined || murmurhash.v2(encoder.encode(id), 0) < 0x80000000 ? upstreams[0] : upstreams[1]
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
s.listen(0, '127.0.0.1', () => console.log('http://127.0.0.1:' + s.address().port))
`

// A profiled process (--profile) records from SIGUSR2 (sent when its first measured run starts)
// to SIGTERM, then writes DIR/<name>.cpuprofile and exits: warm-up and start-up stay out of it.
const PROFILED = `
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
const session = new Session()
session.connect()
const post = (m, p) => new Promise((res, rej) => session.post(m, p, (e, r) => e ? rej(e) : res(r)))
process.once('SIGUSR2', () => { post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 100 })).then(() => post('Profiler.start')) })
process.on('SIGTERM', async () => {
  try { const { profile } = await post('Profiler.stop'); writeFileSync(process.env.MS_PROFILE_FILE, JSON.stringify(profile)) } catch {}
  process.exit(0)
})
`

function start(code, argv = [], name = null) {
  const profiled = PROFILE !== null && name !== null
  const env = profiled ? { ...process.env, MS_PROFILE_FILE: join(PROFILE, `${name}.cpuprofile`) } : process.env
  const child = spawn(process.execPath, ['--input-type=module', '-e', (profiled ? PROFILED : '') + code, ...argv], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT, env })
  return new Promise((resolve, reject) => {
    const failed = (code) => reject(new Error(`a bench process exited (${code}) before it listened`))
    child.once('exit', failed)
    child.stdout.once('data', (d) => {
      child.off('exit', failed)
      resolve({ child, url: String(d).trim().split('\n').pop() })
    })
  })
}

async function load(url) {
  const sessions = Array.from({ length: SESSIONS }, () => connect(url))
  let done = 0
  let failed = 0
  let ticket = 0
  const started = performance.now()
  const end = started + SECONDS * 1000
  const worker = async (w) => {
    const s = sessions[w % SESSIONS]
    let i = 0
    while (performance.now() < end) {
      if (RATE > 0) {
        // Open loop: call number t starts at t/RATE seconds (or as soon as a worker is free).
        const wait = started + (ticket++ * 1000) / RATE - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        if (performance.now() >= end) break
      }
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

async function measure(c, round) {
  const { child: { pid } } = c.proc
  if (PROFILE !== null && c.profile && round === 1) process.kill(pid, 'SIGUSR2')
  const t0 = cpuTicks(pid)
  const started = performance.now()
  const { done, failed } = await load(c.proc.url)
  const seconds = (performance.now() - started) / 1000
  const cpu = t0 === null ? null : ((cpuTicks(pid) - t0) / clockTicks()) * 1e6 / done
  return { round, case: c.name, calls: done, failed, calls_per_s: Math.round(done / seconds), cpu_us_per_call: cpu === null ? null : Math.round(cpu) }
}

const median = (xs) => {
  const v = xs.filter((x) => x !== null).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = v.length >> 1
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

if (PROFILE !== null) await mkdir(PROFILE, { recursive: true })
const PIN = args.includes('--pin') ? pinPlan() : null
if (args.includes('--pin') && PIN === null) throw new Error('--pin needs Linux, taskset and at least 2 CPUs')
if (PIN !== null) pinTree(process.pid, PIN.rest)
const model = await start(MODEL)
const model2 = await start(MODEL)
const floor1 = await start(FLOOR, [model.url])
const floor = await start(FLOOR, [model.url, model2.url], 'floor')
const dir = await mkdtemp(join(tmpdir(), 'ms-grpc-bench-'))
const config = join(dir, 'router.yaml')
await writeFile(config, `listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0 } }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "${model.url}" }
  b: { url: "${model2.url}" }
routes:
  - name: infer
    grpc: { method: ${METHOD} }
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
`)
const ROUTER = (dist) => `
import { buildServer } from '${join(resolvePath(dist), 'server.js')}'
const r = await buildServer({ configFile: process.argv.at(-1), watch: false, defaultMetrics: false })
const { grpcUrl } = await r.listen({ port: 0, adminPort: 0, grpcPort: 0, host: '127.0.0.1', adminHost: '127.0.0.1', grpcHost: '127.0.0.1' })
console.log(grpcUrl)
`
const router = await start(ROUTER(join(ROOT, 'dist')), [config], 'router')
const baseline = BASELINE === null ? null : await start(ROUTER(BASELINE), [config])
const CASES = [
  { name: 'direct (model server)', proc: model },
  { name: 'node:http2 floor, one upstream', proc: floor1 },
  { name: 'node:http2 floor', proc: floor, profile: true },
  { name: 'modelsplit grpc split', proc: router, profile: true },
  ...(baseline === null ? [] : [{ name: 'modelsplit grpc split (baseline)', proc: baseline }]),
]
const FLOOR_CASE = 'node:http2 floor'
if (PIN !== null) {
  for (const c of CASES) if (c.proc !== model) pinTree(c.proc.child.pid, PIN.proxy)
  console.log(`pinned: proxies on CPU ${PIN.proxy}, load and model servers on CPU ${PIN.rest}`)
}
// Warm-up: one run of each case, not counted (JIT, sessions, pools).
for (const c of CASES) await load(c.proc.url)
const rows = []
for (let round = 1; round <= ROUNDS; round++) {
  const these = []
  for (const c of CASES) these.push(await measure(c, round))
  const base = these.find((r) => r.case === FLOOR_CASE)
  for (const r of these) {
    r.cpu_vs_floor = r.cpu_us_per_call === null || base.cpu_us_per_call === null ? null : +(r.cpu_us_per_call / base.cpu_us_per_call).toFixed(2)
    r.rate_vs_floor = +(r.calls_per_s / base.calls_per_s).toFixed(2)
  }
  rows.push(...these)
}
console.table(rows)
const summary = CASES.map((c) => {
  const mine = rows.filter((r) => r.case === c.name)
  return {
    case: c.name,
    calls_per_s: Math.round(median(mine.map((r) => r.calls_per_s))),
    cpu_us_per_call: Math.round(median(mine.map((r) => r.cpu_us_per_call))),
    cpu_vs_floor_per_round: mine.map((r) => r.cpu_vs_floor).join(' '),
    cpu_vs_floor_median: +median(mine.map((r) => r.cpu_vs_floor)).toFixed(2),
  }
})
if (ROUNDS > 1) console.table(summary)
console.log(JSON.stringify({ seconds: SECONDS, concurrency: CONCURRENCY, sessions: SESSIONS, rounds: ROUNDS, rate: RATE || null, pinned: PIN !== null, rows, summary }))
await Promise.all([model, model2, floor1, floor, router, baseline].filter((p) => p !== null).map((p) => new Promise((resolve) => {
  p.child.once('exit', resolve)
  p.child.kill()
})))
if (PROFILE !== null) {
  for (const name of ['floor', 'router']) {
    const s = await summariseProfile(join(PROFILE, `${name}.cpuprofile`), 30)
    const calls = rows.filter((r) => r.case === (name === 'floor' ? FLOOR_CASE : 'modelsplit grpc split')).reduce((n, r) => n + r.calls, 0)
    console.log(`\n${name}: busy ${Math.round(s.busyMs)} ms, ${Math.round(s.busyMs * 1000 / calls)} µs per call sampled`)
    console.table(s.packages.map((p) => ({ origin: p.name, self_ms: Math.round(p.selfMs), pct: +p.pct.toFixed(1) })))
    console.table(s.functions.map((f) => ({ fn: f.name, at: f.url, us_per_call: +(f.selfMs * 1000 / calls).toFixed(1), pct: +f.pct.toFixed(1) })))
  }
}
await rm(dir, { recursive: true, force: true })
