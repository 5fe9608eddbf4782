import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { freePort, startUpstream, type Upstream } from './helpers/upstream.js'
import { startRouter, type RunningRouter } from './helpers/router.js'

const prometheusBin = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim()

/** The PromQL the README promises, read from the README itself so the two cannot drift apart. */
async function readmeQuery(marker: string): Promise<string> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const m = new RegExp(`<!-- promql:${marker} -->\\s*\`\`\`promql\\n([\\s\\S]*?)\`\`\``).exec(readme)
  if (m?.[1] === undefined) throw new Error(`README has no promql:${marker} block`)
  return m[1]
}

interface Vector { metric: Record<string, string>; value: [number, string] }

describe.skipIf(prometheusBin === '')('the README\'s PromQL against a real Prometheus', () => {
  let v1: Upstream
  let v2: Upstream
  let r: RunningRouter
  let dir: string
  let prom: ReturnType<typeof spawn>
  let promUrl: string

  beforeAll(async () => {
    v1 = await startUpstream((_req, res) => res.end('{"predictions":[1]}'))
    v2 = await startUpstream((_req, res) => res.end('{"predictions":[2]}'))
    r = await startRouter(`models:
  churn-v1: { url: "${v1.url}" }
  churn-v2: { url: "${v2.url}" }
routes:
  - name: churn
    path: /models/churn
    split: [{ model: churn-v1, weight: 50 }, { model: churn-v2, weight: 50 }]
    metrics: [{ name: converted, type: binary }]
`)
    dir = await mkdtemp(join(tmpdir(), 'modelsplit-prom-'))
    await writeFile(join(dir, 'prometheus.yml'), `global: { scrape_interval: 1s }
scrape_configs:
  - job_name: modelsplit
    static_configs: [{ targets: ["${new URL(r.adminUrl).host}"] }]
`)
    const port = await freePort()
    promUrl = `http://127.0.0.1:${port}`
    prom = spawn(prometheusBin, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' })
    await vi.waitFor(async () => expect((await fetch(`${promUrl}/-/ready`)).status).toBe(200), { timeout: 20_000, interval: 100 })
  }, 30_000)

  afterAll(async () => {
    if (prom !== undefined && prom.exitCode === null) {
      const exited = new Promise((resolve) => prom.once('exit', resolve))
      prom.kill('SIGTERM')
      await exited
    }
    await r?.close()
    await v1?.close()
    await v2?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function query(q: string): Promise<Vector[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)
    const body = await res.json() as { status: string; data: { result: Vector[] }; error?: string }
    if (body.status !== 'success') throw new Error(`${q}: ${body.error}`)
    return body.data.result
  }

  it('parses every PromQL line and block the README shows', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const blocks = [...readme.matchAll(/```promql\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    expect(blocks.length).toBeGreaterThanOrEqual(3)
    // A block is one query, or several each under its own # comment.
    const queries = blocks.flatMap((b) => b.split(/^#.*$/m).map((q) => q.trim()).filter((q) => q !== ''))
    expect(queries.length).toBeGreaterThanOrEqual(10)
    for (const q of queries) await expect(query(q), q).resolves.toBeInstanceOf(Array)
  })

  it('gives the same conversion rates and lift as /admin/experiments', async () => {
    const outcomes: unknown[] = []
    for (let i = 0; i < 400; i++) {
      const res = await fetch(`${r.url}/models/churn/predict`, { method: 'POST', headers: { 'x-user-id': `user-${i}` }, body: '{}' })
      await res.text()
      const model = res.headers.get('x-modelsplit-model')
      outcomes.push({ route: 'churn', request_id: res.headers.get('x-request-id'), metric: 'converted', value: (i * 31) % 100 < (model === 'churn-v2' ? 35 : 20) ? 1 : 0 })
    }
    expect((await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(outcomes) })).status).toBe(200)

    // Wait until Prometheus has scraped the router after the outcomes arrived.
    await vi.waitFor(async () => {
      const total = await query('sum(modelsplit_outcomes_total{metric="converted"})').catch(() => [])
      expect(Number(total[0]?.value[1])).toBe(400)
    }, { timeout: 20_000, interval: 250 })

    const admin = await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json() as {
      metrics: { converted: { models: Record<string, { rate: number }>; comparisons: Record<string, { rel_lift: number }> } }
    }
    const rates = await query(await readmeQuery('conversion-rate'))
    expect(rates).toHaveLength(2)
    for (const v of rates) expect(Number(v.value[1])).toBeCloseTo(admin.metrics.converted.models[v.metric.model as string]?.rate as number, 10)
    const lifts = await query(await readmeQuery('lift'))
    const lift = Object.fromEntries(lifts.map((v) => [v.metric.model, Number(v.value[1])]))
    expect(lift['churn-v1']).toBeCloseTo(0, 10)
    expect(lift['churn-v2']).toBeCloseTo(admin.metrics.converted.comparisons['churn-v2']?.rel_lift as number, 10)
    expect(lift['churn-v2']).toBeGreaterThan(0.3)
  })
})
