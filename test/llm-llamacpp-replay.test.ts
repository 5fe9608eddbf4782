// api: openai routes against llama.cpp's own wire bytes, replayed: test/fixtures/llamacpp/wire.json
// holds what llama.cpp's server sent (status, header lines, body read by read) for a few requests,
// recorded by test/llm-llamacpp.test.ts, which also checks on every run with the real server that
// the server still sends those bytes. These tests run everywhere, the real server or not.
import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startReplayOpenAi, type Wire, type WireExchange } from './helpers/openai.js'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import type { Upstream } from './helpers/upstream.js'

const WIRE = JSON.parse(readFileSync(new URL('fixtures/llamacpp/wire.json', import.meta.url), 'utf8')) as Wire

function recorded(name: string): WireExchange {
  const ex = WIRE.exchanges[name]
  if (ex === undefined) throw new Error(`wire.json has no ${name}`)
  return ex
}

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

async function setup(ex: WireExchange, opts: { byteByByte?: boolean } = {}): Promise<{ fake: Upstream; router: RunningRouter }> {
  const fake = await startReplayOpenAi(ex, opts)
  open.push(fake)
  const router = await startRouter(`
models:
  tiny:
    url: ${fake.url}
    upstream_model: tiny-19
    price: { input_per_million_tokens: 0.5, output_per_million_tokens: 1.5 }
routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: tiny, weight: 1 }]
`)
  open.push(router)
  return { fake, router }
}

async function metricsWhen(router: RunningRouter, ready: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  let m = new Map<string, number>()
  for (let i = 0; i < 200; i++) {
    m = parseMetrics(await (await fetch(`${router.adminUrl}/metrics`)).text())
    if (ready(m)) return m
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return m
}

async function call(router: RunningRouter, ex: WireExchange, body: Record<string, unknown>): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const res = await request(`${router.url}${ex.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...ex.request, model: 'my-chat', user: 'u1', ...body }),
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** The recorded body as its client would see it behind the router: its own model name in it. */
function asClientSees(ex: WireExchange): string {
  return ex.chunks.join('').replaceAll('"model":"tiny-19"', '"model":"my-chat"')
}

function usageOf(ex: WireExchange): { prompt_tokens: number; completion_tokens: number } {
  const ev = ex.chunks.join('').split('\n\n').find((e) => e.includes('"usage":{')) ?? ''
  return (JSON.parse(ev.startsWith('data: ') ? ev.slice(6) : ev) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage
}

describe('api: openai in front of llama.cpp\'s recorded wire bytes', () => {
  it.each(['chat_stream_usage', 'completions_stream_usage'])('%s: passes the stream on byte for byte apart from the model name, and counts its usage', async (name) => {
    const ex = recorded(name)
    const { fake, router } = await setup(ex)
    const got = await call(router, ex, {})
    expect(got.status).toBe(200)
    expect(got.headers['content-type']).toBe('text/event-stream')
    expect(got.text).toBe(asClientSees(ex))
    expect(JSON.parse(fake.requests[0]?.body ?? '{}')).toMatchObject({ model: 'tiny-19', stream_options: { include_usage: true } })
    const usage = usageOf(ex)
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="tiny",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="input"}')).toBe(usage.prompt_tokens)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="output"}')).toBe(usage.completion_tokens)
    expect(m.get('modelsplit_llm_cost_total{route="chat",model="tiny"}')).toBeCloseTo((usage.prompt_tokens * 0.5 + usage.completion_tokens * 1.5) / 1e6, 12)
    expect(m.get('gen_ai_server_time_to_first_token_seconds_count{route="chat",model="tiny"}')).toBe(1)
    expect(m.get('modelsplit_llm_anomalies_total{route="chat",model="tiny",kind="malformed_event"}') ?? 0).toBe(0)
  })

  it('reads llama.cpp\'s stream sent one byte a write the same: the same bytes out, the same usage counted', async () => {
    const ex = recorded('chat_stream_usage')
    const { router } = await setup(ex, { byteByByte: true })
    const got = await call(router, ex, {})
    expect(got.text).toBe(asClientSees(ex))
    const usage = usageOf(ex)
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="tiny",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="input"}')).toBe(usage.prompt_tokens)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="output"}')).toBe(usage.completion_tokens)
    expect(m.get('modelsplit_llm_anomalies_total{route="chat",model="tiny",kind="malformed_event"}') ?? 0).toBe(0)
  })

  it('takes llama.cpp\'s usage chunk out of the stream of a client that did not ask for it, and still counts it', async () => {
    const ex = recorded('chat_stream_usage')
    const { fake, router } = await setup(ex)
    const got = await call(router, ex, { stream_options: undefined })
    expect(JSON.parse(fake.requests[0]?.body ?? '{}')).toMatchObject({ stream: true, stream_options: { include_usage: true } })
    const usageEvent = ex.chunks.join('').split(/(?<=\n\n)/).find((e) => e.includes('"usage":{')) as string
    expect(got.text).toBe(asClientSees(ex).replace(usageEvent.replaceAll('"model":"tiny-19"', '"model":"my-chat"'), ''))
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="tiny",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="output"}')).toBe(usageOf(ex).completion_tokens)
  })

  it('rewrites the model of llama.cpp\'s non-streamed answer and counts its usage', async () => {
    const ex = recorded('chat_json')
    const { router } = await setup(ex)
    const got = await call(router, ex, {})
    expect(got.status).toBe(200)
    expect(got.text).toBe(asClientSees(ex))
    const usage = (JSON.parse(ex.chunks.join('')) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="output"}') ?? 0) === usage.completion_tokens)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="tiny",token_type="input"}')).toBe(usage.prompt_tokens)
  })

  it('passes on llama.cpp\'s refusal of a prompt longer than its context (a 400 before any event) as it was', async () => {
    const ex = recorded('chat_stream_too_long')
    const { router } = await setup(ex)
    const got = await call(router, ex, {})
    expect(got.status).toBe(400)
    expect(got.text).toBe(ex.chunks.join(''))
    expect(JSON.parse(got.text)).toMatchObject({ error: { code: 400, type: 'exceed_context_size_error' } })
  })

  it('passes on llama.cpp\'s error event mid-stream as it was, and counts it', async () => {
    const ex = recorded('chat_stream_error')
    expect(ex.chunks.join('')).toContain('data: {"error":{"code":500,')
    const { router } = await setup(ex)
    const got = await call(router, ex, {})
    expect(got.status).toBe(200)
    expect(got.text).toBe(asClientSees(ex))
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_anomalies_total{route="chat",model="tiny",kind="error_event"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="tiny",outcome="done"}') ?? 0).toBe(0)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="tiny",outcome="no_done"}')).toBe(1)
  })
})
