// serve --workers and the Kafka/HTTP sink's spool (issue 18 item 10): outcomes acknowledged by a
// worker that is killed are delivered by its replacement (it takes the same slot, so the same
// spool directory), and a restart with fewer workers drains the directories of
// the slots it no longer has. Real processes, real SIGKILLs, a collector on 127.0.0.1.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { spawnRouter, type RouterProcess } from './helpers/router-process.js'
import { upstream } from './helpers/servers.js'
import { freePort } from './helpers/upstream.js'

/** One request on a connection of its own, so the cluster's round robin spreads them over workers. */
function fresh(url: string, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + path, { method: 'POST', headers, agent: false }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** A CloudEvents collector that answers 503 while `isDown`, and remembers the outcomes' request ids. */
async function startCollector(): Promise<{ url: string; outcomes: Set<string>; isDown: boolean }> {
  const state = { url: '', outcomes: new Set<string>(), isDown: true }
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      if (state.isDown) {
        res.writeHead(503).end()
        return
      }
      for (const e of JSON.parse(body) as Array<{ type: string; data: { request_id: string } }>) {
        if (e.type === 'org.modelsplit.outcome') state.outcomes.add(e.data.request_id)
      }
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/records`
  onTestFinished(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return state
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** The pids of a process's children (its cluster workers), from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  return text.trim().split(/\s+/).filter((s) => s !== '').map(Number)
}

async function serve(file: string, workers: number): Promise<RouterProcess> {
  const r = await spawnRouter(file, ['--workers', String(workers)])
  onTestFinished(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
  return r
}

/** Predictions then acknowledged outcomes for `ids`, each on a fresh connection. */
async function predictAndFeed(url: string, ids: string[]): Promise<void> {
  for (const id of ids) expect((await fresh(url, '/r/predict', { 'x-user-id': id, 'x-request-id': id }, '{}')).status).toBe(200)
  for (const id of ids) {
    const fb = await fresh(url, '/feedback', { 'content-type': 'application/json' }, JSON.stringify({ route: 'r', request_id: id, metric: 'converted', value: 1 }))
    expect(fb.status, fb.text).toBe(200)
    expect(JSON.parse(fb.text)).toMatchObject({ accepted: 1 })
  }
}

describe('serve --workers with an HTTP sink', () => {
  it('delivers every acknowledged outcome after worker kills and after a restart with fewer workers', async () => {
    const model = await upstream()
    const collector = await startCollector()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-cluster-spool-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    // A fixed port: with port 0 a cluster whose every worker was replaced listens on another one.
    await writeFile(file, `listen: { host: 127.0.0.1, port: ${await freePort()} }
admin: { host: 127.0.0.1, port: 0 }
shutdown_timeout_ms: 500
recording:
  sink: http
  http: { url: "${collector.url}", timeout_ms: 1000 }
  spool: { path: ./spool }
models:
  a: { url: "${model.url}" }
routes:
  - name: r
    path: /r
    record: true
    metrics: [{ name: converted, type: binary }]
    split: [{ model: a, weight: 1 }]
`)
    // 1. The collector is down: outcomes are acknowledged once in a worker's spool; then every worker is killed.
    const first = await serve(file, 3)
    const killed = Array.from({ length: 24 }, (_, i) => `k-${i}`)
    await predictAndFeed(first.url, killed)
    const workers = await childrenOf(first.child.pid as number)
    expect(workers.length).toBe(3)
    // One at a time, each waiting for its replacement.
    for (const [i, pid] of workers.entries()) {
      process.kill(pid, 'SIGKILL')
      await until(`the replacement of worker ${i + 1}`, async () => {
        const now = await childrenOf(first.child.pid as number)
        return now.length === 3 && !now.includes(pid) && first.stderr().split('starting another').length > i + 1
      })
    }
    collector.isDown = false
    await until('every outcome acknowledged before the kills', () => killed.every((id) => collector.outcomes.has(id)))

    // 2. Down again: outcomes spread over three spools; then the router stops and comes back with two workers.
    collector.isDown = true
    const stopped = Array.from({ length: 24 }, (_, i) => `s-${i}`)
    await predictAndFeed(first.url, stopped)
    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    expect((await readdir(join(dir, 'spool'))).filter((d) => /^w\d+$/.test(d)).sort()).toEqual(['w1', 'w2', 'w3'])
    collector.isDown = false
    const second = await serve(file, 2)
    await until('every outcome left in the spool of slot 3 too', () => stopped.every((id) => collector.outcomes.has(id)))
    // Slot 1 drained w3, the slot no worker has now, and removed it; slots 1 and 2 keep theirs.
    await until('w3 removed', async () => (await readdir(join(dir, 'spool'))).filter((d) => /^w\d+$/.test(d)).sort().join() === 'w1,w2')
    second.child.kill('SIGTERM')
    expect(await second.exited).toBe(0)
  }, 90_000)
})
