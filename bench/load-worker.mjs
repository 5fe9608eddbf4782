// Runs one autocannon load in a worker thread, so the load generator has an event loop of its own.
// Latencies are recorded here at 10 µs resolution (autocannon's own histogram counts whole ms,
// too coarse for the sub-millisecond added-latency target).
import { parentPort, workerData } from 'node:worker_threads'
import autocannon from 'autocannon'

const { url, path, connections, duration, amount, overallRate, ids, body, timeout } = workerData

// One prebuilt request per user id: autocannon cycles through them with no per-request work.
const requests = ids.map((id) => ({
  method: 'POST',
  path,
  headers: { 'content-type': 'application/json', 'x-user-id': id },
  body,
}))

const FINE = 10_000 // 10 µs buckets up to 100 ms
const COARSE = 30_000 // then 1 ms buckets up to 30 s
const hist = new Float64Array(FINE + COARSE)
let count = 0
function record(ms) {
  const us = ms * 1000
  const i = us < 100_000 ? Math.floor(us / 10) : Math.min(FINE + COARSE - 1, FINE + Math.floor((us - 100_000) / 1000))
  hist[i]++
  count++
}
function percentile(p) {
  const target = Math.ceil((p / 100) * count)
  let seen = 0
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i]
    if (seen >= target && seen > 0) return i < FINE ? (i * 10 + 5) / 1000 : 100 + (i - FINE) + 0.5
  }
  return 0
}

const base = { url: url + path, requests, timeout: timeout ?? 10 }
if (amount) base.amount = amount
else base.duration = duration

// autocannon's rate limit lets each connection send its quota back to back at the start of each
// one-second window, so `overallRate` alone is bursts of `connections` concurrent requests, i.e.
// saturation for part of every second. At a fixed rate we run one single-connection autocannon
// per connection instead, their windows staggered evenly over the second: the same connections
// and rate, spread out, so the added latency is measured where nothing is saturated.
const plans = overallRate
  ? Array.from({ length: connections }, (_, i) => ({
    delay: (i * 1000) / connections,
    opts: { ...base, connections: 1, overallRate: Math.max(1, Math.round(((i + 1) * overallRate) / connections) - Math.round((i * overallRate) / connections)) },
  }))
  : [{ delay: 0, opts: { ...base, connections } }]

function runOne({ delay, opts }) {
  return new Promise((resolve, reject) => {
    setTimeout(() => {
      const instance = autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)))
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        if (statusCode >= 200 && statusCode < 300) record(responseTime)
      })
    }, delay)
  })
}

const started = performance.now()
Promise.all(plans.map(runOne)).then((results) => {
  const sum = (k) => results.reduce((a, r) => a + r[k], 0)
  const seconds = (performance.now() - started) / 1000
  const ok = sum('2xx')
  parentPort.postMessage({
    ok,
    seconds,
    // At a fixed rate the staggered starts stretch the wall time; the rate is per second of load.
    rps: ok / (overallRate && !amount ? duration : seconds),
    p50: percentile(50),
    p90: percentile(90),
    p99: percentile(99),
    max: percentile(100),
    errors: sum('errors') + sum('timeouts') + sum('non2xx'),
    socketErrors: sum('errors'),
    timeouts: sum('timeouts'),
    non2xx: sum('non2xx'),
  })
}, (err) => parentPort.postMessage({ error: String(err?.stack ?? err) }))
