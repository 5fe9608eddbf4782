// serve --workers: every worker assigns identically, /metrics and /admin/experiments speak for all
// workers, feedback reaches a prediction served by another worker, SIGHUP reaches every worker,
// SIGTERM drains every worker.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { compile } from '../src/plan/index.js'
import { parseMetrics } from './helpers/router.js'
import { startFakeMlflow } from './helpers/fake-mlflow.js'
import { spawnRouter, type RouterProcess } from './helpers/router-process.js'
import { upstream } from './helpers/servers.js'

/** One request on a connection of its own, so the cluster's round robin spreads them over workers. */
function fresh(url: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; model: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + path, { method: body === undefined ? 'GET' : 'POST', headers, agent: false }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, model: res.headers['x-modelsplit-model'] as string | undefined, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Starts `serve --workers 2` on a config file; the child is killed when the test ends. */
async function serveCluster(file: string): Promise<{ child: RouterProcess['child']; exited: Promise<number | null>; banner: string }> {
  const r = await spawnRouter(file, ['--workers', '2'])
  onTestFinished(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
  return r
}

const config = (a: string, b: string, wa: number, wb: number) => `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
recording: { path: ./records.jsonl }
models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: r
    path: /r
    record: true
    metrics: [{ name: converted, type: binary }]
    split: [{ model: a, weight: ${wa} }, { model: b, weight: ${wb} }]
`

describe('serve --workers 2', () => {
  it('assigns identically in every worker, aggregates metrics and outcomes, reloads and drains them all', async () => {
    const a = await upstream()
    const b = await upstream()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-cluster-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    const yaml = config(a.url, b.url, 50, 50)
    await writeFile(file, yaml)
    const { child, exited, banner } = await serveCluster(file)
    const [, url, adminUrl] = /predictions on (\S+), admin on (\S+) /.exec(banner) as unknown as [string, string, string]
    expect(banner).toContain('2 workers')

    const compiled = compile(yaml, file)
    if (!compiled.ok) throw new Error('test config invalid')
    const route = compiled.plan.routes[0]
    const n = 60
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => fresh(url as string, '/r/predict', { 'x-user-id': `user-${i}`, 'x-request-id': `req-${i}` }, '{}')))
    answers.forEach((res, i) => {
      expect(res.status).toBe(200)
      expect(res.model).toBe(route?.targets[route.assigner.pick(`user-${i}`)]?.model)
    })
    const metrics = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())
    const served = [...metrics].filter(([k]) => k.startsWith('modelsplit_requests_total{')).reduce((s, [, v]) => s + v, 0)
    expect(served).toBe(n)

    // Outcomes by request id, each on a fresh connection: many land on the other worker.
    const fed = await Promise.all(Array.from({ length: n }, (_, i) => fresh(url as string, '/feedback', { 'content-type': 'application/json' }, JSON.stringify({ route: 'r', request_id: `req-${i}`, metric: 'converted', value: i % 2 }))))
    for (const f of fed) expect(JSON.parse(f.text)).toMatchObject({ accepted: 1, attributed_by: { request_id: 1 } })
    const exp = await (await fetch(`${adminUrl}/admin/experiments/r`)).json() as { metrics: { converted: { models: Record<string, { assignments: number; outcomes: number }> } } }
    const models = exp.metrics.converted.models
    expect((models.a?.assignments ?? 0) + (models.b?.assignments ?? 0)).toBe(n)
    expect((models.a?.outcomes ?? 0) + (models.b?.outcomes ?? 0)).toBe(n)

    // SIGHUP reaches every worker: after it, everyone goes to b, whichever worker answers.
    await writeFile(file, config(a.url, b.url, 0, 100))
    child.kill('SIGHUP')
    let moved = false
    for (let attempt = 0; attempt < 200 && !moved; attempt++) {
      const m = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())
      moved = m.get('modelsplit_split_weight{route="r",model="b"}') === 1 && m.get('modelsplit_config_reloads_total{result="success"}') === 1
      if (!moved) await new Promise((resolve) => setTimeout(resolve, 25))
    }
    expect(moved).toBe(true)
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => fresh(url as string, '/r/predict', { 'x-user-id': `user-${i}` }, '{}')))
    expect(after.every((r) => r.model === 'b')).toBe(true)

    // SIGTERM drains every worker: each record file holds what its worker served.
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    const files = (await readdir(dir)).filter((f) => /^records\.w\d+\.jsonl$/.test(f))
    expect(files.length).toBe(2)
    let predictions = 0
    let outcomes = 0
    for (const f of files) {
      const lines = (await readFile(join(dir, f), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string })
      expect(lines.length).toBeGreaterThan(0)
      predictions += lines.filter((l) => l.type === 'prediction').length
      outcomes += lines.filter((l) => l.type === 'outcome').length
    }
    expect(predictions).toBe(n + 20)
    expect(outcomes).toBe(n)
  })
})

describe('serve --workers 2 with MLflow', () => {
  it('has one worker write the runs, every worker record the versions, and the primary show them', async () => {
    const f = await startFakeMlflow()
    onTestFinished(() => f.close())
    f.register('churn', '1')
    f.register('churn', '2')
    f.setAlias('churn', 'challenger', '2')
    const a = await upstream()
    const b = await upstream()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-cluster-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    await writeFile(file, config(a.url, b.url, 50, 50)
      .replace('models:', `mlflow: { tracking_uri: "${f.url}", log_interval: 1s }\nmodels:`)
      .replace(`a: { url: "${a.url}" }`, `a: { url: "${a.url}", mlflow: { model: churn, version: 1 } }`)
      .replace(`b: { url: "${b.url}" }`, `b: { url: "${b.url}", mlflow: { model: churn, alias: challenger } }`))
    const { child, exited, banner } = await serveCluster(file)
    const [, url, adminUrl] = /predictions on (\S+), admin on (\S+) /.exec(banner) as unknown as [string, string, string]
    const n = 40
    await Promise.all(Array.from({ length: n }, (_, i) => fresh(url, '/r/predict', { 'x-user-id': `user-${i}` }, '{}')))
    // The writer logs every second (its own share of the requests): wait for its first numbers.
    const deadline = Date.now() + 15_000
    const logged = (): boolean => [...f.runs.values()].some((r) => f.latest(r.run_id)['a.share'] !== undefined)
    while (!logged() && Date.now() < deadline) await f.waitFor('runs/log-batch')
    expect(logged()).toBe(true)
    // One writer: it searched for the run, created it, searched again; a second would search too.
    expect(f.calls.filter((c) => c === 'POST runs/create')).toHaveLength(1)
    expect(f.calls.filter((c) => c === 'POST runs/search')).toHaveLength(2)
    const cfg = await (await fetch(`${adminUrl}/admin/config`)).json() as { mlflow: { models: Record<string, { version: string }>; runs: Record<string, string> } }
    expect(cfg.mlflow.models.b?.version).toBe('2')
    expect(cfg.mlflow.runs.r).toBe([...f.runs.keys()][0])
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    for (const name of (await readdir(dir)).filter((x) => /^records\.w\d+\.jsonl$/.test(x))) {
      for (const line of (await readFile(join(dir, name), 'utf8')).trim().split('\n')) {
        const r = JSON.parse(line) as { primary: { model: string; model_version: string } }
        expect(r.primary.model_version).toBe(r.primary.model === 'a' ? '1' : '2')
      }
    }
  })
})
