// Each defect found by trying the router as an attacker and a flaky network would, as a test.
import { connect, type Socket } from 'node:net'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

const metrics = async (r: RunningRouter): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())

/** A raw HTTP request with the path sent exactly as written (fetch and URL would normalise it). */
function rawRequest(url: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

function captureIo(): { io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream }; out: () => string; err: () => string } {
  let out = ''
  let err = ''
  const sink = (append: (s: string) => void) => ({ write: (s: string) => { append(String(s)); return true } }) as unknown as NodeJS.WritableStream
  return { io: { out: sink((s) => { out += s }), err: sink((s) => { err += s }) }, out: () => out, err: () => err }
}


describe('one compile path: what validate accepts, a running router accepts', () => {
  const nginxTiny = (a: string, b: string) => `models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: r
    path: /r
    hash: nginx
    split:
      - { model: a, weight: 1 }
      - { model: b, weight: 1000000 }
`
  it('refuses a weight below nginx\'s 0.01% resolution in validate and assign, with file, line and key path', async () => {
    const u = await upstream()
    const r = await router(nginxTiny(u.url, u.url).replace('1000000', '1'))
    await r.writeConfig(nginxTiny(u.url, u.url))
    const v = captureIo()
    expect(await runCli(['validate', r.configFile], v.io)).toBe(1)
    expect(v.err()).toContain(`${r.configFile}:9: routes[0].split[0].weight: hash: nginx: weight 0 (1) is below nginx split_clients' 0.01% resolution`)
    const a = captureIo()
    expect(await runCli(['assign', '--config', r.configFile, '--route', 'r', 'u1'], a.io)).toBe(1)
    expect(a.err()).toContain('routes[0].split[0].weight')
  })

  it('answers 422 to a reload of that file, counts the failure and keeps serving the old plan', async () => {
    const a = await upstream(() => undefined)
    const b = await upstream()
    const r = await router(nginxTiny(a.url, b.url).replace('- { model: a, weight: 1 }', '- { model: a, weight: 0 }'))
    await r.writeConfig(nginxTiny(a.url, b.url))
    const res = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })
    expect(res.status).toBe(422)
    const body = await res.json() as { code: string; problems: { line: number; path: string }[] }
    expect(body.code).toBe('MS_CONFIG_INVALID')
    expect(body.problems[0]).toMatchObject({ line: 9, path: 'routes[0].split[0].weight' })
    expect((await metrics(r)).get('modelsplit_config_reloads_total{result="failure"}')).toBe(1)
    const served = await fetch(`${r.url}/r`, { headers: { 'x-user-id': 'u1' } })
    expect(served.headers.get('x-modelsplit-model')).toBe('b')
  })

  it('refuses weights whose sum overflows (1e308 + 1e308) instead of splitting wrongly', async () => {
    const v = captureIo()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-test-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    await writeFile(file, nginxTiny('http://127.0.0.1:1', 'http://127.0.0.1:1').replace('    hash: nginx\n', '').replace('weight: 1000000', 'weight: 1e308').replace('weight: 1 }', 'weight: 1e308 }'))
    expect(await runCli(['validate', file], v.io)).toBe(1)
    expect(v.err()).toContain('routes[0].split: weights sum to Infinity')
  })
})

describe('paths cannot escape the model\'s base path', () => {
  const setup = async () => {
    const a = await upstream()
    const b = await upstream()
    const r = await router(`models:
  a: { url: "${a.url}/v1/models/a" }
routes:
  - name: a
    path: /models/a
    split: [{ model: a, weight: 1 }]
`)
    return { a, b, r }
  }
  it.each([
    ['backslash dot-dot', '/models/a/x\\..\\..\\b/predict'],
    ['backslash to admin', '/models/a/x\\..\\..\\..\\..\\admin'],
    ['encoded backslash', '/models/a/x%5c..%5c..%5cb/predict'],
    ['encoded backslash, upper case', '/models/a/x%5C..%5C..%5Cb/predict'],
    ['dot-dot segments', '/models/a/../b/predict'],
    ['encoded dots', '/models/a/%2e%2e/%2E%2E/b/predict'],
    ['encoded slash', '/models/a/x%2f..%2f..%2fb/predict'],
    ['NUL', '/models/a/x%00/predict'],
  ])('refuses %s with 400 MS_BAD_PATH and sends nothing to the model', async (_name, path) => {
    const { a, r } = await setup()
    const res = await rawRequest(r.url, path)
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body)).toMatchObject({ statusCode: 400, code: 'MS_BAD_PATH', route: 'a' })
    expect(a.requests).toHaveLength(0)
  })
  it('still forwards ordinary paths, dots inside names included', async () => {
    const { a, r } = await setup()
    const res = await rawRequest(r.url, '/models/a/v2.1/predict.json?x=..')
    expect(res.status).toBe(200)
    expect(a.requests[0]?.url).toBe('/v1/models/a/v2.1/predict.json?x=..')
  })
})

describe('slow clients and slow models', () => {
  it('160 clients trickling bodies at 1 byte/s leave other requests to the same and other models unaffected', async () => {
    const a = await upstream()
    const b = await upstream()
    // a and b share one origin's pool of 128 connections.
    const r = await router(`models:
  a: { url: "${a.url}/a" }
  b: { url: "${a.url}/b" }
  c: { url: "${b.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
  - name: other
    path: /other
    split: [{ model: c, weight: 1 }]
`)
    const port = Number(new URL(r.url).port)
    const sockets: Socket[] = []
    onTestFinished(() => { for (const s of sockets) s.destroy() })
    await Promise.all(Array.from({ length: 160 }, (_, i) => new Promise<void>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(`POST /r/predict HTTP/1.1\r\nHost: x\r\nx-user-id: slow-${i}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`)
        resolve()
      })
      s.on('error', reject)
      sockets.push(s)
    })))
    const timer = setInterval(() => { for (const s of sockets) if (!s.destroyed) s.write(' ') }, 1000)
    onTestFinished(() => clearInterval(timer))
    // The model has seen none of them: their bodies are not complete.
    const started = performance.now()
    for (const user of ['u1', 'u2', 'u3', 'u4']) {
      const res = await fetch(`${r.url}/r/predict`, { method: 'POST', headers: { 'x-user-id': user }, body: '{"x":1}', signal: AbortSignal.timeout(5000) })
      expect(res.status).toBe(200)
    }
    expect((await fetch(`${r.url}/other`, { signal: AbortSignal.timeout(5000) })).status).toBe(200)
    expect(performance.now() - started).toBeLessThan(4000)
    expect(a.requests.every((q) => !q.headers['x-user-id']?.toString().startsWith('slow-'))).toBe(true)
  })

  it('answers 408 and closes the connection when a body pauses longer than limits.body_timeout_ms', async () => {
    const a = await upstream()
    const r = await router(`limits: { body_timeout_ms: 200 }
models:
  a: { url: "${a.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const port = Number(new URL(r.url).port)
    const s = connect(port, '127.0.0.1')
    onTestFinished(() => { s.destroy() })
    let got = ''
    const closed = new Promise<void>((resolve) => s.on('close', () => resolve()))
    s.on('data', (c: Buffer) => { got += c.toString() })
    s.write('POST /r HTTP/1.1\r\nHost: x\r\ncontent-length: 10\r\n\r\n{"a"')
    await closed
    expect(got).toMatch(/^HTTP\/1\.1 408 /)
    expect(got).toContain('"code":"MS_BODY_TIMEOUT"')
    expect(a.requests).toHaveLength(0)
    expect((await metrics(r)).get('modelsplit_request_errors_total{route="r",code="MS_BODY_TIMEOUT"}')).toBe(1)
  })

  it('answers 504 when a request waits for a pooled connection longer than timeout_ms', async () => {
    const hang = await upstream((req, res) => { if (req.url === '/hang') return; res.end('{}') })
    onTestFinished(() => hang.close())
    const r = await router(`models:
  a: { url: "${hang.url}", timeout_ms: 300, connections: 1 }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const first = fetch(`${r.url}/r/hang`).then((x) => x.status)
    await hang.nextRequest()
    const started = performance.now()
    const queued = await fetch(`${r.url}/r/ok`)
    const elapsed = performance.now() - started
    expect(queued.status).toBe(504)
    expect(await queued.json()).toMatchObject({ code: 'MS_UPSTREAM_TIMEOUT', model: 'a' })
    expect(elapsed).toBeLessThan(900)
    expect(await first).toBe(504)
  })

  it('honours a short timeout_ms to the millisecond scale, not undici\'s one-second timers', async () => {
    const slow = await upstream((_req, res) => { setTimeout(() => res.end('{}'), 2000).unref() })
    const r = await router(`models:
  a: { url: "${slow.url}", timeout_ms: 100 }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const started = performance.now()
    const res = await fetch(`${r.url}/r`)
    const elapsed = performance.now() - started
    expect(res.status).toBe(504)
    // Before, undici's coarse timers fired after about 980 ms.
    expect(elapsed).toBeGreaterThanOrEqual(95)
    expect(elapsed).toBeLessThan(400)
  })
})

describe('attribution and statuses', () => {
  it('keeps the router\'s x-modelsplit-model and x-request-id over a model\'s', async () => {
    const evil = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-modelsplit-model': 'evil', 'x-request-id': 'evil-id' })
      res.end('{"predictions":[1]}')
    })
    const r = await router(`models:
  a: { url: "${evil.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const res = await fetch(`${r.url}/r`, { headers: { 'x-request-id': 'client-id-1' } })
    expect(res.headers.get('x-modelsplit-model')).toBe('a')
    expect(res.headers.get('x-request-id')).toBe('client-id-1')
    expect(evil.requests[0]?.headers['x-request-id']).toBe('client-id-1')
  })

  it('counts a client that goes away mid-upload as a client abort, not a model error', async () => {
    const a = await upstream()
    const r = await router(`limits: { max_buffered_body_bytes: 0 }
models:
  a: { url: "${a.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const port = Number(new URL(r.url).port)
    const s = connect(port, '127.0.0.1')
    await new Promise<void>((resolve) => s.on('connect', () => resolve()))
    s.write('POST /r HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\n' + 'x'.repeat(1000))
    const seen = async (): Promise<number> => (await metrics(r)).get('modelsplit_client_aborts_total{route="r"}') ?? 0
    // Wait until the router has the request in hand (the model sees its first bytes), then vanish.
    for (let i = 0; i < 100 && (await metrics(r)).get('modelsplit_assignments_total{route="r",model="a",source="missing_user_id"}') !== 1; i++) await new Promise((resolve) => setImmediate(resolve))
    s.destroy()
    for (let i = 0; i < 200 && await seen() === 0; i++) await new Promise((resolve) => setImmediate(resolve))
    const m = await metrics(r)
    expect(m.get('modelsplit_client_aborts_total{route="r"}')).toBe(1)
    expect([...m.keys()].some((k) => k.startsWith('modelsplit_upstream_errors_total{'))).toBe(false)
  })

  it('answers Expect: 100-continue requests instead of blaming the model with a 502', async () => {
    const a = await upstream()
    const r = await router(`models:
  a: { url: "${a.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`)
    const res = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
      let continued = false
      const req = httpRequest(`${r.url}/r`, { method: 'POST', headers: { expect: '100-continue', 'content-type': 'application/json', 'content-length': 7 } }, (response) => {
        let body = ''
        response.on('data', (c: Buffer) => { body += c.toString() })
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body, continued }))
      })
      req.on('continue', () => { continued = true; req.end('{"x":1}') })
      req.on('error', reject)
    })
    expect(res).toMatchObject({ status: 200, continued: true })
    expect(a.requests[0]?.body).toBe('{"x":1}')
    expect(a.requests[0]?.headers.expect).toBeUndefined()
  })
})

describe('user ids beyond ASCII', () => {
  it('hashes a UTF-8 id sent in a header as the same id sent in a query, and records it as written', async () => {
    const a = await upstream()
    const r = await router(`recording: { path: ./records.jsonl }
models:
  a: { url: "${a.url}" }
  b: { url: "${a.url}" }
routes:
  - name: r
    path: /r
    record: true
    user_id: [header:x-user-id, query:user_id]
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
`)
    const ids = ['José', 'Łukasz', '山田', 'Zoë', 'émile', 'ñandú', '😀', 'Ærø']
    for (const id of ids) {
      // node:http (and every HTTP/1.1 stack) carries header bytes: send the id's UTF-8 bytes.
      const byHeader = await rawRequest(r.url, '/r', { headers: { 'x-user-id': Buffer.from(id, 'utf8').toString('latin1') } })
      const byQuery = await rawRequest(r.url, `/r?user_id=${encodeURIComponent(id)}`)
      expect(byHeader.headers['x-modelsplit-model'], id).toBe(byQuery.headers['x-modelsplit-model'])
      const assigned = await (await fetch(`${r.adminUrl}/admin/assign?route=r&user_id=${encodeURIComponent(id)}`)).json() as { model: string }
      expect(byHeader.headers['x-modelsplit-model'], id).toBe(assigned.model)
    }
    await r.router.flush()
    const users = (await readFile(join(dirname(r.configFile), 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { user_id: string }).user_id)
    expect(users.filter((_, i) => i % 2 === 0)).toEqual(ids)
  })
})

describe('a router-wide capture budget', () => {
  it('streams answers uncaptured past limits.max_capture_total_bytes, recording the comparison as an error with that reason', async () => {
    const big = JSON.stringify({ predictions: [1], pad: 'p'.repeat(5000) })
    const a = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(big) })
    const s = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(big) })
    const r = await router(`limits: { max_capture_total_bytes: 1000 }
recording: { path: ./records.jsonl }
models:
  a: { url: "${a.url}" }
  s: { url: "${s.url}" }
routes:
  - name: r
    path: /r
    record: true
    split: [{ model: a, weight: 1 }]
    shadow: [{ model: s }]
`)
    const res = await fetch(`${r.url}/r`, { headers: { 'x-user-id': 'u' } })
    expect(await res.text()).toBe(big)
    await r.router.flush()
    const m = await metrics(r)
    expect(m.get('modelsplit_capture_budget_exceeded_total{route="r"}')).toBe(1)
    expect(m.get('modelsplit_shadow_comparisons_total{route="r",primary="a",shadow="s",result="error"}')).toBe(1)
    const [line] = (await readFile(join(dirname(r.configFile), 'records.jsonl'), 'utf8')).trim().split('\n')
    const rec = JSON.parse(line as string) as { primary: { error: string }; shadows: { comparison: { error: string } }[] }
    expect(rec.primary.error).toContain('limits.max_capture_total_bytes')
    expect(rec.shadows[0]?.comparison.error).toContain('max_capture_total_bytes')
  })

  it('does not mirror while the budget is in use, and records the shadow as dropped for capture_budget', async () => {
    let release: () => void = () => undefined
    const held = new Promise<void>((resolve) => { release = resolve })
    const a = await upstream((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      if (req.url === '/hold') {
        // Exactly the budget's 2 500 bytes of answer, then the rest only when the test says.
        res.write('{"predictions":[1],"pad":"' + 'p'.repeat(2474))
        void held.then(() => res.end('"}'))
        return
      }
      res.end('{"predictions":[1]}')
    })
    const s = await upstream((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"predictions":[1]}') })
    const r = await router(`limits: { max_capture_total_bytes: 2500 }
recording: { path: ./records.jsonl }
models:
  a: { url: "${a.url}" }
  s: { url: "${s.url}" }
routes:
  - name: r
    path: /r
    record: true
    split: [{ model: a, weight: 1 }]
    shadow: [{ model: s }]
`)
    const first = await fetch(`${r.url}/r/hold`, { headers: { 'x-user-id': 'u1' } })
    const reader = (first.body as ReadableStream<Uint8Array>).getReader()
    let seen = 0
    while (seen < 2400) seen += ((await reader.read()).value?.length ?? 0)
    const second = await fetch(`${r.url}/r/quick`, { headers: { 'x-user-id': 'u2', 'x-request-id': 'second' } })
    expect(await second.json()).toEqual({ predictions: [1] })
    release()
    while (!(await reader.read()).done) { /* drain */ }
    await r.router.flush()
    const m = await metrics(r)
    expect(m.get('modelsplit_shadow_dropped_total{route="r",model="s",reason="capture_budget"}')).toBe(1)
    const records = (await readFile(join(dirname(r.configFile), 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { request_id: string; shadows: unknown[] })
    expect(records.find((x) => x.request_id === 'second')?.shadows).toEqual([{ model: 's', dropped: 'capture_budget' }])
  })
})
