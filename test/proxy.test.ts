import { request as httpRequest } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { closedPort, jsonEcho } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.()
})



function config(models: Record<string, string>, route: string): string {
  const m = Object.entries(models).map(([name, url]) => `  ${name}: { url: "${url}", timeout_ms: 500 }`).join('\n')
  return `models:\n${m}\nroutes:\n${route}\n`
}

const TWO_WAY = (extra = '') => `  - name: churn
    path: /models/churn
    user_id: [header:x-user-id, query:user_id, cookie:uid, body:/user/id]
${extra}    split:
      - { model: a, weight: 50 }
      - { model: b, weight: 50 }`

async function metrics(r: RunningRouter): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
}

describe('forwarding', () => {
  it('passes method, path remainder, query, headers and body through, and the answer back unchanged', async () => {
    const a = await upstream((req, res) => {
      res.writeHead(201, { 'content-type': 'application/json', 'x-model-header': 'kept' })
      res.end(JSON.stringify({ predictions: [0.25], got: req.body }))
    })
    const r = await router(config({ a: a.url + '/v1/base/' }, `  - name: churn
    path: /models/churn
    split: [{ model: a, weight: 1 }]`))
    const res = await fetch(`${r.url}/models/churn/invocations/x?alpha=1&beta=two`, {
      method: 'PUT', headers: { 'content-type': 'application/json', 'x-user-id': 'u1', 'x-custom': 'yes' }, body: '{"inputs":[1,2]}',
    })
    expect(res.status).toBe(201)
    expect(res.headers.get('x-model-header')).toBe('kept')
    expect(res.headers.get('x-modelsplit-model')).toBe('a')
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    expect(await res.json()).toEqual({ predictions: [0.25], got: '{"inputs":[1,2]}' })
    const got = a.requests[0]
    expect(got?.method).toBe('PUT')
    expect(got?.url).toBe('/v1/base/invocations/x?alpha=1&beta=two')
    expect(got?.headers['x-custom']).toBe('yes')
    expect(got?.headers['x-user-id']).toBe('u1')
    expect(got?.headers['x-request-id']).toBe(res.headers.get('x-request-id'))
    expect(got?.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(got?.headers.host).toBe(new URL(a.url).host)
  })

  it('keeps a client x-request-id and strips hop-by-hop headers both ways', async () => {
    const a = await upstream((_req, res) => {
      res.setHeader('connection', 'x-hop')
      res.setHeader('x-hop', 'upstream-only')
      res.setHeader('x-end', 'kept')
      res.end('ok')
    })
    const r = await router(config({ a: a.url }, `  - name: churn
    path: /p
    split: [{ model: a, weight: 1 }]`))
    const res = await new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = httpRequest(`${r.url}/p`, { headers: { 'x-request-id': 'req-42', connection: 'keep-alive, x-private', 'x-private': 'secret', 'proxy-connection': 'x' } }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('end', () => resolve({ headers: res.headers, body }))
      })
      req.on('error', reject)
      req.end()
    })
    expect(res.body).toBe('ok')
    expect(res.headers['x-request-id']).toBe('req-42')
    expect(res.headers['x-end']).toBe('kept')
    expect(res.headers['x-hop']).toBeUndefined()
    expect(a.requests[0]?.headers['x-request-id']).toBe('req-42')
    expect(a.requests[0]?.headers['x-private']).toBeUndefined()
    expect(a.requests[0]?.headers['proxy-connection']).toBeUndefined()
  })

  it('streams a request body to the model while the client is still sending it, when buffering is off', async () => {
    let sawFirstChunk: () => void = () => undefined
    const firstChunk = new Promise<void>((resolve) => { sawFirstChunk = resolve })
    const { createServer } = await import('node:http')
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => { body += c.toString(); sawFirstChunk() })
      req.on('end', () => res.end(body))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())))
    const port = (server.address() as { port: number }).port
    // Bodies under limits.max_buffered_body_bytes are read whole first (test/hardening covers that).
    const r = await router('limits: { max_buffered_body_bytes: 0 }\n' + config({ a: `http://127.0.0.1:${port}` }, `  - name: s
    path: /s
    split: [{ model: a, weight: 1 }]`))
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${r.url}/s`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } }, (res) => {
        let out = ''
        res.on('data', (c: Buffer) => { out += c.toString() })
        res.on('end', () => resolve(out))
      })
      req.on('error', reject)
      req.write('first-')
      // The second half is only sent once the model has the first: a buffering proxy would deadlock here.
      void firstChunk.then(() => req.end('second'))
    })
    expect(body).toBe('first-second')
  })

  it('keeps connections to a model alive across requests', async () => {
    const ports = new Set<number>()
    const a = await upstream((_req, res, raw) => { ports.add(raw.socket.remotePort ?? 0); res.end('ok') })
    const r = await router(config({ a: a.url }, `  - name: k
    path: /k
    split: [{ model: a, weight: 1 }]`))
    for (let i = 0; i < 20; i++) expect((await fetch(`${r.url}/k`)).status).toBe(200)
    expect(ports.size).toBe(1)
  })
})

describe('assignment on the request path', () => {
  it('sends a user to the same model every time, reading the id from header, query, cookie or body', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(config({ a: a.url, b: b.url }, TWO_WAY()))
    const expected = new Map<string, string>()
    for (let i = 0; i < 40; i++) {
      const user = `user-${i}`
      const explain = await (await fetch(`${r.adminUrl}/admin/assign?route=churn&user_id=${user}`)).json() as { model: string }
      expected.set(user, explain.model)
      const ways: RequestInit[] = [
        { headers: { 'x-user-id': user } },
        { headers: { cookie: `other=1; uid=${user}` } },
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: { id: user } }) },
      ]
      for (const init of ways) {
        const res = await fetch(`${r.url}/models/churn/predict`, init)
        expect(res.headers.get('x-modelsplit-model')).toBe(explain.model)
        expect(await res.json()).toEqual({ predictions: [explain.model] })
      }
      const viaQuery = await fetch(`${r.url}/models/churn/predict?user_id=${user}`)
      expect(viaQuery.headers.get('x-modelsplit-model')).toBe(explain.model)
    }
    expect(new Set(expected.values())).toEqual(new Set(['a', 'b']))
    // The body reached the model intact after being read for the user id.
    expect(a.requests.concat(b.requests).some((q) => q.body.includes('"user"'))).toBe(true)
    const m = await metrics(r)
    expect(m.get('modelsplit_assignments_total{route="churn",model="a",source="hash"}')! + m.get('modelsplit_assignments_total{route="churn",model="b",source="hash"}')!).toBe(160)
  })

  it('applies missing_user_id: random by weight, a named model, or reject with 400, and counts why', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(config({ a: a.url, b: b.url }, `  - name: rnd
    path: /rnd
    user_id: [header:x-user-id, body:/user_id]
    split: [{ model: a, weight: 1 }, { model: b, weight: 0 }]
  - name: named
    path: /named
    missing_user_id: b
    split: [{ model: a, weight: 1 }]
  - name: rej
    path: /rej
    missing_user_id: reject
    split: [{ model: a, weight: 1 }]`))
    expect((await fetch(`${r.url}/rnd`)).headers.get('x-modelsplit-model')).toBe('a')
    expect((await fetch(`${r.url}/rnd`, { method: 'POST', body: 'not json', headers: { 'content-type': 'text/plain' } })).headers.get('x-modelsplit-model')).toBe('a')
    expect((await fetch(`${r.url}/named`)).headers.get('x-modelsplit-model')).toBe('b')
    const rejected = await fetch(`${r.url}/rej/x`)
    expect(rejected.status).toBe(400)
    expect(await rejected.json()).toMatchObject({ statusCode: 400, code: 'MS_USER_ID_REQUIRED', route: 'rej', message: expect.stringContaining('header:x-user-id') })
    expect(a.requests.length + b.requests.length).toBe(3)
    const m = await metrics(r)
    expect(m.get('modelsplit_user_id_missing_total{route="rnd",reason="absent"}')).toBe(1)
    expect(m.get('modelsplit_user_id_missing_total{route="rnd",reason="body_not_json"}')).toBe(1)
    expect(m.get('modelsplit_user_id_missing_total{route="rej",reason="absent"}')).toBe(1)
    expect(m.get('modelsplit_assignments_total{route="rnd",model="a",source="missing_user_id"}')).toBe(2)
    expect(m.get('modelsplit_assignments_total{route="named",model="b",source="missing_user_id"}')).toBe(1)
  })

  it('lets x-modelsplit-model force a model only where allow_override is true', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(config({ a: a.url, b: b.url }, `  - name: qa
    path: /qa
    allow_override: true
    split: [{ model: a, weight: 1 }]
  - name: prod
    path: /prod
    split: [{ model: a, weight: 1 }]`))
    const forced = await fetch(`${r.url}/qa`, { headers: { 'x-modelsplit-model': 'b', 'x-user-id': 'u' } })
    expect(forced.headers.get('x-modelsplit-model')).toBe('b')
    const unknown = await fetch(`${r.url}/qa`, { headers: { 'x-modelsplit-model': 'nope', 'x-user-id': 'u' } })
    expect(unknown.headers.get('x-modelsplit-model')).toBe('a')
    const ignored = await fetch(`${r.url}/prod`, { headers: { 'x-modelsplit-model': 'b', 'x-user-id': 'u' } })
    expect(ignored.headers.get('x-modelsplit-model')).toBe('a')
    const m = await metrics(r)
    expect(m.get('modelsplit_assignments_total{route="qa",model="b",source="override"}')).toBe(1)
    expect(m.get('modelsplit_user_id_missing_total{route="qa",reason="unknown_override"}')).toBe(1)
  })
})

describe('errors are JSON naming the route and model, and never take the router down', () => {
  it('answers 404 for an unknown path with the configured paths', async () => {
    const a = await upstream()
    const r = await router(config({ a: a.url }, `  - name: churn
    path: /models/churn
    split: [{ model: a, weight: 1 }]`))
    for (const path of ['/nope', '/models/churnx', '/models']) {
      const res = await fetch(r.url + path)
      expect(res.status).toBe(404)
      expect(await res.json()).toMatchObject({ statusCode: 404, code: 'MS_ROUTE_NOT_FOUND', message: expect.stringContaining('/models/churn') })
    }
    expect(a.requests).toHaveLength(0)
  })

  it('answers 413 for a body over limits.max_body_bytes, streamed or buffered', async () => {
    const a = await upstream()
    const r = await router(`limits: { max_body_bytes: 100 }\n` + config({ a: a.url }, `  - name: stream
    path: /stream
    split: [{ model: a, weight: 1 }]
  - name: buffered
    path: /buffered
    user_id: [body:/user_id]
    split: [{ model: a, weight: 1 }]`))
    const big = JSON.stringify({ user_id: 'u', x: 'y'.repeat(200) })
    for (const path of ['/stream', '/buffered']) {
      const res = await fetch(r.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big })
      expect(res.status).toBe(413)
      expect(await res.json()).toMatchObject({ code: 'MS_BODY_TOO_LARGE', message: expect.stringContaining('100 bytes') })
    }
    // Chunked (no content-length) bodies are counted as they arrive on routes that read the body.
    const chunked = await fetch(`${r.url}/buffered`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, duplex: 'half',
      body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(big)); c.close() } }),
    } as RequestInit)
    expect(chunked.status).toBe(413)
    expect(a.requests).toHaveLength(0)
    expect((await fetch(`${r.url}/stream`, { method: 'POST', body: 'small' })).status).toBe(200)
  })

  it('answers 502 for a refused or reset model and 504 past timeout_ms, then keeps serving', async () => {
    const refused = await closedPort()
    const reset = await upstream((_req, _res, raw) => raw.socket.destroy())
    const slow = await upstream((_req, res) => { setTimeout(() => res.end('late'), 2000).unref() })
    const good = await upstream(jsonEcho('good'))
    const r = await router(`models:
  refused: { url: "http://127.0.0.1:${refused}" }
  reset: { url: "${reset.url}" }
  slow: { url: "${slow.url}", timeout_ms: 200 }
  good: { url: "${good.url}" }
routes:
  - { name: r1, path: /refused, split: [{ model: refused, weight: 1 }] }
  - { name: r2, path: /reset, split: [{ model: reset, weight: 1 }] }
  - { name: r3, path: /slow, split: [{ model: slow, weight: 1 }] }
  - { name: r4, path: /good, split: [{ model: good, weight: 1 }] }
`)
    const cases = [
      { path: '/refused', status: 502, code: 'MS_UPSTREAM_UNREACHABLE', route: 'r1', model: 'refused', reason: 'refused' },
      { path: '/reset', status: 502, code: 'MS_UPSTREAM_RESET', route: 'r2', model: 'reset', reason: 'reset' },
      { path: '/slow', status: 504, code: 'MS_UPSTREAM_TIMEOUT', route: 'r3', model: 'slow', reason: 'timeout' },
    ]
    for (const c of cases) {
      const res = await fetch(r.url + c.path, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
      expect(res.status).toBe(c.status)
      const body = await res.json() as Record<string, unknown>
      expect(body).toMatchObject({ statusCode: c.status, code: c.code, route: c.route, model: c.model })
      expect(body.message).toContain(`"${c.model}"`)
      expect(res.headers.get('x-modelsplit-model')).toBe(c.model)
    }
    expect((await fetch(`${r.url}/good`)).status).toBe(200)
    const m = await metrics(r)
    for (const c of cases) {
      expect(m.get(`modelsplit_upstream_errors_total{route="${c.route}",model="${c.model}",reason="${c.reason}"}`)).toBe(1)
      expect(m.get(`modelsplit_requests_total{route="${c.route}",model="${c.model}",code="${c.status}"}`)).toBe(1)
    }
  })
})

describe('metrics', () => {
  it('exposes every documented series with the right labels and values', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b', 500))
    const r = await router(config({ a: a.url, b: b.url }, `  - name: churn
    path: /churn
    allow_override: true
    split: [{ model: a, weight: 3 }, { model: b, weight: 1 }]`))
    await fetch(`${r.url}/churn`, { headers: { 'x-modelsplit-model': 'a' } })
    await fetch(`${r.url}/churn`, { headers: { 'x-modelsplit-model': 'b' } })
    const res = await fetch(`${r.adminUrl}/metrics`)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const text = await res.text()
    const m = parseMetrics(text)
    expect(m.get('modelsplit_requests_total{route="churn",model="a",code="200"}')).toBe(1)
    expect(m.get('modelsplit_requests_total{route="churn",model="b",code="500"}')).toBe(1)
    expect(m.get('modelsplit_request_duration_seconds_count{route="churn",model="a"}')).toBe(1)
    expect(m.get('modelsplit_request_duration_seconds_bucket{le="10",route="churn",model="a"}')).toBe(1)
    expect(m.has('modelsplit_request_duration_seconds_bucket{le="0.001",route="churn",model="a"}')).toBe(true)
    expect(m.get('modelsplit_split_weight{route="churn",model="a"}')).toBe(0.75)
    expect(m.get('modelsplit_split_weight{route="churn",model="b"}')).toBe(0.25)
    expect(m.get(`modelsplit_config_info{sha256="${r.router.current().loaded.sha256}"}`)).toBe(1)
    expect(m.get('modelsplit_config_reloads_total{result="success"}')).toBe(0)
    expect(m.get('modelsplit_config_reloads_total{result="failure"}')).toBe(0)
    expect(text).toContain('# TYPE modelsplit_upstream_errors_total counter')
    expect(text).toContain('# TYPE modelsplit_user_id_missing_total counter')
  })
})

describe('admin', () => {
  it('serves health, readiness, the effective config and assignment look-ups', async () => {
    const a = await upstream()
    const r = await router(config({ a: a.url }, `  - name: churn
    path: /churn
    split: [{ model: a, weight: 1 }]`))
    expect(await (await fetch(`${r.adminUrl}/healthz`)).json()).toEqual({ status: 'ok' })
    expect((await fetch(`${r.adminUrl}/readyz`)).status).toBe(200)
    const cfg = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { sha256: string; config: { routes: { salt: string; user_id: unknown[] }[]; models: Record<string, { timeout_ms: number }> } }
    expect(cfg.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(cfg.config.routes[0]?.salt).toBe('churn')
    expect(cfg.config.models.a?.timeout_ms).toBe(500)
    const explain = await (await fetch(`${r.adminUrl}/admin/assign?route=churn&user_id=42`)).json() as { model: string; candidates: { key: string }[] }
    expect(explain.model).toBe('a')
    expect(explain.candidates[0]?.key).toBe('churn:a:42')
    expect((await fetch(`${r.adminUrl}/admin/assign?route=nope&user_id=1`)).status).toBe(404)
    expect((await fetch(`${r.adminUrl}/admin/assign?route=churn`)).status).toBe(400)
  })
})
