import { readFile } from 'node:fs/promises'
import { join, dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { closedPort, type Received } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { readRecords } from '../src/record/index.js'
import type { PredictionRecord, ShadowResult } from '../src/shadow/index.js'

/** A record whose shadows were all sent (these tests select no shadow that is dropped). */
type SentRecord = Omit<PredictionRecord, 'shadows'> & { shadows: ShadowResult[] }
import type { ServerResponse } from 'node:http'


function answer(res: ServerResponse, body: unknown, status = 200): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(text)
}

/** A model whose prediction is a function of the request body's `x`. */
const model = (f: (x: number) => number) => (req: Received, res: ServerResponse) => {
  const x = Number((JSON.parse(req.body || '{}') as { x?: number }).x ?? 0)
  answer(res, { predictions: [f(x)] })
}

function cfg(models: Record<string, string>, route: string, extra = ''): string {
  const m = Object.entries(models).map(([n, u]) => `  ${n}: { url: "${u}", timeout_ms: 300 }`).join('\n')
  return `${extra}models:\n${m}\nroutes:\n${route}\n`
}

const recordsOf = async (r: RunningRouter): Promise<SentRecord[]> => {
  const out: SentRecord[] = []
  for await (const rec of readRecords(join(dirname(r.configFile), 'predictions.jsonl'))) out.push(rec as unknown as SentRecord)
  return out
}
const recording = (opts = '') => `recording: { path: ./predictions.jsonl${opts} }\n`

async function post(r: RunningRouter, path: string, body: unknown, user?: string): Promise<Response> {
  return fetch(r.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(user ? { 'x-user-id': user } : {}) }, body: JSON.stringify(body) })
}

async function metricsOf(r: RunningRouter): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
}

describe('shadow traffic', () => {
  it('mirrors the same request to the shadow, marked x-modelsplit-shadow, and never returns its answer', async () => {
    const primary = await upstream(model((x) => x * 2))
    const shadow = await upstream((_req, res) => answer(res, { predictions: ['SHADOW'] }))
    const r = await router(cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`))
    const mirrored = shadow.nextRequest()
    const res = await fetch(`${r.url}/churn/invocations?version=3`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': 'u1', 'x-trace': 't' }, body: '{"x":21}' })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('{"predictions":[42]}')
    const m = await mirrored
    expect(m.method).toBe('POST')
    expect(m.url).toBe('/invocations?version=3')
    expect(m.body).toBe('{"x":21}')
    expect(m.headers['x-modelsplit-shadow']).toBe('1')
    expect(m.headers['x-trace']).toBe('t')
    expect(m.headers['x-request-id']).toBe(res.headers.get('x-request-id'))
    expect(primary.requests[0]?.headers['x-modelsplit-shadow']).toBeUndefined()
  })

  it('answers the client before a slow shadow has answered', async () => {
    let releaseShadow: () => void = () => undefined
    const shadowGate = new Promise<void>((resolve) => { releaseShadow = resolve })
    const primary = await upstream(model((x) => x))
    const shadow = await upstream((_req, res) => { void shadowGate.then(() => answer(res, { predictions: [1] })) })
    const r = await router(recording() + cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`).replace('timeout_ms: 300 }\nroutes', 'timeout_ms: 5000 }\nroutes'))
    const arrived = shadow.nextRequest()
    const res = await post(r, '/churn', { x: 5 }, 'u')
    await arrived
    // The shadow holds its answer until the client has the primary's: a proxy that waited
    // for the shadow would never get here.
    expect(await res.json()).toEqual({ predictions: [5] })
    expect(shadow.requests).toHaveLength(1)
    releaseShadow()
    await r.router.close()
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(1)
    expect(recs[0]?.shadows[0]).toMatchObject({ model: 's', status: 200, prediction: [1] })
  })

  it('a dead, resetting, garbage-answering or timing-out shadow is counted and harmless', async () => {
    const primary = await upstream(model((x) => x))
    const dead = await closedPort()
    const reset = await upstream((_req, _res, raw) => raw.socket.destroy())
    const garbage = await upstream((_req, res) => answer(res, '<html>oops</html>'))
    const slow = await upstream((_req, res) => { setTimeout(() => answer(res, { predictions: [0] }), 1500).unref() })
    const r = await router(recording() + cfg({ p: primary.url, dead: `http://127.0.0.1:${dead}`, reset: reset.url, garbage: garbage.url, slow: slow.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: dead }, { model: reset }, { model: garbage }, { model: slow }]`))
    for (let i = 0; i < 5; i++) {
      const res = await post(r, '/churn', { x: i }, `u${i}`)
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ predictions: [i] })
    }
    await r.router.flush()
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(5)
    for (const rec of recs) {
      const by = Object.fromEntries(rec.shadows.map((s) => [s.model, s]))
      expect(by.dead).toMatchObject({ status: 502, prediction: null, error: expect.stringContaining('refused') })
      expect(by.reset).toMatchObject({ status: 502, error: expect.stringContaining('reset') })
      expect(by.garbage).toMatchObject({ status: 200, error: null, comparison: { error: expect.stringContaining('not JSON') } })
      expect(by.slow).toMatchObject({ status: 504, error: expect.stringContaining('timeout_ms=300') })
    }
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_requests_total{route="churn",model="dead",code="502"}')).toBe(5)
    expect(m.get('modelsplit_shadow_requests_total{route="churn",model="slow",code="504"}')).toBe(5)
    expect(m.get('modelsplit_shadow_comparisons_total{route="churn",primary="p",shadow="garbage",result="error"}')).toBe(5)
    expect(m.get('modelsplit_requests_total{route="churn",model="p",code="200"}')).toBe(5)
  })

  it('stops mirroring to a shadow that refuses connections, for a backoff, and counts what it skips', async () => {
    const primary = await upstream(model((x) => x))
    const dead = await closedPort()
    const r = await router(cfg({ p: primary.url, dead: `http://127.0.0.1:${dead}` }, `  - name: churn
    path: /churn
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: dead }]`))
    for (let i = 0; i < 30; i++) {
      expect((await post(r, '/churn', { x: i }, `u${i}`)).status).toBe(200)
      await r.router.flush() // one mirror at a time, so the breaker sees each failure in order
    }
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_requests_total{route="churn",model="dead",code="502"}')).toBe(5)
    expect(m.get('modelsplit_shadow_dropped_total{route="churn",model="dead",reason="unavailable"}')).toBe(25)
  })

  it('with the breaker open a recorded route still records the primary and names the refused shadow', async () => {
    const primary = await upstream(model((x) => x * 2))
    const dead = await closedPort()
    const r = await router(recording() + cfg({ p: primary.url, dead: `http://127.0.0.1:${dead}` }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: dead }]`))
    for (let i = 0; i < 8; i++) {
      const res = await post(r, '/churn', { x: i }, `u${i}`)
      expect(await res.json()).toEqual({ predictions: [i * 2] })
      await r.router.flush()
    }
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(8)
    // Five refusals open the breaker; the answers after it are captured for the record all the same.
    expect(recs.slice(5).map((rec) => [rec.primary, rec.shadows])).toEqual([5, 6, 7].map((i) => [
      expect.objectContaining({ model: 'p', status: 200, prediction: [i * 2], error: null }),
      [{ model: 'dead', dropped: 'unavailable' }],
    ]))
  })

  it('holds max_in_flight: excess mirrors are dropped and counted, primaries all succeed', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => { release = resolve })
    const primary = await upstream(model((x) => x))
    const shadow = await upstream((_req, res) => { void gate.then(() => answer(res, { predictions: [0] })) })
    const r = await router(cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s, max_in_flight: 3 }]`).replace('timeout_ms: 300 }\nroutes', 'timeout_ms: 10000 }\nroutes'))
    const three = Promise.all([shadow.nextRequest(), shadow.nextRequest(), shadow.nextRequest()])
    for (let i = 0; i < 10; i++) expect((await post(r, '/churn', { x: i }, `u${i}`)).status).toBe(200)
    await three
    expect(shadow.requests).toHaveLength(3)
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_dropped_total{route="churn",model="s",reason="max_in_flight"}')).toBe(7)
    release()
  })

  it('records each body as the client sent it: JSON as written (big integers digit for digit), pretty JSON, lenient NaN, or a string', async () => {
    const primary = await upstream((_req, res) => answer(res, { predictions: [1] }))
    const r = await router(recording() + cfg({ p: primary.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]`))
    const bodies = [
      '{"x":1,"id":12345678901234567890123,"s":"caf\\u00e9 ☕","f":[1.50,-0.0,2e3]}',
      '{\n  "x": 2\n}',
      '{"x": NaN}',
      'not json at all',
    ]
    for (const [i, body] of bodies.entries()) {
      const res = await fetch(`${r.url}/churn`, { method: 'POST', headers: { 'x-user-id': `u${i}` }, body })
      await res.text()
    }
    await r.router.flush()
    const lines = (await readFile(join(dirname(r.configFile), 'predictions.jsonl'), 'utf8')).trimEnd().split('\n')
    expect(lines).toHaveLength(4)
    // The first went in as its own text: the 23-digit id is not rounded to a double.
    expect(lines[0]?.endsWith(`,"input":${bodies[0]}}`)).toBe(true)
    const inputs = lines.map((l) => (JSON.parse(l) as { input: unknown }).input)
    expect(inputs).toEqual([{ x: 1, id: 1.2345678901234568e22, s: 'café ☕', f: [1.5, -0, 2000] }, { x: 2 }, { x: null }, 'not json at all'])
  })

  it('pairs each record with its own request under concurrency', async () => {
    const jitter = () => new Promise((resolve) => setImmediate(resolve))
    const primary = await upstream((req, res) => { void jitter().then(() => model((x) => x * 2)(req, res)) })
    const shadow = await upstream(model((x) => x * 2 + (x % 3 === 0 ? 1 : 0.0001)))
    const r = await router(recording() + cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    record: true
    compare: { tolerance: 0.001 }
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`))
    const n = 300
    const responses = await Promise.all(Array.from({ length: n }, (_, x) => post(r, '/churn', { x }, `user-${x}`)))
    const ids = new Map(await Promise.all(responses.map(async (res, x) => { await res.text(); return [res.headers.get('x-request-id') as string, x] as const })))
    await r.router.flush()
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(n)
    for (const rec of recs) {
      const x = ids.get(rec.request_id) as number
      expect(rec.user_id).toBe(`user-${x}`)
      expect(rec.input).toEqual({ x })
      expect(rec.primary).toMatchObject({ model: 'p', status: 200, prediction: [x * 2], error: null })
      const s = rec.shadows[0]
      expect(s?.prediction).toEqual([x * 2 + (x % 3 === 0 ? 1 : 0.0001)])
      expect(s?.comparison).toMatchObject({ agree: x % 3 !== 0, fraction_agree: x % 3 === 0 ? 0 : 1 })
    }
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_comparisons_total{route="churn",primary="p",shadow="s",result="disagree"}')).toBe(100)
    expect(m.get('modelsplit_shadow_comparisons_total{route="churn",primary="p",shadow="s",result="agree"}')).toBe(200)
    expect(m.get('modelsplit_shadow_abs_diff_count{route="churn",primary="p",shadow="s"}')).toBe(300)
    expect(m.get('modelsplit_records_total{result="written"}')).toBe(300)
  })

  it('compares across response formats (MLflow primary, Open Inference Protocol v2 shadow)', async () => {
    const primary = await upstream((_req, res) => answer(res, { predictions: [[0.1, 0.9], [0.8, 0.2]] }))
    const shadow = await upstream((_req, res) => answer(res, { model_name: 'c', outputs: [{ name: 'probs', shape: [2, 2], datatype: 'FP32', data: [0.3, 0.7, 0.6, 0.4] }] }))
    const r = await router(recording() + cfg({ p: primary.url, s: shadow.url }, `  - name: clf
    path: /clf
    record: true
    compare: { mode: argmax }
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`))
    expect((await post(r, '/clf', { x: 1 }, 'u')).status).toBe(200)
    await r.router.close()
    const [rec] = await recordsOf(r)
    expect(rec?.shadows[0]?.prediction).toEqual([[0.3, 0.7], [0.6, 0.4]])
    expect(rec?.shadows[0]?.comparison).toMatchObject({ agree: true, fraction_agree: 1 })
    expect(rec?.shadows[0]?.comparison).toHaveProperty('abs_diff_max')
  })

  it('mirrors only the configured share of users, the same users every time', async () => {
    const primary = await upstream(model((x) => x))
    const shadow = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s, percent: 30 }]
  - name: none
    path: /none
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s, percent: 0 }]`))
    const users = Array.from({ length: 200 }, (_, i) => `user-${i}`)
    const mirroredUsers = async (): Promise<Set<string>> => {
      const before = shadow.requests.length
      for (const u of users) await post(r, '/churn', { x: 1 }, u)
      await r.router.close()
      return new Set(shadow.requests.slice(before).map((q) => q.headers['x-user-id'] as string))
    }
    for (const u of users.slice(0, 20)) await post(r, '/none', { x: 1 }, u)
    const first = await mirroredUsers()
    expect(shadow.requests.every((q) => q.url !== '/none')).toBe(true)
    expect(first.size).toBeGreaterThan(30)
    expect(first.size).toBeLessThan(90)
    // A second router with the same config mirrors exactly the same users.
    const again = await router(await readFile(r.configFile, 'utf8'))
    const before = shadow.requests.length
    for (const u of users) await post(again, '/churn', { x: 1 }, u)
    await again.router.close()
    expect(new Set(shadow.requests.slice(before).map((q) => q.headers['x-user-id'] as string))).toEqual(first)
  })

  it('does not mirror a body over max_mirror_body_bytes, and still answers the request', async () => {
    const primary = await upstream((req, res) => answer(res, { predictions: [req.body.length] }))
    const shadow = await upstream(model((x) => x))
    const r = await router(recording() + cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`, 'limits: { max_mirror_body_bytes: 1024 }\n'))
    const big = { x: 1, pad: 'z'.repeat(5000) }
    const res = await post(r, '/churn', big, 'u')
    expect(await res.json()).toEqual({ predictions: [JSON.stringify(big).length] })
    await r.router.flush()
    expect((await metricsOf(r)).get('modelsplit_shadow_dropped_total{route="churn",model="s",reason="body_too_large"}')).toBe(1)
    expect(shadow.requests).toHaveLength(0)
    const [rec] = await recordsOf(r)
    // The shadow was selected but not sent: the record says so, rather than leaving it out.
    expect(rec).toMatchObject({ input_omitted: 'body_too_large', shadows: [{ model: 's', dropped: 'body_too_large' }] })
    expect(rec?.input).toBeUndefined()
  })
})

describe('recording', () => {
  it('records A/B requests without shadows, and leaves inputs out when include_inputs is false', async () => {
    const a = await upstream(model((x) => x + 1))
    const b = await upstream(model((x) => x + 2))
    const r = await router(recording(', include_inputs: false') + cfg({ a: a.url, b: b.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]`))
    for (let i = 0; i < 20; i++) await (await post(r, '/churn', { x: i }, `user-${i}`)).text()
    await r.router.close()
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(20)
    const models = new Set(recs.map((x) => x.primary.model))
    expect(models).toEqual(new Set(['a', 'b']))
    for (const rec of recs) {
      expect(rec).toMatchObject({ type: 'prediction', route: 'churn', assignment: 'hash', shadows: [] })
      expect(rec.input).toBeUndefined()
      expect(Date.parse(rec.ts)).not.toBeNaN()
      expect(rec.primary.latency_ms).toBeGreaterThan(0)
    }
  })

  it('loses no record when shutting down with primaries and shadows in flight', async () => {
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => { release = resolve })
    const primary = await upstream((req, res) => { void gate.then(() => model((x) => x)(req, res)) })
    const shadow = await upstream((req, res) => { void gate.then(() => setImmediate(() => model((x) => x)(req, res))) })
    const r = await router(recording() + cfg({ p: primary.url, s: shadow.url }, `  - name: churn
    path: /churn
    record: true
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]`).replace(/timeout_ms: 300/g, 'timeout_ms: 10000'))
    const n = 50
    const arrived = Promise.all(Array.from({ length: n }, () => primary.nextRequest()))
    const inFlight = Array.from({ length: n }, (_, x) => post(r, '/churn', { x }, `u${x}`).then((res) => res.json()))
    await arrived
    const closing = r.router.close() // what SIGTERM runs
    release()
    const answers = await Promise.all(inFlight)
    expect(answers).toHaveLength(n)
    await closing
    const recs = await recordsOf(r)
    expect(recs).toHaveLength(n)
    expect(recs.every((x) => x.shadows[0]?.status === 200)).toBe(true)
  })
})
