// Compressed answers on api: openai routes: a server answering Content-Encoding: gzip is passed to
// the client byte for byte (headers and body as the server sent them), and still measured: tokens
// and cost from a decoded copy, bounded by limits.max_sse_event_bytes; a shadow's compressed
// answer is compared decoded. What cannot be decoded is passed on all the same and counted.
import { request as httpRequest } from 'node:http'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'
import { renderJson, renderStream } from './helpers/openai.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

const ANSWER = { tokens: ['Paris ', 'is ', 'the ', 'capital.'], promptTokens: 11 }

/** A model that answers every request with these bytes and headers. */
async function model(body: Buffer, headers: Record<string, string>): Promise<Upstream> {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { ...headers, 'content-length': String(body.length) })
    res.end(body)
  })
  open.push(up)
  return up
}

async function router(primary: string, extra = '', top = ''): Promise<RunningRouter> {
  const r = await startRouter(`${top}models:
  m: { url: "${primary}", upstream_model: tiny-1, price: { input_per_million_tokens: 1000, output_per_million_tokens: 2000 } }
${extra}routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: m, weight: 1 }]
`.replace('    split: [{ model: m, weight: 1 }]\n', `    split: [{ model: m, weight: 1 }]\n${extra === '' ? '' : '    shadow: [{ model: s }]\n'}`))
  open.push(r)
  return r
}

/** A raw request: the answer's status, headers and bytes exactly as they came, nothing decoded. */
function raw(url: string, body: object): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

const ask = { model: 'chat', user: 'u1', messages: [{ role: 'user', content: 'capital of France?' }] }
const metric = (m: Map<string, number>, name: string, labels: string): number => m.get(`${name}{${labels}}`) ?? 0

describe('a compressed answer on an api: openai route', () => {
  it('passes a gzip JSON answer byte for byte and counts its tokens and cost from a decoded copy', async () => {
    const gz = gzipSync(renderJson('tiny-1', ANSWER))
    const up = await model(gz, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    const r = await router(up.url)
    const res = await raw(r.url, ask)
    expect(res.status).toBe(200)
    expect(res.headers['content-encoding']).toBe('gzip')
    expect(res.headers['content-length']).toBe(String(gz.length))
    // The server's bytes: the model name inside stays the server's (rewriting would mean re-encoding).
    expect(res.bytes.equals(gz)).toBe(true)
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(metric(m, 'modelsplit_llm_tokens_total', 'route="chat",model="m",token_type="input"')).toBe(11)
    expect(metric(m, 'modelsplit_llm_tokens_total', 'route="chat",model="m",token_type="output"')).toBe(4)
    expect(metric(m, 'modelsplit_llm_cost_total', 'route="chat",model="m"')).toBeCloseTo((11 * 1000 + 4 * 2000) / 1e6, 12)
    expect(metric(m, 'modelsplit_llm_anomalies_total', 'route="chat",model="m",kind="no_usage"')).toBe(0)
    // The upstream was asked for its own model name, as without compression.
    expect((JSON.parse(up.requests[0]?.body ?? '{}') as { model?: string }).model).toBe('tiny-1')
  })

  it('passes a brotli-compressed stream as it came and counts its usage chunk (its first-token time is unknown)', async () => {
    const { head, tail } = renderStream('tiny-1', ANSWER, true)
    const br = brotliCompressSync(Buffer.from([...head, ...tail].join('')))
    const up = await model(br, { 'content-type': 'text/event-stream', 'content-encoding': 'br' })
    const r = await router(up.url)
    const res = await raw(r.url, { ...ask, stream: true, stream_options: { include_usage: true } })
    expect(res.bytes.equals(br)).toBe(true)
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(metric(m, 'modelsplit_llm_tokens_total', 'route="chat",model="m",token_type="output"')).toBe(4)
    expect(metric(m, 'gen_ai_server_time_to_first_token_seconds_count', 'route="chat",model="m"')).toBe(0)
    expect(metric(m, 'modelsplit_llm_streams_total', 'route="chat",model="m",outcome="done"')).toBe(1)
  })

  it('passes on what it cannot decode, or may not (over limits.max_sse_event_bytes once decoded), and counts it', async () => {
    // Not gzip at all, though it says so.
    const junk = Buffer.from('\x1f\x8b this is not a gzip stream')
    const up = await model(junk, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    const r = await router(up.url)
    expect((await raw(r.url, ask)).bytes.equals(junk)).toBe(true)
    // 1 KiB of bound, an answer that decodes to ~8 KiB (compressed to little: a gzip bomb in small).
    const big = gzipSync(renderJson('tiny-1', { tokens: Array.from({ length: 2000 }, () => 'ab '), promptTokens: 3 }))
    expect(big.length).toBeLessThan(1024)
    const up2 = await model(big, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    const r2 = await router(up2.url, '', 'limits: { max_sse_event_bytes: 1024 }\n')
    expect((await raw(r2.url, ask)).bytes.equals(big)).toBe(true)
    for (const x of [r, r2]) {
      const m = parseMetrics(await (await fetch(`${x.adminUrl}/metrics`)).text())
      expect(metric(m, 'modelsplit_llm_anomalies_total', 'route="chat",model="m",kind="undecodable"')).toBe(1)
      expect(metric(m, 'modelsplit_llm_tokens_total', 'route="chat",model="m",token_type="output"')).toBe(0)
    }
  })

  it('compares a shadow\'s gzip answer with the primary\'s decoded, and counts the shadow\'s tokens', async () => {
    const primary = await model(gzipSync(renderJson('tiny-1', ANSWER)), { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    const shadow = await model(gzipSync(renderJson('tiny-2', ANSWER)), { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    const r = await router(primary.url, `  s: { url: "${shadow.url}", upstream_model: tiny-2 }\n`)
    expect((await raw(r.url, ask)).status).toBe(200)
    await r.router.flush()
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(metric(m, 'modelsplit_llm_comparisons_total', 'route="chat",primary="m",shadow="s",layer="exact",result="agree"')).toBe(1)
    expect(metric(m, 'modelsplit_llm_shadow_tokens_total', 'route="chat",model="s",token_type="output"')).toBe(4)
  })
})
