// api: openai routes in front of a real OpenAI-compatible server: llama.cpp's own C++ server (as
// the xllamacpp wheel from PyPI embeds it), serving tiny random-weight llama models that
// test/fixtures/llamacpp/tiny_model.py writes with gguf-py. Their answers are noise, but the wire
// format, the streaming, the usage and the timing are llama.cpp's. Greedy decoding (temperature 0)
// makes each model answer the same prompt with the same tokens every time; `cache_prompt: false`
// (llama.cpp's own field) keeps every request on the same arithmetic path, whatever it served before.
//
// A recording tap (helpers/llamacpp.ts) sits between the router and each server, so the client's
// bytes are compared with the exact bytes llama.cpp sent. Needs a Python with xllamacpp and gguf:
// MODELSPLIT_LLAMACPP_PYTHON=/path/to/venv/bin/python (.ci/run builds it from
// test/fixtures/llamacpp/requirements.txt); skipped, saying so, without it.
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { readRecords } from '../src/record/index.js'
import { answerText, startLlamaServers, startTap, type Exchange, type LlamaServers, type Tap } from './helpers/llamacpp.js'
import { startFakeOpenAi, WIRE_CASES, type Wire } from './helpers/openai.js'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'

const PYTHON = process.env.MODELSPLIT_LLAMACPP_PYTHON ?? ''
const available = PYTHON !== '' && existsSync(PYTHON)
if (!available) console.warn('llm-llamacpp: MODELSPLIT_LLAMACPP_PYTHON is not set to a Python with xllamacpp and gguf; skipped')

const MESSAGES = [{ role: 'user', content: 'Say something.' }]
const WIRE = fileURLToPath(new URL('fixtures/llamacpp/wire.json', import.meta.url))

/** The SSE events of a stream, each with its blank line. */
function events(text: string): string[] {
  return text.split(/(?<=\n\n)/).filter((e) => e !== '')
}

/** The usage chunk llama.cpp sends last (with include_usage), parsed. */
function usageOf(text: string): { usage: { prompt_tokens: number; completion_tokens: number }; timings: { prompt_ms: number } } {
  const ev = events(text).find((e) => e.includes('"usage":{'))
  if (ev === undefined) throw new Error(`no usage chunk in:\n${text}`)
  return JSON.parse(ev.slice('data: '.length)) as ReturnType<typeof usageOf>
}

/** The generated text: the `delta.content` strings of the stream's chunks, joined. */
function contentOf(text: string): string {
  let out = ''
  for (const e of events(text)) {
    if (!e.startsWith('data: {')) continue
    const c = (JSON.parse(e.slice(6)) as { choices?: { delta?: { content?: string | null } }[] }).choices?.[0]?.delta?.content
    if (typeof c === 'string') out += c
  }
  return out
}

/**
 * What differs between two calls of the same deterministic request: the id, the time, the measured
 * timings and how much of the prompt the server found in its cache.
 */
function volatileOut(text: string): string {
  return text
    .replace(/"cached_tokens":\d+/g, '"cached_tokens":0')
    .replace(/"id":"chatcmpl-[A-Za-z0-9]+"/g, '"id":"ID"')
    .replace(/"created":\d+/g, '"created":0')
    .replace(/"timings":\{[^}]*\}/g, '"timings":{}')
}

describe.skipIf(!available)('api: openai in front of llama.cpp\'s server', () => {
  let dir = ''
  let llama: LlamaServers | undefined
  let tapA: Tap | undefined
  let tapB: Tap | undefined
  const open: { close(): Promise<void> }[] = []
  let users: Record<string, string> = {}

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelsplit-llamacpp-'))
    // Two models (seeds 19 and 20): two arms that answer differently.
    llama = await startLlamaServers(PYTHON, dir, [19, 20])
    tapA = await startTap(llama.urls[0] as string)
    tapB = await startTap(llama.urls[1] as string)
    users = await usersByArm()
  }, 120_000)

  afterAll(async () => {
    await tapA?.close()
    await tapB?.close()
    await llama?.close()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.close()))
  })

  /** The route's config; the arms' URLs do not change who goes where. */
  function routeYaml(urlA: string, urlB: string, records: string, shadows: string): string {
    return `
models:
  small:
    url: ${urlA}
    upstream_model: tiny-19
    timeout_ms: 60000
    price: { input_per_million_tokens: 0.5, output_per_million_tokens: 1.5 }
  large:
    url: ${urlB}
    upstream_model: tiny-20
    timeout_ms: 60000
  small-next:
    url: ${urlA}
    upstream_model: tiny-19-next
    timeout_ms: 60000
  large-next:
    url: ${urlB}
    upstream_model: tiny-20-next
    timeout_ms: 60000
recording: { path: ${JSON.stringify(records)} }
routes:
  - name: chat
    path: /v1
    api: openai
    record: true
    split:
      - { model: small, weight: 50 }
      - { model: large, weight: 50 }
${shadows}
`
  }

  /**
   * A user id for each arm, asked of a router with the same route in front of a fake server (its
   * `x-modelsplit-model` says where each user went), so the routers under test count only the
   * tests' own requests.
   */
  async function usersByArm(): Promise<Record<string, string>> {
    const fake = await startFakeOpenAi(() => ({ tokens: ['x'], promptTokens: 1 }))
    const probe = await startRouter(routeYaml(fake.url, fake.url, join(dir, 'probe.jsonl'), ''))
    try {
      const found: Record<string, string> = {}
      for (let i = 0; i < 64 && Object.keys(found).length < 2; i++) {
        const res = await request(`${probe.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'probe', user: `user-${String(i)}`, messages: MESSAGES }),
        })
        await res.body.text()
        found[String(res.headers['x-modelsplit-model'])] ??= `user-${String(i)}`
      }
      return found
    } finally {
      await probe.close()
      await fake.close()
    }
  }

  async function router(opts: { shadows?: string } = {}): Promise<{ r: RunningRouter; records: string }> {
    const records = join(dir, `records-${String(Date.now())}-${String(open.length)}.jsonl`)
    const r = await startRouter(routeYaml(tapA?.url ?? '', tapB?.url ?? '', records, opts.shadows ?? ''))
    open.push(r)
    return { r, records }
  }

  async function metricsWhen(r: RunningRouter, ready: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
    let m = new Map<string, number>()
    for (let i = 0; i < 400; i++) {
      m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
      if (ready(m)) return m
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    return m
  }

  /** The exchange of the tap that carried the request for `model`, from its `from`th on (waits for it). */
  function exchangeFor(tap: Tap | undefined, model: string, from: number): Promise<Exchange> {
    return (tap as Tap).waitFor(from, (e) => (JSON.parse(e.requestBody) as { model: string }).model === model)
  }

  async function chat(r: RunningRouter, body: Record<string, unknown>): Promise<{ status: number; arm: unknown; text: string; ms: number }> {
    const t0 = performance.now()
    const res = await request(`${r.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: MESSAGES, temperature: 0, seed: 7, cache_prompt: false, ...body }),
    })
    const text = await res.body.text()
    return { status: res.statusCode, arm: res.headers['x-modelsplit-model'], text, ms: performance.now() - t0 }
  }

  async function direct(url: string, body: Record<string, unknown>): Promise<string> {
    const res = await request(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: MESSAGES, temperature: 0, seed: 7, cache_prompt: false, ...body }),
    })
    return res.body.text()
  }

  it('passes llama.cpp\'s stream on byte for byte apart from the model name, and counts the tokens its usage chunk reports', async () => {
    const { r } = await router()
    const user = users.small as string
    const from = tapA?.exchanges.length ?? 0
    const got = await chat(r, { model: 'my-chat', user, max_tokens: 24, ignore_eos: true, stream: true, stream_options: { include_usage: true } })
    expect(got.status).toBe(200)
    expect(got.arm).toBe('small')
    const ex = await exchangeFor(tapA, 'tiny-19', from)
    await ex.done
    // llama.cpp was asked for the arm's model; the client's request otherwise went as it was.
    expect(JSON.parse(ex.requestBody)).toMatchObject({ model: 'tiny-19', user, stream: true, stream_options: { include_usage: true } })
    const sent = answerText(ex)
    // llama.cpp names its model (its alias) in every chunk; the client sees its own name there, and
    // nothing else changed: the same events, bytes and order, [DONE] included.
    const served = /"model":"([^"]+)"/.exec(sent)?.[1] ?? ''
    expect(served).toBe('tiny-19')
    expect(got.text).toBe(sent.replaceAll(`"model":${JSON.stringify(served)}`, '"model":"my-chat"'))
    expect(events(got.text).at(-1)).toBe('data: [DONE]\n\n')
    // Greedy decoding: a direct call gets the same stream, apart from its id, time and timings.
    const straight = await direct(llama?.urls[0] as string, { model: 'my-chat', max_tokens: 24, ignore_eos: true, stream: true, stream_options: { include_usage: true } })
    expect(volatileOut(got.text)).toBe(volatileOut(straight.replaceAll(`"model":${JSON.stringify(served)}`, '"model":"my-chat"')))

    // The arm's metrics hold what llama.cpp reported in its usage chunk.
    const { usage, timings } = usageOf(sent)
    expect(usage.completion_tokens).toBe(24)
    const m = await metricsWhen(r, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="input"}')).toBe(usage.prompt_tokens)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="output"}')).toBe(usage.completion_tokens)
    expect(m.get('gen_ai_client_token_usage_sum{route="chat",model="small",token_type="input"}')).toBe(usage.prompt_tokens)
    expect(m.get('gen_ai_client_token_usage_sum{route="chat",model="small",token_type="output"}')).toBe(usage.completion_tokens)
    expect(m.get('modelsplit_llm_cost_total{route="chat",model="small"}'))
      .toBeCloseTo((usage.prompt_tokens * 0.5 + usage.completion_tokens * 1.5) / 1e6, 12)
    expect(m.get('gen_ai_server_time_to_first_token_seconds_count{route="chat",model="small"}')).toBe(1)
    // The first token cannot come before llama.cpp evaluated the prompt, nor after the client had it all.
    const ttft = m.get('gen_ai_server_time_to_first_token_seconds_sum{route="chat",model="small"}') ?? -1
    expect(ttft).toBeGreaterThanOrEqual(timings.prompt_ms / 1000)
    expect(ttft).toBeLessThanOrEqual(got.ms / 1000)
    expect(m.get('gen_ai_server_time_per_output_token_seconds_count{route="chat",model="small"}')).toBe(1)
    // No other arm was billed.
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="large",token_type="output"}') ?? 0).toBe(0)
  })

  it('asks llama.cpp for the usage chunk when the client did not, and takes it out of the client\'s stream', async () => {
    const { r } = await router()
    const user = users.large as string
    const from = tapB?.exchanges.length ?? 0
    const got = await chat(r, { model: 'my-chat', user, max_tokens: 16, ignore_eos: true, stream: true })
    expect(got.arm).toBe('large')
    const ex = await exchangeFor(tapB, 'tiny-20', from)
    await ex.done
    expect(JSON.parse(ex.requestBody)).toMatchObject({ model: 'tiny-20', stream: true, stream_options: { include_usage: true } })
    const sent = answerText(ex)
    const served = /"model":"([^"]+)"/.exec(sent)?.[1] ?? ''
    const usageEvent = events(sent).find((e) => e.includes('"usage":{'))
    expect(usageEvent).toBeDefined()
    // Exactly the usage chunk is gone; every other byte is llama.cpp's.
    expect(got.text).toBe(sent.replace(usageEvent as string, '').replaceAll(`"model":${JSON.stringify(served)}`, '"model":"my-chat"'))
    expect(got.text).not.toContain('"usage"')
    // A client calling llama.cpp directly without include_usage gets the same events, except that
    // llama.cpp then puts its `timings` on the finish chunk (with include_usage, on the usage chunk,
    // which the router removes): the one field such a client loses behind the router.
    const straight = await direct(llama?.urls[1] as string, { model: 'my-chat', max_tokens: 16, ignore_eos: true, stream: true })
    expect(straight).not.toContain('"usage"')
    expect(volatileOut(got.text)).toBe(volatileOut(straight.replaceAll(`"model":${JSON.stringify(served)}`, '"model":"my-chat"')).replace(',"timings":{}', ''))
    const { usage } = usageOf(sent)
    const m = await metricsWhen(r, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="large",outcome="done"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="large",token_type="input"}')).toBe(usage.prompt_tokens)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="large",token_type="output"}')).toBe(16)
    expect(m.get('modelsplit_llm_anomalies_total{route="chat",model="large",kind="no_usage"}') ?? 0).toBe(0)
  })

  it('compares streamed shadows with the primary once all have finished, counting their tokens apart', async () => {
    const { r, records } = await router({
      shadows: `    shadow:
      - { model: small-next }
      - { model: large-next }`,
    })
    const user = users.small as string
    const fromA = tapA?.exchanges.length ?? 0
    const fromB = tapB?.exchanges.length ?? 0
    const got = await chat(r, { model: 'my-chat', user, max_tokens: 20, ignore_eos: true, stream: true })
    expect(got.arm).toBe('small')
    const primary = await exchangeFor(tapA, 'tiny-19', fromA)
    const same = await exchangeFor(tapA, 'tiny-19-next', fromA) // the same model file: the same greedy answer
    const other = await exchangeFor(tapB, 'tiny-20-next', fromB) // another model: other text
    await Promise.all([primary.done, same.done, other.done])
    expect(JSON.parse(same.requestBody)).toMatchObject({ stream: true, stream_options: { include_usage: true } })
    const m = await metricsWhen(r, (x) => (x.get('modelsplit_llm_comparisons_total{route="chat",primary="small",shadow="large-next",layer="undecided",result="undecided"}') ?? 0) === 1 &&
      (x.get('modelsplit_llm_comparisons_total{route="chat",primary="small",shadow="small-next",layer="exact",result="agree"}') ?? 0) === 1)
    const sameUsage = usageOf(answerText(same)).usage
    const otherUsage = usageOf(answerText(other)).usage
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="small-next",token_type="output"}')).toBe(sameUsage.completion_tokens)
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="large-next",token_type="output"}')).toBe(otherUsage.completion_tokens)
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="large-next",token_type="input"}')).toBe(otherUsage.prompt_tokens)
    // The primary's counters hold the primary's tokens only.
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="small",token_type="output"}')).toBe(usageOf(answerText(primary)).usage.completion_tokens)

    open.splice(open.indexOf(r), 1)
    await r.close() // flushes the records
    const all: Record<string, unknown>[] = []
    for await (const rec of readRecords(records)) all.push(rec as unknown as Record<string, unknown>)
    const rec = all.find((x) => x.user_id === user && (x.primary as { usage?: unknown } | undefined)?.usage !== undefined && x.shadows !== undefined)
    const text = contentOf(got.text)
    expect(text).toBe(contentOf(answerText(primary)))
    expect(rec).toMatchObject({
      primary: { model: 'small', prediction: text, usage: { output_tokens: 20 }, ttft_ms: expect.any(Number) },
      shadows: expect.arrayContaining([
        expect.objectContaining({ model: 'small-next', prediction: text, comparison: expect.objectContaining({ agree: true, layer: 'exact' }) }),
        expect.objectContaining({ model: 'large-next', prediction: contentOf(answerText(other)), comparison: expect.objectContaining({ agree: false, layer: 'undecided' }) }),
      ]),
    })
  })

  it('passes on the error event llama.cpp ends a failed stream with, and counts it', async () => {
    const { r } = await router()
    const user = users.small as string
    const from = tapA?.exchanges.length ?? 0
    // "é" is no token of the tiny vocabulary: llama.cpp streams "a" and "b", then fails the task.
    const got = await chat(r, { model: 'my-chat', user, max_tokens: 8, grammar: 'root ::= "ab" "é"', stream: true })
    expect(got.status).toBe(200)
    const ex = await exchangeFor(tapA, 'tiny-19', from)
    await ex.done
    const sent = answerText(ex)
    expect(events(sent).at(-1)).toMatch(/^data: \{"error":\{"code":500,"message":"[^"]*grammar/)
    expect(got.text).toBe(sent.replaceAll('"model":"tiny-19"', '"model":"my-chat"'))
    expect(contentOf(got.text)).toBe('ab')
    const m = await metricsWhen(r, (x) => (x.get('modelsplit_llm_anomalies_total{route="chat",model="small",kind="error_event"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="no_done"}')).toBe(1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="small",outcome="done"}') ?? 0).toBe(0)
  })

  it('closes llama.cpp\'s stream when the client goes away mid-stream, and lets the running shadow finish', async () => {
    const { r, records } = await router({ shadows: '    shadow: [{ model: small-next }]' })
    const user = users.large as string
    const fromA = tapA?.exchanges.length ?? 0
    const fromB = tapB?.exchanges.length ?? 0
    // A long answer (1000 tokens, end of sequence ignored): the client leaves after its first token.
    const res = await request(`${r.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'my-chat', user, messages: MESSAGES, max_tokens: 1000, ignore_eos: true, temperature: 0, stream: true }),
    })
    expect(res.headers['x-modelsplit-model']).toBe('large')
    let seen = ''
    for await (const c of res.body) {
      seen += (c as Buffer).toString('utf8')
      if (/"content":"[^"]/.test(seen)) break // leaving the loop destroys the body: the connection closes
    }
    const ex = await exchangeFor(tapB, 'tiny-20', fromB)
    await ex.done
    // The router closed its connection to llama.cpp before the answer ended.
    expect(ex.cutByRouter).toBe(true)
    expect(ex.ended).toBe(false)
    expect(answerText(ex)).not.toContain('[DONE]')
    // The shadow, already running, was not cut: llama.cpp answered it in full, and its tokens count.
    const shadow = await exchangeFor(tapA, 'tiny-19-next', fromA)
    await shadow.done
    expect(shadow.cutByRouter).toBe(false)
    expect(events(answerText(shadow)).at(-1)).toBe('data: [DONE]\n\n')
    const m = await metricsWhen(r, (x) => (x.get('modelsplit_llm_streams_total{route="chat",model="large",outcome="client_gone"}') ?? 0) === 1 &&
      (x.get('modelsplit_llm_shadow_tokens_total{route="chat",model="small-next",token_type="output"}') ?? 0) === 1000)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="large",outcome="client_gone"}')).toBe(1)
    expect(m.get('modelsplit_llm_streams_total{route="chat",model="large",outcome="done"}') ?? 0).toBe(0)
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="small-next",token_type="output"}')).toBe(usageOf(answerText(shadow)).usage.completion_tokens)
    // llama.cpp is free again: the next request is answered in full.
    const next = await chat(r, { model: 'my-chat', user, max_tokens: 4, stream: true })
    expect(events(next.text).at(-1)).toBe('data: [DONE]\n\n')

    open.splice(open.indexOf(r), 1)
    await r.close() // flushes the records
    const all: Record<string, unknown>[] = []
    for await (const rec of readRecords(records)) all.push(rec as unknown as Record<string, unknown>)
    // The pair is recorded with the shadow's whole answer; the primary's was cut, so its comparison
    // is an error naming why, not an agreement or a disagreement.
    const cut = all.filter((x) => (x.input as { max_tokens?: number } | undefined)?.max_tokens === 1000)
    expect(cut).toHaveLength(1)
    expect(cut[0]).toMatchObject({
      user_id: user,
      primary: { model: 'large', prediction: null, error: expect.stringContaining('client closed the connection') },
      shadows: [{
        model: 'small-next',
        prediction: contentOf(answerText(shadow)),
        usage: { output_tokens: 1000 },
        comparison: { error: expect.stringMatching(/^primary: the client closed the connection/) },
      }],
    })
  })

  it('still sends what test/fixtures/llamacpp/wire.json recorded, which the fake replays (MODELSPLIT_LLAMACPP_RECORD=1 records it anew)', async () => {
    const now: Wire['exchanges'] = {}
    for (const [name, body] of Object.entries(WIRE_CASES)) {
      const from = tapA?.exchanges.length ?? 0
      const res = await request(`${tapA?.url}${body.path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body.request),
      })
      await res.body.text()
      const ex = tapA?.exchanges[from] as Exchange
      await ex.done
      now[name] = { request: body.request, path: body.path, status: ex.status, rawHeaders: ex.rawHeaders, chunks: ex.chunks.map((c) => c.toString('utf8')) }
    }
    if (process.env.MODELSPLIT_LLAMACPP_RECORD === '1') {
      const wire: Wire = { recorded_from: "llama.cpp's server as test/fixtures/llamacpp/requirements.txt pins it (xllamacpp), model tiny-19 of tiny_model.py", exchanges: now }
      await writeFile(WIRE, `${JSON.stringify(wire, null, 1)}\n`)
    }
    const recorded = JSON.parse(await readFile(WIRE, 'utf8')) as Wire
    for (const [name, ex] of Object.entries(now)) {
      const old = recorded.exchanges[name]
      expect(old, name).toBeDefined()
      expect(ex.status, name).toBe(old?.status)
      // The same header names and values, apart from the length of an answer that varies.
      const heads = (raw: readonly string[]): string[] => raw.flatMap((v, i) => i % 2 === 0 ? [`${v}: ${/^content-length$/i.test(v) ? 'N' : raw[i + 1] ?? ''}`] : [])
      expect(heads(ex.rawHeaders), name).toEqual(heads(old?.rawHeaders ?? []))
      // The same bytes, apart from the id, the time, the measured timings and the prompt cache.
      expect(volatileOut(ex.chunks.join('')), name).toBe(volatileOut(old?.chunks.join('') ?? ''))
    }
  })
})
