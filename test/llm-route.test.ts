// api: openai routes end to end: a real router between a client and a fake OpenAI-compatible
// server on 127.0.0.1 that writes the wire format byte for byte (see helpers/openai.ts).
import { readFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { compile } from '../src/plan/index.js'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { renderJson, renderStream, startFakeOpenAi, type FakeAnswer, type FakeOpenAi } from './helpers/openai.js'
import { startUpstream } from './helpers/upstream.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

const ANSWER: FakeAnswer = { tokens: ['Hel', 'lo', '!'], promptTokens: 11 }

function config(a: FakeOpenAi, b: FakeOpenAi, opts: { timeoutMs?: number; weights?: [number, number] } = {}): string {
  const [wa, wb] = opts.weights ?? [50, 50]
  return `
models:
  small:
    url: ${a.url}
    upstream_model: qwen2-0.5b-q4
    timeout_ms: ${opts.timeoutMs ?? 5000}
    price: { input_per_million_tokens: 0.5, output_per_million_tokens: 1.5 }
  large:
    url: ${b.url}
    upstream_model: llama-3-8b-q4
    timeout_ms: ${opts.timeoutMs ?? 5000}
routes:
  - name: chat
    path: /v1
    api: openai
    split:
      - { model: small, weight: ${wa} }
      - { model: large, weight: ${wb} }
`
}

async function setup(answer: (n: number) => FakeAnswer = () => ANSWER, opts: { timeoutMs?: number; weights?: [number, number] } = {}): Promise<{ a: FakeOpenAi; b: FakeOpenAi; router: RunningRouter }> {
  let n = 0
  const a = await startFakeOpenAi(() => answer(n++))
  const b = await startFakeOpenAi(() => answer(n++))
  open.push(a, b)
  const router = await startRouter(config(a, b, opts))
  open.push(router)
  return { a, b, router }
}

async function metrics(router: RunningRouter): Promise<Map<string, number>> {
  const res = await request(`${router.adminUrl}/metrics`)
  return parseMetrics(await res.body.text())
}

/** Polls the router's metrics until `ready` holds (side effects land after the client's answer). */
async function metricsWhen(router: RunningRouter, ready: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  for (let i = 0; i < 200; i++) {
    const m = await metrics(router)
    if (ready(m)) return m
    await new Promise((r) => setTimeout(r, 25))
  }
  return metrics(router)
}

function chat(router: RunningRouter, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return request(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }], ...body }),
  })
}

describe('api: openai routes', () => {
  it('streams the answer byte for byte as the server sent it, apart from the model name and the usage it did not ask for', async () => {
    const { a, b, router } = await setup(() => ({ ...ANSWER, firstTokenDelayMs: 60 }), { weights: [100, 0] })
    const res = await chat(router, { stream: true, safety_identifier: 'user-1' })
    const text = await res.body.text()
    expect(res.statusCode).toBe(200)
    expect(res.headers['x-modelsplit-model']).toBe('small')
    expect(res.headers['content-type']).toBe('text/event-stream')
    // What the client would have got from the server had it asked for chat-default without usage.
    const { head, tail } = renderStream('chat-default', ANSWER, false)
    expect(text).toBe([...head, ...tail].join(''))
    // The server was asked for its own model name, with usage.
    const sent = JSON.parse(a.requests[0]?.body ?? '{}') as Record<string, unknown>
    expect(sent).toMatchObject({ model: 'qwen2-0.5b-q4', stream: true, stream_options: { include_usage: true }, safety_identifier: 'user-1' })
    expect(b.requests).toHaveLength(0)
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="input"}')).toBe(11)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="output"}')).toBe(3)
    expect(m.get('gen_ai_client_token_usage_sum{route="chat",model="small",token_type="output"}')).toBe(3)
    expect(m.get('modelsplit_llm_cost_total{route="chat",model="small"}')).toBeCloseTo((11 * 0.5 + 3 * 1.5) / 1e6, 12)
    expect(m.get('gen_ai_server_time_to_first_token_seconds_count{route="chat",model="small"}')).toBe(1)
    // The server held its first token 60 ms: the router cannot have seen it sooner.
    expect(m.get('gen_ai_server_time_to_first_token_seconds_sum{route="chat",model="small"}')).toBeGreaterThanOrEqual(0.059)
    expect(m.get('gen_ai_server_time_per_output_token_seconds_count{route="chat",model="small"}')).toBe(1)
  })

  it('puts the tokens, cost and first-token time on the request\'s span', async () => {
    const otlp = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
    open.push(otlp)
    const { a, b } = await setup(undefined, { weights: [100, 0] })
    const router = await startRouter(`tracing: { otlp_endpoint: "${otlp.url}", sample_ratio: 1 }\n${config(a, b, { weights: [100, 0] })}`)
    open.push(router)
    const res = await chat(router, { stream: true, user: 'u' })
    await res.body.text()
    await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="done"}') ?? 0) === 1)
    open.splice(open.indexOf(router), 1)
    await router.close() // flushes the batch
    type Attr = { key: string; value: { intValue?: string | number; doubleValue?: number; stringValue?: string } }
    const spans = otlp.requests.flatMap((r) => (JSON.parse(r.body) as { resourceSpans: { scopeSpans: { spans: { name: string; attributes: Attr[] }[] }[] }[] })
      .resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)))
    const span = spans.find((s) => s.name === 'POST chat')
    const attrs = Object.fromEntries((span?.attributes ?? []).map((x) => [x.key, Number(x.value.intValue ?? x.value.doubleValue ?? x.value.stringValue)]))
    expect(attrs['gen_ai.usage.input_tokens']).toBe(11)
    expect(attrs['gen_ai.usage.output_tokens']).toBe(3)
    expect(attrs['modelsplit.llm.cost']).toBeCloseTo((11 * 0.5 + 3 * 1.5) / 1e6, 12)
    expect(attrs['modelsplit.llm.time_to_first_token_ms']).toBeGreaterThan(0)
  })

  it('passes the usage chunk through when the client asked for it', async () => {
    const { router } = await setup(undefined, { weights: [100, 0] })
    const res = await chat(router, { stream: true, user: 'u', stream_options: { include_usage: true } })
    const { head, tail } = renderStream('chat-default', ANSWER, true)
    expect(await res.body.text()).toBe([...head, ...tail].join(''))
  })

  it('rewrites a non-streamed answer back to the client\'s model with a consistent length, and counts its tokens', async () => {
    const { router } = await setup(undefined, { weights: [0, 100] })
    const res = await chat(router, { user: 'u' })
    const text = await res.body.text()
    expect(text).toBe(renderJson('chat-default', ANSWER))
    expect(res.headers['content-length']).toBeUndefined()
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_tokens_total{route="chat",model="large",token_type="output"}') ?? 0) === 3)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="large",token_type="input"}')).toBe(11)
    // No price for large: no cost.
    expect(m.get('modelsplit_llm_cost_total{route="chat",model="large"}')).toBe(0)
  })

  it('assigns a user the same arm whichever OpenAI field or header carries the key', async () => {
    const { router } = await setup()
    const arms = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const id = `user-${i}`
      const seen = new Set<string>()
      for (const [body, headers] of [[{ safety_identifier: id }, {}], [{ prompt_cache_key: id }, {}], [{ user: id }, {}], [{ metadata: { user_id: id } }, {}], [{}, { 'x-user-id': id }]] as const) {
        const res = await chat(router, body, headers)
        await res.body.text()
        seen.add(String(res.headers['x-modelsplit-model']))
      }
      expect(seen.size).toBe(1)
      arms.add([...seen][0] as string)
    }
    expect(arms).toEqual(new Set(['small', 'large']))
  })

  it('counts a stream that closes without [DONE], and passes on what came', async () => {
    const { router } = await setup(() => ({ ...ANSWER, ending: 'no_done' }), { weights: [100, 0] })
    const res = await chat(router, { stream: true, user: 'u' })
    const { head, tail } = renderStream('chat-default', { ...ANSWER, ending: 'no_done' }, false)
    expect(await res.body.text()).toBe([...head, ...tail].join(''))
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="no_done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="output"}')).toBe(3)
  })

  it('counts an error event mid-stream and passes it on unchanged', async () => {
    const { router } = await setup(() => ({ ...ANSWER, ending: 'error' }), { weights: [100, 0] })
    const res = await chat(router, { stream: true, user: 'u' })
    const text = await res.body.text()
    expect(text).toContain('data: {"error":{"message":"the model crashed"')
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_anomalies_total{route="chat",model="small",kind="error_event"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="no_done"}')).toBe(1)
  })

  it('cuts a stream that stalls past timeout_ms and counts it stalled', async () => {
    const { router } = await setup(() => ({ ...ANSWER, ending: 'stall' }), { weights: [100, 0], timeoutMs: 300 })
    const res = await chat(router, { stream: true, user: 'u' })
    await expect(res.body.text()).rejects.toThrow()
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="stalled"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="stalled"}')).toBe(1)
  })

  it('counts a client that goes away mid-stream', async () => {
    const { router } = await setup(() => ({ ...ANSWER, firstTokenDelayMs: 10_000 }), { weights: [100, 0] })
    const ac = new AbortController()
    const res = await request(`${router.url}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, user: 'u' }),
    })
    // The role chunk arrives before the held tokens: the stream has started.
    for await (const chunk of res.body) {
      expect(String(chunk)).toContain('"role":"assistant"')
      break
    }
    ac.abort()
    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="client_gone"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="client_gone"}')).toBe(1)
  })
})

describe('api: openai config', () => {
  const base = 'models:\n  m:\n    url: http://127.0.0.1:9\n'
  it.each([
    ['an unknown api', `${base}routes:\n  - { name: r, path: /v1, api: grpc, split: [{ model: m, weight: 1 }] }\n`, 5, 'routes[0].api', 'must be one of http, openai'],
    ['a negative price', `${base}    price: { input_per_million_tokens: -1, output_per_million_tokens: 1 }\nroutes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }] }\n`, 4, 'models.m.price.input_per_million_tokens', 'must be a number >= 0'],
    ['an empty upstream_model', `${base}    upstream_model: ""\nroutes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }] }\n`, 4, 'models.m.upstream_model', 'must be a non-empty string'],
    ['a shadow stream mode on an http route', `${base}  s:\n    url: http://127.0.0.1:9\nroutes:\n  - { name: r, path: /v1, split: [{ model: m, weight: 1 }], shadow: [{ model: s, stream: 'off' }] }\n`, 7, 'routes[0].shadow', 'applies to api: openai routes only'],
    ['an unknown shadow stream mode', `${base}  s:\n    url: http://127.0.0.1:9\nroutes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }], shadow: [{ model: s, stream: sometimes }] }\n`, 7, 'routes[0].shadow[0].stream', 'must be one of as_requested, off'],
  ])('refuses %s with its place', (_name, yaml, line, path, message) => {
    const r = compile(yaml, 'llm.yaml')
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.problems).toHaveLength(1)
    expect(r.problems[0]).toMatchObject({ file: 'llm.yaml', line, path })
    expect(r.problems[0]?.message).toContain(message)
  })

  it('compiles the README\'s LLM section config', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('## LLM traffic'), readme.indexOf('## Automated decisions'))
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
    const r = compile(yaml, 'README.md')
    expect(r.ok ? [] : r.problems).toEqual([])
    expect(r.ok && r.plan.routes[0]?.isOpenAi).toBe(true)
    expect(r.ok && r.plan.routes[0]?.judge?.target.model).toBe('judge-8b')
    // Every key it writes has a row in the config reference.
    const reference = readme.slice(readme.indexOf('## Config reference'), readme.indexOf('## Assignment: the formula'))
    for (const key of ['routes[].api', 'routes[].judge.max_cost_per_hour', 'routes[].judge.percent', 'routes[].judge.model', 'routes[].judge.max_in_flight', 'routes[].judge.prompt', 'routes[].shadow[].stream', 'models.NAME.upstream_model', 'models.NAME.price.input_per_million_tokens', 'models.NAME.price.output_per_million_tokens', 'limits.max_sse_event_bytes']) {
      expect(reference).toContain(`\`${key}\``)
    }
  })

  it('reads the user key from the OpenAI body fields by default', () => {
    const r = compile(`${base}routes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }] }\n`, 'llm.yaml')
    expect(r.ok && r.plan.routes[0]?.sourceList).toBe('body:/safety_identifier, body:/prompt_cache_key, body:/user, body:/metadata/user_id, header:x-user-id')
  })
})
