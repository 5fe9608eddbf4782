// OpenTelemetry traces, end to end: a real router exports to an OTLP/HTTP receiver started here,
// which decodes what arrives (OTLP/JSON, what @opentelemetry/exporter-trace-otlp-http sends).
import type { ServerResponse } from 'node:http'
import { describe, expect, it, vi } from 'vitest'
import { router, upstream } from './helpers/servers.js'
import { closedPort, type Received, type Upstream } from './helpers/upstream.js'
import { compile } from '../src/plan/index.js'

interface OtlpValue { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean }
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: { key: string; value: OtlpValue }[]
  links?: { traceId: string; spanId: string }[]
  status?: { code?: number; message?: string }
}
interface Span extends OtlpSpan { attrs: Record<string, string | number | boolean>; service: string }

function answer(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** An OTLP/HTTP receiver: POST /v1/traces, answered 200 with an empty partial-success. */
async function collector(): Promise<Upstream & { spans(): Span[] }> {
  const u = await upstream((req: Received, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404)
      res.end()
      return
    }
    answer(res, {})
  })
  return Object.assign(u, {
    spans(): Span[] {
      const out: Span[] = []
      for (const r of u.requests) {
        expect(r.headers['content-type']).toMatch(/^application\/json/)
        const doc = JSON.parse(r.body) as { resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[] }
        for (const rs of doc.resourceSpans) {
          const service = String(valueOf(rs.resource.attributes.find((a) => a.key === 'service.name')?.value ?? {}))
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans) {
              const attrs: Span['attrs'] = {}
              for (const a of s.attributes ?? []) attrs[a.key] = valueOf(a.value)
              out.push({ ...s, attrs, service })
            }
          }
        }
      }
      return out
    },
  })
}

function valueOf(v: OtlpValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.boolValue !== undefined) return v.boolValue
  return ''
}

const model = (f: (x: number) => number) => (req: Received, res: ServerResponse) => {
  const x = Number((JSON.parse(req.body || '{}') as { x?: number }).x ?? 0)
  answer(res, { predictions: [f(x)] })
}

function cfg(models: Record<string, string>, tracing: string, shadows = ''): string {
  const m = Object.entries(models).map(([n, u]) => `  ${n}: { url: "${u}", timeout_ms: 2000 }`).join('\n')
  return `${tracing}models:\n${m}\nroutes:
  - name: churn
    path: /churn
    split: [{ model: p, weight: 1 }]
${shadows}`
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/

async function post(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/churn`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': 'u1', ...headers }, body: '{"x":2}' })
}

describe('OpenTelemetry traces', () => {
  it('exports a span per request with its upstream call and each shadow, and tells the model the trace', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x * 2))
    const agreeing = await upstream(model((x) => x * 2))
    const differing = await upstream(model((x) => x * 2 + 1))
    const r = await router(cfg({ p: primary.url, s1: agreeing.url, s2: differing.url }, `tracing: { otlp_endpoint: "${otlp.url}", sample_ratio: 1, service_name: ms-test }\n`,
      '    shadow: [{ model: s1 }, { model: s2 }]\n'))
    const res = await post(r.url)
    expect(res.status).toBe(200)
    await res.text()
    await r.router.close() // flushes the batch
    const spans = otlp.spans()
    const request = spans.find((s) => s.name === 'POST churn')
    expect(request).toBeDefined()
    const req = request as Span
    expect(req.service).toBe('ms-test')
    expect(req.parentSpanId ?? '').toBe('')
    expect(req.attrs).toMatchObject({ 'modelsplit.route': 'churn', 'modelsplit.model': 'p', 'modelsplit.assignment': 'hash', 'http.response.status_code': 200, 'http.request.method': 'POST' })
    const up = spans.find((s) => s.name === 'upstream p') as Span
    expect(up).toBeDefined()
    expect(up.traceId).toBe(req.traceId)
    expect(up.parentSpanId).toBe(req.spanId)
    expect(up.attrs['http.response.status_code']).toBe(200)
    // The model was told the trace, naming the upstream call's span.
    const tp = TRACEPARENT.exec(String(primary.requests[0]?.headers.traceparent))
    expect(tp?.[1]).toBe(req.traceId)
    expect(tp?.[2]).toBe(up.spanId)
    expect(String(primary.requests[0]?.headers.traceparent).endsWith('-01')).toBe(true)
    // Each shadow: a child of the request, linked to it, with the comparison's result.
    const s1 = spans.find((s) => s.name === 'shadow s1') as Span
    const s2 = spans.find((s) => s.name === 'shadow s2') as Span
    for (const [s, u] of [[s1, agreeing], [s2, differing]] as const) {
      expect(s).toBeDefined()
      expect(s.traceId).toBe(req.traceId)
      expect(s.parentSpanId).toBe(req.spanId)
      expect(s.links?.[0]?.spanId).toBe(req.spanId)
      expect(s.attrs['http.response.status_code']).toBe(200)
      const stp = TRACEPARENT.exec(String(u.requests[0]?.headers.traceparent))
      expect(stp?.[1]).toBe(req.traceId)
      expect(stp?.[2]).toBe(s.spanId)
    }
    expect(s1.attrs).toMatchObject({ 'modelsplit.comparison.result': 'agree', 'modelsplit.comparison.agree': true, 'modelsplit.comparison.abs_diff_max': 0 })
    expect(s2.attrs).toMatchObject({ 'modelsplit.comparison.result': 'disagree', 'modelsplit.comparison.agree': false, 'modelsplit.comparison.abs_diff_max': 1 })
  })

  it('continues an incoming traceparent, and marks a failed request as an error', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url, gone: 'http://127.0.0.1:1' }, `tracing: { otlp_endpoint: "${otlp.url}/v1/traces", sample_ratio: 0 }\n`)
      .replace('split: [{ model: p, weight: 1 }]', 'split: [{ model: p, weight: 1 }]\n    allow_override: true'))
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const parent = '00f067aa0ba902b7'
    const res = await post(r.url, { traceparent: `00-${traceId}-${parent}-01` })
    expect(res.status).toBe(200)
    await res.text()
    const failed = await post(r.url, { traceparent: `00-${traceId}-${parent}-01`, 'x-modelsplit-model': 'gone' })
    expect(failed.status).toBe(502)
    await failed.text()
    await r.router.close()
    const spans = otlp.spans()
    const requests = spans.filter((s) => s.name === 'POST churn')
    expect(requests).toHaveLength(2)
    for (const s of requests) {
      expect(s.traceId).toBe(traceId)
      expect(s.parentSpanId).toBe(parent)
      expect(s.service).toBe('modelsplit')
    }
    // The client's traceparent is replaced by the router's, in the same trace.
    const tp = TRACEPARENT.exec(String(primary.requests[0]?.headers.traceparent))
    expect(tp?.[1]).toBe(traceId)
    expect(tp?.[2]).not.toBe(parent)
    const bad = requests.find((s) => s.attrs['modelsplit.model'] === 'gone') as Span
    expect(bad.attrs).toMatchObject({ 'modelsplit.assignment': 'override', 'http.response.status_code': 502 })
    expect(bad.status?.code).toBe(2)
  })

  it('sample_ratio 0 exports nothing for new traces, but still passes an unsampled traceparent on', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url }, `tracing: { otlp_endpoint: "${otlp.url}", sample_ratio: 0 }\n`))
    for (let i = 0; i < 5; i++) {
      const res = await post(r.url)
      await res.text()
    }
    await r.router.close()
    expect(otlp.spans()).toEqual([])
    expect(primary.requests).toHaveLength(5)
    for (const q of primary.requests) expect(String(q.headers.traceparent)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
  })

  it('with tracing off the model gets no traceparent and nothing is exported', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const shadow = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url, s: shadow.url }, '', '    shadow: [{ model: s }]\n'))
    expect(r.router.current().plan.tracing).toBeNull()
    const res = await post(r.url)
    await res.text()
    await r.router.close()
    expect(primary.requests[0]?.headers.traceparent).toBeUndefined()
    expect(shadow.requests[0]?.headers.traceparent).toBeUndefined()
    expect(otlp.requests).toHaveLength(0)
  })

  it('a shadow that fails carries the comparison error, and the request is unaffected', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url, dead: `http://127.0.0.1:${await closedPort()}` }, `tracing: { otlp_endpoint: "${otlp.url}" }\n`, '    shadow: [{ model: dead }]\n'))
    const res = await post(r.url)
    expect(res.status).toBe(200)
    await res.text()
    await r.router.close()
    const spans = otlp.spans()
    const req = spans.find((s) => s.name === 'POST churn') as Span
    expect(req.status?.code ?? 0).not.toBe(2)
    const dead = spans.find((s) => s.name === 'shadow dead') as Span
    expect(dead.traceId).toBe(req.traceId)
    expect(dead.status?.code).toBe(2)
    expect(dead.attrs['modelsplit.comparison.result']).toBe('error')
    expect(String(dead.attrs['modelsplit.comparison.error'])).toMatch(/^shadow: /)
  })

  it('a request the router answers itself (no user id, reject) has its span too', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const r = await router(cfg({ p: primary.url }, `tracing: { otlp_endpoint: "${otlp.url}" }\n`).replace('split: [{ model: p, weight: 1 }]', 'split: [{ model: p, weight: 1 }]\n    missing_user_id: reject'))
    const res = await fetch(`${r.url}/churn`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' })
    expect(res.status).toBe(400)
    await res.text()
    await r.router.close()
    const spans = otlp.spans()
    expect(spans.map((s) => s.name)).toEqual(['POST churn'])
    expect(spans[0]?.attrs).toMatchObject({ 'modelsplit.route': 'churn', 'modelsplit.user_id.missing': 'absent', 'http.response.status_code': 400 })
    expect(spans[0]?.attrs['modelsplit.model']).toBeUndefined()
    expect(spans[0]?.status?.code).toBe(2)
    expect(primary.requests).toHaveLength(0)
  })

  it('a reload turns tracing on, and off again, without a restart', async () => {
    const otlp = await collector()
    const primary = await upstream(model((x) => x))
    const off = cfg({ p: primary.url }, '')
    const r = await router(off)
    await (await post(r.url)).text()
    await r.writeConfig(cfg({ p: primary.url }, `tracing: { otlp_endpoint: "${otlp.url}" }\n`))
    expect((await r.router.reload()).result).toBe('success')
    await (await post(r.url)).text()
    await r.writeConfig(off)
    expect((await r.router.reload()).result).toBe('success')
    // Turning it off exports what the old provider held.
    await vi.waitFor(() => expect(otlp.spans().filter((s) => s.name === 'POST churn')).toHaveLength(1))
    await (await post(r.url)).text()
    await r.router.close()
    expect(primary.requests.map((q) => q.headers.traceparent === undefined)).toEqual([true, false, true])
    expect(otlp.spans().filter((s) => s.name === 'POST churn')).toHaveLength(1)
  })

  it('validates the tracing keys with located problems', () => {
    const base = 'models:\n  p: { url: "http://127.0.0.1:9" }\nroutes:\n  - { name: r, path: /r, split: [{ model: p, weight: 1 }] }\n'
    const ok = compile(`tracing: { otlp_endpoint: "http://collector:4318" }\n${base}`, 'x.yaml')
    expect(ok.ok && ok.plan.tracing).toEqual({ endpoint: 'http://collector:4318/v1/traces', sampleRatio: 1, serviceName: 'modelsplit' })
    const bad = compile(`tracing: { otlp_endpoint: "grpc://collector:4317", sample_ratio: 2, extra: 1 }\n${base}`, 'x.yaml')
    expect(bad.ok).toBe(false)
    const paths = bad.ok ? [] : bad.problems.map((p) => p.path)
    expect(paths).toEqual(expect.arrayContaining(['tracing.otlp_endpoint', 'tracing.sample_ratio', 'tracing.extra']))
    const missing = compile(`tracing: { sample_ratio: 0.5 }\n${base}`, 'x.yaml')
    expect(missing.ok ? [] : missing.problems.map((p) => p.path)).toContain('tracing.otlp_endpoint')
  })
})
