import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Agent, request } from 'undici'
import { jsonEcho } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.()
})

const yaml = (a: string, b: string, wa: number, wb: number) => `models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: churn
    path: /churn
    split:
      - { model: a, weight: ${wa} }
      - { model: b, weight: ${wb} }
`

async function reload(r: RunningRouter): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

describe('hot reload', () => {
  it('applies new weights on POST /admin/reload: canary users stay in the canary as it ramps', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(yaml(a.url, b.url, 90, 10))
    const users = Array.from({ length: 300 }, (_, i) => `u${i}`)
    const modelOf = async (u: string) => (await fetch(`${r.url}/churn`, { headers: { 'x-user-id': u } })).headers.get('x-modelsplit-model')
    const before = new Map<string, string | null>()
    for (const u of users) before.set(u, await modelOf(u))
    await r.writeConfig(yaml(a.url, b.url, 50, 50))
    const res = await reload(r)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ result: 'success', sha256: r.router.current().loaded.sha256 })
    let moved = 0
    for (const u of users) {
      const now = await modelOf(u)
      if (before.get(u) === 'b') expect(now).toBe('b')
      if (before.get(u) !== now) moved++
    }
    expect(moved).toBeGreaterThan(60) // ~40% of 300 users move into the canary
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_split_weight{route="churn",model="b"}')).toBe(0.5)
    expect(m.get('modelsplit_config_reloads_total{result="success"}')).toBe(1)
    expect(m.get(`modelsplit_config_info{sha256="${res.body.sha256 as string}"}`)).toBe(1)
  })

  it('keeps serving the last good config when the new file is invalid, and says why', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(yaml(a.url, b.url, 100, 0))
    const sha = r.router.current().loaded.sha256
    await r.writeConfig(yaml(a.url, b.url, 100, 0).replace('weight: 0', 'weight: "ten"').replace('name: churn', 'name: churn\n    bogus: 1'))
    const res = await reload(r)
    expect(res.status).toBe(422)
    expect(res.body).toMatchObject({ code: 'MS_CONFIG_INVALID', sha256: sha })
    const problems = res.body.problems as { line: number; path: string; message: string }[]
    expect(problems.map((p) => [p.path, p.line])).toEqual([['routes[0].bogus', 6], ['routes[0].split[1].weight', 10]])
    expect(res.body.message).toContain('routes[0].split[1].weight: must be a number >= 0, got "ten"')
    expect(r.router.current().loaded.sha256).toBe(sha)
    expect((await fetch(`${r.url}/churn`, { headers: { 'x-user-id': 'x' } })).headers.get('x-modelsplit-model')).toBe('a')
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_config_reloads_total{result="failure"}')).toBe(1)
    expect(m.get(`modelsplit_config_info{sha256="${sha}"}`)).toBe(1)
  })

  it('finishes a request on the config it started with', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => { release = resolve })
    const a = await upstream((_req, res) => { void gate.then(() => jsonEcho('a')(_req, res, undefined as never)) })
    const b = await upstream(jsonEcho('b'))
    const r = await router(yaml(a.url, b.url, 1, 0))
    const arrived = a.nextRequest()
    const inFlight = fetch(`${r.url}/churn`, { headers: { 'x-user-id': 'u' } })
    await arrived
    await r.writeConfig(yaml(a.url, b.url, 0, 1))
    expect((await reload(r)).body.result).toBe('success')
    release()
    const res = await inFlight
    expect(res.status).toBe(200)
    expect(res.headers.get('x-modelsplit-model')).toBe('a')
    expect((await fetch(`${r.url}/churn`, { headers: { 'x-user-id': 'u' } })).headers.get('x-modelsplit-model')).toBe('b')
  })

  it('reloads when the watched file changes', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(yaml(a.url, b.url, 1, 0), { watch: true })
    const sha = r.router.current().loaded.sha256
    await r.writeConfig(yaml(a.url, b.url, 0, 1))
    await vi.waitFor(() => expect(r.router.current().loaded.sha256).not.toBe(sha), { timeout: 5000, interval: 20 })
    expect((await fetch(`${r.url}/churn`, { headers: { 'x-user-id': 'u' } })).headers.get('x-modelsplit-model')).toBe('b')
  })

  it('fails no request while the canary is ramped 10 → 50 → 10 under load', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(yaml(a.url, b.url, 90, 10))
    const agent = new Agent({ connections: 16 })
    cleanups.push(() => agent.close())
    let running = true
    const statuses = new Map<number, number>()
    const models = new Set<string>()
    const client = async (c: number) => {
      for (let i = 0; running; i++) {
        const res = await request(`${r.url}/churn/predict`, { method: 'POST', dispatcher: agent, headers: { 'x-user-id': `user-${c}-${i % 50}`, 'content-type': 'application/json' }, body: '{"inputs":[1]}' })
        const body = await res.body.json() as { predictions: string[] }
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        models.add(`${String(res.headers['x-modelsplit-model'])}=${body.predictions[0]}`)
      }
    }
    const clients = Array.from({ length: 16 }, (_, c) => client(c))
    const ramp = [50, 10, 50, 10, 50, 10, 50, 10, 50, 10]
    for (const w of ramp) {
      await r.writeConfig(yaml(a.url, b.url, 100 - w, w))
      expect((await reload(r)).body.result).toBe('success')
    }
    running = false
    await Promise.all(clients)
    expect([...statuses.keys()]).toEqual([200])
    expect(statuses.get(200)).toBeGreaterThan(100)
    // Every answer came from the model the router named.
    expect([...models].sort()).toEqual(['a=a', 'b=b'])
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_config_reloads_total{result="success"}')).toBe(ramp.length)
  })
})

describe('the serve command', () => {
  it('reloads on SIGHUP, and on SIGTERM finishes in-flight requests and exits 0', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => { release = resolve })
    const a = await upstream((req, res) => { void gate.then(() => jsonEcho('a')(req, res, undefined as never)) })
    const b = await upstream(jsonEcho('b'))
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-cli-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    const head = 'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n'
    await writeFile(file, head + yaml(a.url, b.url, 1, 0))
    const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', '--config', file, '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    cleanups.push(async () => { child.kill('SIGKILL'); await exited })
    const banner = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())))
    const [, url, adminUrl] = /predictions on (\S+), admin on (\S+)/.exec(banner) ?? []
    expect(url).toBeDefined()

    await writeFile(file, head + yaml(a.url, b.url, 1, 0).replace('name: churn', 'name: churn\n    salt: changed'))
    const sha = (await (await fetch(`${adminUrl}/admin/config`)).json() as { sha256: string }).sha256
    child.kill('SIGHUP')
    await vi.waitFor(async () => {
      const now = await (await fetch(`${adminUrl}/admin/config`)).json() as { sha256: string; config: { routes: { salt: string }[] } }
      expect(now.config.routes[0]?.salt).toBe('changed')
      expect(now.sha256).not.toBe(sha)
    }, { timeout: 5000, interval: 20 })

    const arrived = a.nextRequest()
    const inFlight = fetch(`${url}/churn`, { headers: { 'x-user-id': 'u' } })
    await arrived
    child.kill('SIGTERM')
    // Not ready any more while draining, so load balancers stop sending traffic.
    await vi.waitFor(async () => expect((await fetch(`${adminUrl}/readyz`).catch(() => ({ status: 0 }))).status).not.toBe(200), { timeout: 5000, interval: 10 })
    release()
    const res = await inFlight
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ predictions: ['a'] })
    expect(await exited).toBe(0)
  })
})
