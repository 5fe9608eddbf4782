// serve --workers: the primary's admin answers for the workers as a single process answers for
// itself (rollouts, /readyz), and a worker that dies neither stalls a scrape nor takes its counts
// out of /metrics. Real worker processes, stopped and killed with signals.
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { rolloutCommand } from '../src/cli/rollout.js'
import { captureIo } from './helpers/cli-io.js'
import { parseMetrics } from './helpers/router.js'
import { spawnRouter, type RouterProcess } from './helpers/router-process.js'
import { upstream } from './helpers/servers.js'
import { closedPort, jsonEcho } from './helpers/upstream.js'

/** One request on a connection of its own, so the cluster's round robin spreads them over workers. */
function fresh(url: string, userId: string): Promise<{ status: number; model: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'x-user-id': userId, 'content-type': 'application/json' }, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, model: res.headers['x-modelsplit-model'] as string | undefined }))
    })
    req.on('error', reject)
    req.end('{}')
  })
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A router process, killed when the test ends if it has not stopped by then. */
async function serve(file: string, args: string[] = []): Promise<RouterProcess> {
  // Quiet: a warning printed before the banner (Prometheus unreachable) would be read as it.
  const r = await spawnRouter(file, ['--log-level', 'error', ...args])
  onTestFinished(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
  return r
}

/** The primary's workers, oldest first (forked in order, so their pids grow). */
function workerPids(primary: RouterProcess): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary.child.pid)], { encoding: 'utf8' }).trim().split('\n').filter((l) => l !== '').map(Number).sort((a, b) => a - b)
  } catch {
    return [] // pgrep exits 1 when there are none
  }
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-cluster-admin-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A CloudEvents collector that takes every batch. */
async function collector(): Promise<string> {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(204).end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/records`
}

describe('serve --workers 2: rollouts and /readyz on the primary', () => {
  const config = (v1: string, v2: string, prom: string, sink: string, dir: string) => `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
evaluation:
  interval: 1h
  prometheus: { url: "${prom}", scrape_interval: 1s, lookback: 1h }
recording:
  path: ${join(dir, 'records.jsonl')}
  sink: http
  http: { url: "${sink}", timeout_ms: 2000 }
  spool: { path: ${join(dir, 'spool')} }
models:
  v1: { url: "${v1}" }
  v2: { url: "${v2}" }
routes:
  - name: churn
    path: /churn
    record: true
    metrics: [{ name: converted, type: binary }]
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
    rollout: { candidate: v2, steps: [20, 100], step_interval: 1s, min_requests: 50, gates: { max_p99_latency_ratio: 100 } }
`

  /** What an operator reads of an answer, without the instants that differ between two routers. */
  const view = (status: number, body: Record<string, unknown>): unknown => {
    const one = (r: Record<string, unknown>): unknown => ({
      ...r,
      step_started_at: typeof r.step_started_at,
      next_evaluation: typeof r.next_evaluation,
      decisions: (r.decisions as { kind: string; result: string }[]).map((d) => `${d.kind} ${d.result}`),
    })
    if (status !== 200) return { status, body }
    return { status, body: Array.isArray(body.routes) ? { routes: (body.routes as Record<string, unknown>[]).map(one) } : one(body) }
  }
  const call = async (adminUrl: string, method: 'GET' | 'POST', path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(adminUrl + path, { method, headers: method === 'POST' ? { 'x-modelsplit-admin': '1' } : {} })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }

  it('answers /admin/rollouts* as one process does, acts on every worker, and says how the sink fares', async () => {
    const v1 = await upstream(jsonEcho('v1'))
    const v2 = await upstream(jsonEcho('v2'))
    const prom = `http://127.0.0.1:${await closedPort()}`
    const sink = await collector()
    // The same config for one process and for two workers, each in a directory of its own.
    const [oneDir, manyDir] = [await tempDir(), await tempDir()]
    await writeFile(join(oneDir, 'router.yaml'), config(v1.url, v2.url, prom, sink, oneDir))
    await writeFile(join(manyDir, 'router.yaml'), config(v1.url, v2.url, prom, sink, manyDir))
    const one = await serve(join(oneDir, 'router.yaml'))
    const many = await serve(join(manyDir, 'router.yaml'), ['--workers', '2'])

    // Every call, in the same order, gets the same answer from both.
    const calls: ['GET' | 'POST', string][] = [
      ['GET', '/admin/rollouts'],
      ['GET', '/admin/rollouts/churn'],
      ['GET', '/admin/rollouts/nope'],
      ['POST', '/admin/rollouts/churn/pause'],
      ['POST', '/admin/rollouts/churn/pause'],
      ['POST', '/admin/rollouts/churn/resume'],
      ['POST', '/admin/rollouts/churn/bogus'],
      ['POST', '/admin/rollouts/nope/abort'],
      ['POST', '/admin/rollouts/churn/abort'],
      ['GET', '/admin/rollouts/churn'],
    ]
    for (const [method, path] of calls) {
      const a = await call(one.adminUrl, method, path)
      const b = await call(many.adminUrl, method, path)
      expect(view(b.status, b.body), `${method} ${path}`).toEqual(view(a.status, a.body))
    }
    const after = await call(many.adminUrl, 'GET', '/admin/rollouts/churn')
    expect(after.body).toMatchObject({ state: 'rolled_back', percent: 0, effective_weights: { v1: 100, v2: 0 } })
    // The abort reached both workers: whichever serves a user, it is the control.
    const served = await Promise.all(Array.from({ length: 40 }, (_, i) => fresh(`${many.url}/churn`, `u${i}`)))
    expect(served.map((s) => s.model)).toEqual(served.map(() => 'v1'))

    // `modelsplit rollout` drives the primary as it drives a single process.
    const cli = captureIo()
    expect(await rolloutCommand('status', 'churn', many.adminUrl, false, cli.io)).toBe(0)
    expect(cli.out()).toContain('churn: rollout of v2 against v1: rolled_back at 0%')

    // /readyz speaks for the workers' sinks, in a single process's shape.
    const readyz = async (url: string): Promise<{ status: string; sink?: { sink: string; state: string; reachable: boolean }; sink_by_worker?: Record<string, unknown> }> =>
      await (await fetch(`${url}/readyz`)).json() as { status: string; sink?: { sink: string; state: string; reachable: boolean } }
    await until('both sinks delivering', async () => (await readyz(many.adminUrl)).sink?.state === 'delivering')
    const ready = await readyz(many.adminUrl)
    expect(ready).toMatchObject({ status: 'ready', sink: { sink: 'http', destination: sink, state: 'delivering', reachable: true, spooled_bytes: 0, dropped: 0 } })
    expect(Object.keys(ready.sink_by_worker ?? {})).toHaveLength(2)
    expect(Object.keys((await readyz(one.adminUrl)).sink ?? {}).sort()).toEqual(Object.keys(ready.sink ?? {}).sort())

    // The oldest worker answers; killed, the other one does, at once.
    const [oldest] = workerPids(many)
    process.kill(oldest as number, 'SIGKILL')
    const started = Date.now()
    const status = await call(many.adminUrl, 'GET', '/admin/rollouts/churn')
    expect(Date.now() - started).toBeLessThan(1500)
    expect(status).toMatchObject({ status: 200, body: { route: 'churn', state: 'rolled_back' } })

    for (const r of [one, many]) r.child.kill('SIGTERM')
    expect(await one.exited).toBe(0)
    expect(await many.exited).toBe(0)
  }, 60_000)
})

interface Scrape { status: number; ms: number; requests: number; durations: number }

describe('serve --workers 2: /metrics when a worker dies', () => {
  const config = (a: string, b: string) => `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
`

  const start = async (): Promise<{ r: RouterProcess; scrape: () => Promise<Scrape> }> => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const dir = await tempDir()
    await writeFile(join(dir, 'router.yaml'), config(a.url, b.url))
    const r = await serve(join(dir, 'router.yaml'), ['--workers', '2'])
    const scrape = async (): Promise<Scrape> => {
      const t = Date.now()
      const res = await fetch(`${r.adminUrl}/metrics`)
      const m = parseMetrics(await res.text())
      const sum = (prefix: string): number => [...m].filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0)
      return { status: res.status, ms: Date.now() - t, requests: sum('modelsplit_requests_total{'), durations: sum('modelsplit_request_duration_seconds_count{') }
    }
    return { r, scrape }
  }
  const traffic = async (r: RouterProcess, n: number, prefix: string): Promise<void> => {
    for (const res of await Promise.all(Array.from({ length: n }, (_, i) => fresh(`${r.url}/r`, `${prefix}${i}`)))) expect(res.status).toBe(200)
  }

  it('keeps a dead worker\'s counts in the sums: they never go back, across its death and replacement', async () => {
    const { r, scrape } = await start()
    const n = 40
    await traffic(r, n, 'u')
    expect(await scrape()).toMatchObject({ status: 200, requests: n, durations: n })

    const [victim, other] = workerPids(r) as [number, number]
    process.kill(victim, 'SIGKILL')
    // Every scrape from its death until its replacement listens, and after, reads the same sums.
    await until('a replacement worker, listening', async () => {
      expect(await scrape()).toMatchObject({ status: 200, requests: n, durations: n })
      const pids = workerPids(r)
      return pids.length === 2 && !pids.includes(victim) && pids.includes(other) && (await fetch(`${r.adminUrl}/readyz`)).status === 200
    })
    expect(await scrape()).toMatchObject({ status: 200, requests: n, durations: n })
    const m = 20
    await traffic(r, m, 'v')
    expect(await scrape()).toMatchObject({ status: 200, requests: n + m, durations: n + m })

    r.child.kill('SIGTERM')
    expect(await r.exited).toBe(0)
  }, 60_000)

  it('answers a scrape at once, with what it knows, while a worker hangs and as it dies', async () => {
    const { r, scrape } = await start()
    const n = 40
    await traffic(r, n, 'u')
    expect(await scrape()).toMatchObject({ status: 200, requests: n, durations: n })

    // A worker that cannot answer (stopped) is counted as it last answered, after a short wait.
    const [victim] = workerPids(r) as [number]
    process.kill(victim, 'SIGSTOP')
    onTestFinished(() => { try { process.kill(victim, 'SIGKILL') } catch { /* gone already */ } })
    const hung = await scrape()
    expect(hung).toMatchObject({ status: 200, requests: n, durations: n })
    expect(hung.ms).toBeLessThan(4000)

    // It dies while a scrape waits for it: the scrape is answered as soon as the primary sees it go.
    const during = scrape()
    process.kill(victim, 'SIGKILL')
    const died = await during
    expect(died).toMatchObject({ status: 200, requests: n, durations: n })
    expect(died.ms).toBeLessThan(4000)

    r.child.kill('SIGTERM')
    expect(await r.exited).toBe(0)
  }, 60_000)
})

describe('serve --workers 2: /admin/shadows on the primary', () => {
  it('sums every worker\'s comparisons, as one process shows its own', async () => {
    const v1 = await upstream(jsonEcho('a'))
    const v2 = await upstream(jsonEcho('b'))
    const dir = await tempDir()
    const file = join(dir, 'router.yaml')
    await writeFile(file, `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  v1: { url: "${v1.url}" }
  v2: { url: "${v2.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2, percent: 100 }]
`)
    const r = await serve(file, ['--workers', '2'])
    const n = 30
    for (const res of await Promise.all(Array.from({ length: n }, (_, i) => fresh(`${r.url}/r`, `u${i}`)))) expect(res.status).toBe(200)
    type Pair = { primary: string; shadow: string; agree: number; disagree: number; error: number }
    let pairs: Pair[] = []
    // A shadow's comparison lands after its client's answer: wait until every one is counted.
    await until('every comparison counted', async () => {
      const body = await (await fetch(`${r.adminUrl}/admin/shadows`)).json() as { routes: { route: string; pairs: Pair[] }[] }
      pairs = body.routes.find((x) => x.route === 'r')?.pairs ?? []
      return pairs.reduce((s, p) => s + p.agree + p.disagree + p.error, 0) >= n
    })
    expect(pairs).toHaveLength(1)
    // The echoes answer ["a"] and ["b"]: every pair disagrees, none is an error.
    expect(pairs[0]).toMatchObject({ primary: 'v1', shadow: 'v2', agree: 0, disagree: n, error: 0 })
    r.child.kill('SIGTERM')
    expect(await r.exited).toBe(0)
  }, 60_000)
})
