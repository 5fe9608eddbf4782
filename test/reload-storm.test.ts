// A reload storm under load: the config file is rewritten 50 times a second (valid, invalid and
// tricky files, deleted and recreated, emptied, renamed into place) while clients send
// predictions; the watcher and explicit POST /admin/reload apply what they find. No client
// request may fail, and afterwards the router serves the last valid file.
import { once } from 'node:events'
import { rename, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { compile } from '../src/plan/index.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { jsonEcho } from './helpers/upstream.js'

/**
 * A valid config whose every prefix is invalid: the route comes first and the models last, with
 * quoted URLs, and the split names both models, so a reader that catches the file half-written
 * sees a broken file, never a smaller valid one.
 */
function valid(a: string, b: string, canary: number, opts: { salt?: string; style?: 'block' | 'crlf' | 'extra-route' } = {}): string {
  const text = `# churn canary at ${canary}%
routes:
  - name: churn
    path: /churn
    user_id: [header:x-user-id, body:/user/id]
    salt: ${opts.salt ?? 'storm-1'}
    split:
      - { model: a, weight: ${100 - canary} }
      - { model: b, weight: ${canary} }
    shadow:
      - { model: b, percent: 50 }
${opts.style === 'extra-route' ? `  - { name: other, path: /other, split: [{ model: b, weight: 1 }, { model: a, weight: 0 }] }\n` : ''}models:
  a: { url: "${a}", timeout_ms: 5000 }
  b: { url: "${b}", timeout_ms: 5000 }
`
  return opts.style === 'crlf' ? '\uFEFF' + text.replace(/\n/g, '\r\n') : text
}

/** Files that must be refused; each keeps the router on the config it has. */
function invalidFiles(a: string, b: string): string[] {
  const ok = valid(a, b, 5)
  return [
    // Looks like a fine nginx split, but 0.0001% is below split_clients' 0.01% resolution.
    ok.replace('    salt: storm-1\n', '    salt: storm-1\n    hash: nginx\n').replace('weight: 95 }', 'weight: 999999 }').replace('weight: 5 }', 'weight: 1 }'),
    ok.slice(0, Math.floor(ok.length * 0.6)), // truncated mid-document
    ok.slice(0, ok.lastIndexOf('"')), // truncated inside the last URL
    '', // emptied
    ok.replace('weight: 5 }', 'weight: "5" }'),
    ok.replace('{ model: b, weight: 5 }', '{ model: a, weight: 5 }'), // a model twice
    ok.replace('  b: { url', '  c: { url'), // split names an undefined model
    ok.replace('weight: 95', 'wieght: 95'),
    ok.replace('path: /churn', 'path: /feedback'),
    ok.replace('    split:', '\tsplit:'),
  ]
}

const metrics = async (r: RunningRouter): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())

describe('reload storm under load', () => {
  it('fails no request while the file is rewritten 50 times a second for 3 s, then serves the last valid file', async () => {
    const ua = await upstream(jsonEcho('a'))
    const ub = await upstream(jsonEcho('b'))
    const initial = valid(ua.url, ub.url, 10)
    const last = valid(ua.url, ub.url, 50)
    const r = await router(initial, { watch: true })
    const file = r.configFile
    const agent = new Agent({ connections: 32 })
    onTestFinished(() => agent.close())

    // --- load: clients that check every answer came from a real model server -----------------
    const failures: string[] = []
    let answered = 0
    let running = true
    const check = async (what: string, send: () => Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: { text(): Promise<string> } }>): Promise<void> => {
      try {
        const res = await send()
        const text = await res.body.text()
        const model = res.headers['x-modelsplit-model']
        if (res.statusCode !== 200 || (model !== 'a' && model !== 'b') || text !== JSON.stringify({ predictions: [model] })) {
          failures.push(`${what}: ${res.statusCode} ${String(model)} ${text}`)
        }
        answered++
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`)
      }
    }
    const url = `${r.url}/churn/predict`
    const json = { 'content-type': 'application/json' }
    const clients = [
      async (c: number) => { for (let i = 0; running; i++) await check('header id', () => request(url, { method: 'POST', dispatcher: agent, headers: { ...json, 'x-user-id': `h${c}-${i % 100}` }, body: '{"inputs":[1]}' })) },
      async (c: number) => { for (let i = 0; running; i++) await check('body id', () => request(url, { method: 'POST', dispatcher: agent, headers: json, body: JSON.stringify({ user: { id: `b${c}-${i % 100}` }, inputs: [1] }) })) },
      async (c: number) => { for (let i = 0; running; i++) await check('GET', () => request(`${url}?i=${i}`, { dispatcher: agent, headers: { 'x-user-id': `g${c}-${i % 100}` } })) },
      // A client whose chunked body takes a while: its request is decided on the config in force
      // when it began, and dispatched after later reloads have swapped that config out.
      async (c: number) => {
        for (let i = 0; running; i++) {
          const body = Readable.from((async function * () { yield '{"user":'; await delay(15); yield `{"id":"s${c}-${i % 100}"}}` })())
          await check('slow body', () => request(url, { method: 'POST', dispatcher: agent, headers: json, body }))
        }
      },
    ]
    const load = [0, 1].flatMap((c) => clients.map((client) => client(c)))

    // --- the storm: 50 writes a second, some pauses long enough for the watcher to fire ----------
    const bad = invalidFiles(ua.url, ub.url)
    const goods = [valid(ua.url, ub.url, 0), valid(ua.url, ub.url, 5, { style: 'crlf' }), valid(ua.url, ub.url, 1, { style: 'extra-route' }), valid(ua.url, ub.url, 10, { salt: 'storm-2' })]
    for (const text of goods) expect(compile(text, file).ok).toBe(true)
    for (const text of bad) expect(compile(text, file).ok).toBe(false)
    // A reader that catches a file half-written finds it broken, never a smaller valid config.
    const full = goods[0] as string
    for (let n = 0; n < full.trimEnd().length; n++) expect(compile(full.slice(0, n), file).ok, full.slice(0, n)).toBe(false)
    const tmp = join(dirname(file), '.router.yaml.tmp')
    const explicit: { status: number; result?: string; problems?: unknown[] }[] = []
    let storming = true
    const reloader = (async () => {
      while (storming) {
        const res = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })
        const body = await res.json() as { result?: string; problems?: unknown[] }
        explicit.push({ status: res.status, ...body })
        await delay(60)
      }
    })()
    const started = Date.now()
    let writes = 0
    for (let i = 0; Date.now() - started < 3000; i++) {
      switch (i % 6) {
        case 0: case 2: await writeFile(file, goods[(i / 2) % goods.length | 0] as string); break
        case 1: case 4: await writeFile(file, bad[i % bad.length] as string); break
        case 3: await rm(file, { force: true }); break // deleted, then recreated by the next write
        case 5: await writeFile(tmp, goods[i % goods.length] as string); await rename(tmp, file); break // renamed into place
      }
      writes++
      // In each 200 ms: 10 writes 5 ms apart, then a pause past the watcher's 100 ms debounce, so
      // the watcher fires during the storm too; 50 writes a second, paced by the clock, not by
      // how long each write took.
      const nextAt = started + Math.floor((i + 1) / 10) * 200 + ((i + 1) % 10) * 5
      await delay(Math.max(0, nextAt - Date.now()))
    }
    const stormSeconds = (Date.now() - started) / 1000
    storming = false
    await reloader

    // --- the last valid file: the watcher applies it, and one more explicit reload agrees ------
    const compiled = compile(last, file)
    if (!compiled.ok) throw new Error('the last file must be valid')
    const lastSha = compiled.plan.loaded.sha256
    await writeFile(file, last)
    await vi.waitFor(() => expect(r.router.current().loaded.sha256).toBe(lastSha), { timeout: 5000, interval: 20 })
    const final = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })
    const finalBody = await final.json() as { result: string; sha256: string }
    running = false
    await Promise.all(load)

    expect(failures).toEqual([])
    expect(answered).toBeGreaterThan(200)
    expect(writes / stormSeconds).toBeGreaterThan(35)
    expect(final.status).toBe(200)
    expect(finalBody).toMatchObject({ result: 'unchanged', sha256: lastSha })
    expect(r.router.current().loaded.sha256).toBe(lastSha)

    // Explicit reloads answered 200 or a located 422, never anything else.
    expect(explicit.length).toBeGreaterThan(10)
    for (const e of explicit) {
      expect([200, 422]).toContain(e.status)
      if (e.status === 422) expect(e.problems?.length).toBeGreaterThan(0)
    }
    const m = await metrics(r)
    const failed = m.get('modelsplit_config_reloads_total{result="failure"}') ?? 0
    const succeeded = m.get('modelsplit_config_reloads_total{result="success"}') ?? 0
    expect(failed).toBeGreaterThan(0)
    expect(failed).toBeGreaterThanOrEqual(explicit.filter((e) => e.status === 422).length)
    expect(succeeded).toBeGreaterThan(0)
    // Every reload that changed something or failed is counted: the explicit ones and the
    // watcher's final one, plus the watcher's own during the storm (none when, on a loaded
    // machine, the explicit reloads always read each write first).
    const explicitCounted = explicit.filter((e) => e.status === 422 || e.result === 'success').length
    expect(failed + succeeded).toBeGreaterThanOrEqual(explicitCounted + 1)

    // The router now splits by the last file: 50/50, users moved into the canary b, and only into it.
    const initialPlan = compile(initial, file)
    if (!initialPlan.ok) throw new Error('the initial file must be valid')
    const before = initialPlan.plan.routes[0]
    const after = compiled.plan.routes[0]
    if (before === undefined || after === undefined) throw new Error('no route')
    const users = Array.from({ length: 200 }, (_, i) => `final-${i}`)
    const moved = users.filter((u) => before.assigner.pick(u) === 0 && after.assigner.pick(u) === 1)
    expect(moved.length).toBeGreaterThan(40)
    for (const u of users) {
      const res = await request(url, { method: 'POST', dispatcher: agent, headers: { ...json, 'x-user-id': u }, body: '{}' })
      const expected = after.assigner.models[after.assigner.pick(u)]
      expect(res.headers['x-modelsplit-model'], u).toBe(expected)
      expect(await res.body.json()).toEqual({ predictions: [expected] })
      if (before.assigner.pick(u) === 1) expect(expected).toBe('b')
    }
  })
})

// Not committed: fails against src as it stands (reported with the commit that adds the rest).
describe('reloads while a request is still reading its body (bug)', () => {
  it('does not fail a request whose model pool two reloads replaced before its body had arrived', async () => {
    const u = await upstream(jsonEcho('a'))
    const config = (connections: number): string => `models:\n  a: { url: "${u.url}", connections: ${connections} }\nroutes:\n  - { name: r, path: /r, split: [{ model: a, weight: 1 }] }\n`
    const r = await router(config(8))
    const reload = async (connections: number): Promise<void> => {
      await r.writeConfig(config(connections))
      expect((await (await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })).json() as { result: string }).result).toBe('success')
    }
    // The router's own 'request' listener runs first: once ours runs, the request has its config.
    const started = once(r.router.app.server, 'request')
    const { hostname, port } = new URL(r.url)
    const req = httpRequest({ host: hostname, port, path: '/r', method: 'POST', headers: { 'x-user-id': 'u', 'content-type': 'application/json', 'content-length': '11' } })
    const answer = new Promise<string>((resolve, reject) => {
      req.on('response', (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => resolve(`${res.statusCode} ${body}`))
      })
      req.on('error', reject)
    })
    req.write('{"x":')
    await started
    await reload(16) // the request's plan is now the old one: its pool is kept
    await reload(32) // …and now neither in force nor the one just replaced: its pool is closed
    req.end('[1,2]}')
    expect(await answer).toBe(`200 ${JSON.stringify({ predictions: ['a'] })}`)
  })
})
