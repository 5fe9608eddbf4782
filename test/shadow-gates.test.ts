// Routes that only mirror (no record, not traced) ask their shadows' gates before the primary is
// sent and pair nothing when every mirror is refused (issue 22): what users see must not change.
import type { ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { closedPort, type Received } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

function answer(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** Answers {"predictions": [x]} for a body {"x": x}. */
const echo = (req: Received, res: ServerResponse): void => {
  answer(res, { predictions: [(JSON.parse(req.body || '{}') as { x?: number }).x ?? 0] })
}

async function post(r: RunningRouter, path: string, body: unknown, user: string): Promise<Response> {
  return fetch(r.url + path, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': user }, body: JSON.stringify(body) })
}

async function metricsOf(r: RunningRouter): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
}

describe('shadow gates on a route without records', () => {
  it('keeps mirroring and comparing a live shadow while a dead one beside it is skipped by its breaker', async () => {
    const primary = await upstream(echo)
    const live = await upstream(echo)
    const dead = await closedPort()
    const r = await router(`models:
  p: { url: "${primary.url}", timeout_ms: 2000 }
  live: { url: "${live.url}", timeout_ms: 2000 }
  dead: { url: "http://127.0.0.1:${dead}", timeout_ms: 2000 }
routes:
  - name: mix
    path: /mix
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: dead }, { model: live }]
`)
    for (let i = 0; i < 12; i++) {
      const res = await post(r, '/mix', { x: i }, `u${i}`)
      expect(await res.json()).toEqual({ predictions: [i] })
      await r.router.flush() // one request at a time, so the breaker sees each failure in order
    }
    expect(live.requests).toHaveLength(12)
    expect(live.requests.map((q) => [q.headers['x-modelsplit-shadow'], JSON.parse(q.body) as unknown])).toEqual(
      Array.from({ length: 12 }, (_, i) => ['1', { x: i }]))
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_comparisons_total{route="mix",primary="p",shadow="live",result="agree"}')).toBe(12)
    expect(m.get('modelsplit_shadow_requests_total{route="mix",model="live",code="200"}')).toBe(12)
    // Five refused connections open the breaker; the seven mirrors after it are skipped and counted.
    expect(m.get('modelsplit_shadow_requests_total{route="mix",model="dead",code="502"}')).toBe(5)
    expect(m.get('modelsplit_shadow_dropped_total{route="mix",model="dead",reason="unavailable"}')).toBe(7)
    expect(m.get('modelsplit_shadow_comparisons_total{route="mix",primary="p",shadow="dead",result="error"}')).toBe(5)
    expect(m.get('modelsplit_requests_total{route="mix",model="p",code="200"}')).toBe(12)
  })

  it('counts a body over max_mirror_body_bytes as dropped and answers the request', async () => {
    const primary = await upstream(echo)
    const shadow = await upstream(echo)
    const r = await router(`limits: { max_mirror_body_bytes: 1024 }
models:
  p: { url: "${primary.url}" }
  s: { url: "${shadow.url}" }
routes:
  - name: big
    path: /big
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: s }]
`)
    const res = await post(r, '/big', { x: 3, pad: 'z'.repeat(5000) }, 'u')
    expect(await res.json()).toEqual({ predictions: [3] })
    const small = await post(r, '/big', { x: 4 }, 'u')
    expect(await small.json()).toEqual({ predictions: [4] })
    await r.router.flush()
    expect(shadow.requests.map((q) => JSON.parse(q.body) as unknown)).toEqual([{ x: 4 }])
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_dropped_total{route="big",model="s",reason="body_too_large"}')).toBe(1)
    expect(m.get('modelsplit_shadow_comparisons_total{route="big",primary="p",shadow="s",result="agree"}')).toBe(1)
  })

  // The gates' answers travel as bits of one number up to 31 shadows; a longer list is gated as the
  // mirrors are sent. Both must mirror to every shadow.
  it.each([31, 32])('mirrors a request to each of %i shadows and compares every answer', async (n) => {
    const primary = await upstream(echo)
    const shadow = await upstream(echo)
    const names = Array.from({ length: n }, (_, i) => `s${i}`)
    const r = await router(`models:
  p: { url: "${primary.url}" }
${names.map((s) => `  ${s}: { url: "${shadow.url}", connections: 2 }`).join('\n')}
routes:
  - name: many
    path: /many
    split: [{ model: p, weight: 1 }]
    shadow: [${names.map((s) => `{ model: ${s} }`).join(', ')}]
`)
    const res = await post(r, '/many', { x: 7 }, 'u')
    expect(await res.json()).toEqual({ predictions: [7] })
    await r.router.flush()
    expect(shadow.requests).toHaveLength(n)
    const m = await metricsOf(r)
    for (const s of names) expect(m.get(`modelsplit_shadow_comparisons_total{route="many",primary="p",shadow="${s}",result="agree"}`)).toBe(1)
  })

  it('times a shadow out on silence, not on a long answer that keeps coming', async () => {
    const primary = await upstream(echo)
    // 15 pieces 100 ms apart: 1.4 s in all, never 1 s (the timeout) without a byte.
    const trickle = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"predictions": [0')
      let n = 0
      const t = setInterval(() => {
        if (++n < 15) res.write(' ')
        else {
          clearInterval(t)
          res.end(']}')
        }
      }, 100)
    })
    // The head at once, then nothing.
    const silent = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"predictions": [0')
    })
    const r = await router(`models:
  p: { url: "${primary.url}", timeout_ms: 1000 }
  trickle: { url: "${trickle.url}", timeout_ms: 1000 }
  silent: { url: "${silent.url}", timeout_ms: 1000 }
routes:
  - name: slow
    path: /slow
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: trickle }, { model: silent }]
`)
    const started = performance.now()
    expect(await (await post(r, '/slow', { x: 0 }, 'u')).json()).toEqual({ predictions: [0] })
    await r.router.flush()
    expect(performance.now() - started).toBeGreaterThan(1400)
    const m = await metricsOf(r)
    expect(m.get('modelsplit_shadow_requests_total{route="slow",model="trickle",code="200"}')).toBe(1)
    expect(m.get('modelsplit_shadow_comparisons_total{route="slow",primary="p",shadow="trickle",result="agree"}')).toBe(1)
    expect(m.get('modelsplit_shadow_requests_total{route="slow",model="silent",code="504"}')).toBe(1)
  })

  it('after the backoff, sends one mirror to see whether a dead shadow is back, not one per request', async () => {
    const primary = await upstream(echo)
    const dead = await closedPort()
    const r = await router(`models:
  p: { url: "${primary.url}" }
  dead: { url: "http://127.0.0.1:${dead}" }
routes:
  - name: probe
    path: /probe
    split: [{ model: p, weight: 1 }]
    shadow: [{ model: dead }]
`)
    for (let i = 0; i < 5; i++) {
      expect((await post(r, '/probe', { x: i }, `u${i}`)).status).toBe(200)
      await r.router.flush() // one mirror at a time, so the breaker sees each failure in order
    }
    // The breaker's first backoff is 1 s: what is under test is the first request after it.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(r, '/probe', { x: i }, `v${i}`)))
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200))
    await r.router.flush()
    const m = await metricsOf(r)
    // Five refusals, then one probe (refused again: the next backoff is 2 s); the other 19 skipped.
    expect(m.get('modelsplit_shadow_requests_total{route="probe",model="dead",code="502"}')).toBe(6)
    expect(m.get('modelsplit_shadow_dropped_total{route="probe",model="dead",reason="unavailable"}')).toBe(19)
  })
})
