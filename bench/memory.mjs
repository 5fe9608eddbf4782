// The memory case: N requests through a fresh router on a route with a slow (200 ms) and a dead
// shadow, sampling the router's RSS and heap from its Prometheus default metrics over time.
import { runLoad } from './load.mjs'
import { scrape } from './router.mjs'

const SAMPLE_MS = 1000

/**
 * Runs the load while polling `process_resident_memory_bytes` / `nodejs_heap_size_used_bytes`.
 * Resolves to `{ samples, base, peak, end, slope, pass, ... }`; `base` is the sample after the
 * first 50 000 requests (5 % of N for small N).
 */
export async function runMemoryCase(router, { requests, connections }) {
  const samples = []
  const t0 = performance.now()
  const sample = async () => {
    const m = await scrape(router.adminUrl)
    samples.push({
      t: (performance.now() - t0) / 1000,
      requests: m.sum('modelsplit_requests_total'),
      rss: m.sum('process_resident_memory_bytes'),
      heap: m.sum('nodejs_heap_size_used_bytes'),
      shadowInFlightDropped: m.sum('modelsplit_shadow_dropped_total'),
    })
  }
  await sample()
  let running = true
  const poller = (async () => {
    while (running) {
      await new Promise((r) => setTimeout(r, SAMPLE_MS))
      if (running) await sample().catch(() => undefined)
    }
  })()
  const load = await runLoad({ url: router.url, path: '/mem/predict', connections, amount: requests })
  running = false
  await poller
  await new Promise((r) => setTimeout(r, 500)) // let the last slow shadows finish
  await sample()
  return judge(samples, requests, load)
}

function judge(samples, n, load) {
  const baseAt = Math.min(50_000, Math.ceil(n * 0.05))
  const base = samples.find((s) => s.requests >= baseAt) ?? samples[0]
  const end = samples[samples.length - 1]
  const peak = samples.reduce((a, s) => (s.rss > a.rss ? s : a), samples[0])
  // Least-squares slope of RSS over requests in the second half: a leak keeps climbing there,
  // a warm-up plateau does not.
  const half = samples.filter((s) => s.requests >= n / 2 && s.requests < n)
  let slopePer100k = 0
  if (half.length >= 3) {
    const mx = half.reduce((a, s) => a + s.requests, 0) / half.length
    const my = half.reduce((a, s) => a + s.rss, 0) / half.length
    let num = 0
    let den = 0
    for (const s of half) { num += (s.requests - mx) * (s.rss - my); den += (s.requests - mx) ** 2 }
    slopePer100k = den > 0 ? (num / den) * 100_000 : 0
  }
  const ratio = end.rss / base.rss
  // Unbounded growth: more than 1.5x the early RSS, or (on runs long enough to tell) a second
  // half still climbing by more than 2 % of the early RSS per 100k requests.
  const climbing = n >= 200_000 && slopePer100k > 0.02 * base.rss
  return {
    requests: n,
    baseAt,
    load,
    base: { requests: base.requests, rss: base.rss, heap: base.heap },
    peak: { requests: peak.requests, rss: peak.rss, heap: Math.max(...samples.map((s) => s.heap)) },
    end: { requests: end.requests, rss: end.rss, heap: end.heap },
    ratio,
    slopePer100k,
    pass: ratio <= 1.5 && !climbing && load.errors === 0,
    samples,
  }
}
