// Shadows of api: openai routes: a real router, a streamed primary and shadows (streamed as the
// client asked, or not), compared when both are done; shadow tokens and cost apart from the primary's.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { readRecords } from '../src/record/index.js'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { renderStream, startFakeOpenAi, type FakeAnswer, type FakeOpenAi } from './helpers/openai.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

async function fake(answer: FakeAnswer): Promise<FakeOpenAi> {
  const f = await startFakeOpenAi(() => answer)
  open.push(f)
  return f
}

async function metricsWhen(router: RunningRouter, ready: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  let m = new Map<string, number>()
  for (let i = 0; i < 200; i++) {
    m = parseMetrics(await (await fetch(`${router.adminUrl}/metrics`)).text())
    if (ready(m)) return m
    await new Promise((r) => setTimeout(r, 25))
  }
  return m
}

describe('shadows of api: openai routes', () => {
  it('compares a streamed answer with streamed and non-streamed shadows once all are done, and counts shadow tokens apart', async () => {
    const primary = await fake({ tokens: ['The capital', ' is Paris.'], promptTokens: 12 })
    const same = await fake({ tokens: ['the capital is ', ' PARIS.'], promptTokens: 12 })
    const other = await fake({ tokens: ['Paris', ', of course.', ' Next?'], promptTokens: 12 })
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-llm-'))
    open.push({ close: () => rm(dir, { recursive: true, force: true }) })
    const router = await startRouter(`
models:
  p: { url: "${primary.url}", upstream_model: p-up }
  s1: { url: "${same.url}", upstream_model: s1-up, price: { input_per_million_tokens: 1, output_per_million_tokens: 2 } }
  s2: { url: "${other.url}" }
recording: { path: ${JSON.stringify(join(dir, 'predictions.jsonl'))} }
routes:
  - name: chat
    path: /v1
    api: openai
    record: true
    split: [{ model: p, weight: 1 }]
    shadow:
      - { model: s1 }
      - { model: s2, stream: "off" }
`)
    open.push(router)
    const mirrored1 = same.nextRequest()
    const mirrored2 = other.nextRequest()
    const res = await fetch(`${router.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, user: 'u1', messages: [{ role: 'user', content: 'capital of France?' }] }),
    })
    const { head, tail } = renderStream('chat', { tokens: ['The capital', ' is Paris.'], promptTokens: 12 }, false)
    expect(await res.text()).toBe([...head, ...tail].join(''))
    // Each shadow was asked for its own model, in its own stream mode.
    expect(JSON.parse((await mirrored1).body)).toMatchObject({ model: 's1-up', stream: true, stream_options: { include_usage: true } })
    const m2 = JSON.parse((await mirrored2).body) as Record<string, unknown>
    expect(m2).toMatchObject({ model: 'chat', stream: false })
    expect(m2.stream_options).toBeUndefined()

    const m = await metricsWhen(router, (x) => (x.get('modelsplit_llm_comparisons_total{route="chat",primary="p",shadow="s2",layer="undecided",result="undecided"}') ?? 0) === 1)
    expect(m.get('modelsplit_llm_comparisons_total{route="chat",primary="p",shadow="s1",layer="normalised",result="agree"}')).toBe(1)
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="s1",token_type="output"}')).toBe(2)
    expect(m.get('modelsplit_llm_shadow_tokens_total{route="chat",model="s2",token_type="output"}')).toBe(3)
    expect(m.get('modelsplit_llm_shadow_cost_total{route="chat",model="s1"}')).toBeCloseTo((12 * 1 + 2 * 2) / 1e6, 12)
    // The primary's own token counters hold only the primary's tokens.
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="p",token_type="output"}')).toBe(2)
    expect(m.get('modelsplit_llm_tokens_total{route="chat",model="s1",token_type="output"}')).toBeUndefined()

    open.splice(open.indexOf(router), 1)
    await router.close() // flushes the record file
    const records: Record<string, unknown>[] = []
    for await (const r of readRecords(join(dir, 'predictions.jsonl'))) records.push(r as unknown as Record<string, unknown>)
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({
      primary: { model: 'p', prediction: 'The capital is Paris.', usage: { input_tokens: 12, output_tokens: 2, cost: null }, ttft_ms: expect.any(Number) },
      shadows: [
        { model: 's1', prediction: 'the capital is  PARIS.', comparison: { agree: true, layer: 'normalised' }, usage: { input_tokens: 12, output_tokens: 2, cost: (12 + 4) / 1e6 } },
        { model: 's2', prediction: 'Paris, of course. Next?', comparison: { agree: false, layer: 'undecided' }, usage: { input_tokens: 12, output_tokens: 3, cost: null } },
      ],
    })
  })
})
