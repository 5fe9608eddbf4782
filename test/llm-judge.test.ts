// The judge of undecided answer pairs: a real router, a fake primary and shadow that answer in
// different words, and a fake judge model that reads the prompt it is sent.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readRecords } from '../src/record/index.js'
import { afterEach, describe, expect, it } from 'vitest'
import { compile } from '../src/plan/index.js'
import { parseVerdict, questionOf } from '../src/llm/judge.js'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { fakeJudge, startFakeOpenAi } from './helpers/openai.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

const PRIMARY_TEXT = 'Paris is the capital of France.'
const SHADOW_TEXT = 'The capital of France is Paris, on the Seine.'

/** A judge model that always prefers the shadow's answer (or says `reply` when given). */
function judgeAnswer(reply?: string) {
  return fakeJudge((a) => reply ?? (a.includes(SHADOW_TEXT) ? 'A' : 'B'), 200)
}

async function setup(judgeYaml: string, judge: Upstream | null, top = ''): Promise<RunningRouter> {
  const primary = await startFakeOpenAi(() => ({ tokens: [PRIMARY_TEXT], promptTokens: 5 }))
  const shadow = await startFakeOpenAi(() => ({ tokens: [SHADOW_TEXT], promptTokens: 5 }))
  open.push(primary, shadow)
  const router = await startRouter(`${top}
models:
  primary-model: { url: "${primary.url}" }
  shadow-model: { url: "${shadow.url}" }
  judge-model: { url: "${judge === null ? 'http://127.0.0.1:9' : `${judge.url}/v1`}", upstream_model: judge-7b, timeout_ms: 2000, price: { input_per_million_tokens: 1000, output_per_million_tokens: 1000 } }
routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: primary-model, weight: 1 }]
    shadow: [{ model: shadow-model }]
${judgeYaml}
`)
  open.push(router)
  return router
}

async function metricsWhen(router: RunningRouter, ready: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  let m = new Map<string, number>()
  for (let i = 0; i < 400; i++) {
    m = parseMetrics(await (await fetch(`${router.adminUrl}/metrics`)).text())
    if (ready(m)) return m
    await new Promise((r) => setTimeout(r, 25))
  }
  return m
}

const counted = (m: Map<string, number>, verdict: string): number => m.get(`modelsplit_llm_judge_verdicts_total{route="chat",primary="primary-model",shadow="shadow-model",verdict="${verdict}"}`) ?? 0
const skipped = (m: Map<string, number>, reason: string): number => m.get(`modelsplit_llm_judge_skipped_total{route="chat",reason="${reason}"}`) ?? 0

async function ask(router: RunningRouter, user: string): Promise<void> {
  const res = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', stream: true, user, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: `capital of France? (${user})` }] }),
  })
  await res.text()
}

describe('the judge', () => {
  it('judges undecided pairs blind and in both orders, and counts the shadow\'s wins whichever position it had', async () => {
    const judge = await startUpstream(judgeAnswer())
    open.push(judge)
    const router = await setup('    judge: { model: judge-model }', judge)
    for (let i = 0; i < 16; i++) await ask(router, `user-${i}`)
    const m = await metricsWhen(router, (x) => counted(x, 'win') === 16)
    expect(counted(m, 'win')).toBe(16)
    expect(counted(m, 'loss') + counted(m, 'tie') + counted(m, 'error')).toBe(0)
    const prompts = judge.requests.map((r) => JSON.parse(r.body) as { model: string; messages: { content: string }[] })
    expect(prompts[0]?.model).toBe('judge-7b')
    const texts = prompts.map((p) => p.messages[0]?.content ?? '')
    // Blind: no model name; the request's last user message is the question.
    for (const t of texts) expect(t).not.toMatch(/primary-model|shadow-model/)
    expect(texts[0]).toContain('capital of France? (user-0)')
    // Randomised: the shadow's answer came first in some prompts and second in others (each 2^-16 otherwise).
    const shadowFirst = texts.filter((t) => t.indexOf(SHADOW_TEXT) < t.indexOf(PRIMARY_TEXT)).length
    expect(shadowFirst).toBeGreaterThan(0)
    expect(shadowFirst).toBeLessThan(16)
    // 16 wins of 16 decided: share 1, exact sign test 2 · 2^-16.
    expect(m.get('modelsplit_llm_judge_win_share{route="chat",primary="primary-model",shadow="shadow-model",bound="estimate"}')).toBe(1)
    expect(m.get('modelsplit_llm_judge_p_value{route="chat",primary="primary-model",shadow="shadow-model",test="sign"}')).toBeCloseTo(2 ** -15, 12)
    expect(m.get('modelsplit_llm_judge_cost_total{route="chat"}')).toBeCloseTo(16 * 201 * 1000 / 1e6, 9)
  })

  it('writes each verdict as a judgement record naming its request, beside the prediction record', async () => {
    const judge = await startUpstream(judgeAnswer())
    open.push(judge)
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-judge-'))
    open.push({ close: () => rm(dir, { recursive: true, force: true }) })
    const file = join(dir, 'predictions.jsonl')
    const router = await setup('    record: true\n    judge: { model: judge-model }', judge, `recording: { path: ${JSON.stringify(file)} }`)
    await ask(router, 'user-7')
    await metricsWhen(router, (x) => counted(x, 'win') === 1)
    open.splice(open.indexOf(router), 1)
    await router.close()
    const records: Record<string, unknown>[] = []
    for await (const r of readRecords(file)) records.push(r as unknown as Record<string, unknown>)
    expect(records.map((r) => r.type)).toEqual(['prediction', 'judgement'])
    const [prediction, judgement] = records
    expect(judgement).toMatchObject({
      schema: 1, request_id: prediction?.request_id, route: 'chat', user_id: 'user-7', primary: 'primary-model', shadow: 'shadow-model',
      judge_model: 'judge-model', verdict: 'win', cost: 201 * 1000 / 1e6,
    })
    expect(judgement?.judge_answer).toBe(judgement?.shadow_position)
  })

  it('samples by user: a user\'s pairs are all judged or none are', async () => {
    const judge = await startUpstream(judgeAnswer())
    open.push(judge)
    const router = await setup('    judge: { model: judge-model, percent: 50 }', judge)
    for (let round = 0; round < 2; round++) for (let i = 0; i < 12; i++) await ask(router, `user-${i}`)
    const m = await metricsWhen(router, (x) => counted(x, 'win') + skipped(x, 'not_sampled') === 24)
    const judged = new Map<string, number>()
    for (const r of judge.requests) {
      const user = /\((user-\d+)\)/.exec(r.body)?.[1] ?? '?'
      judged.set(user, (judged.get(user) ?? 0) + 1)
    }
    for (const n of judged.values()) expect(n).toBe(2)
    expect(counted(m, 'win')).toBe(judged.size * 2)
    expect(skipped(m, 'not_sampled')).toBe(24 - judged.size * 2)
    expect(judged.size).toBeGreaterThan(0)
    expect(judged.size).toBeLessThan(12)
  })

  it('stops at the hourly budget', async () => {
    const judge = await startUpstream(judgeAnswer())
    open.push(judge)
    // One call costs 201 tokens × 1000 / 1e6 = 0.201: a budget of 0.3 allows two.
    const router = await setup('    judge: { model: judge-model, max_cost_per_hour: 0.3 }', judge)
    for (let i = 0; i < 4; i++) {
      await ask(router, `user-${i}`)
      await metricsWhen(router, (x) => counted(x, 'win') + skipped(x, 'budget') === i + 1)
    }
    const m = await metricsWhen(router, () => true)
    expect([counted(m, 'win'), skipped(m, 'budget')]).toEqual([2, 2])
  })

  it.each([
    ['answers garbage', 'I think both are fine really'],
    ['is down', null],
  ])('counts an error when the judge %s, and the client\'s answer is untouched', async (_name, reply) => {
    const judge = reply === null ? null : await startUpstream(judgeAnswer(reply))
    if (judge !== null) open.push(judge)
    const router = await setup('    judge: { model: judge-model }', judge)
    await ask(router, 'user-1')
    const m = await metricsWhen(router, (x) => counted(x, 'error') === 1)
    expect(counted(m, 'error')).toBe(1)
  })
})

describe('judge parts', () => {
  it.each([['A', 'A'], [' b.', 'B'], ['TIE', 'TIE'], ['**A**', 'A'], ['"B" because', 'B'], ['Answer A', null], ['AB', null], ['', null]])('parseVerdict(%j)', (text, verdict) => {
    expect(parseVerdict(text)).toBe(verdict)
  })

  it('shows the judge the last user message, or the prompt', () => {
    expect(questionOf(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'one' }, { role: 'assistant', content: 'x' }, { role: 'user', content: 'two' }] })))).toBe('two')
    expect(questionOf(Buffer.from(JSON.stringify({ prompt: 'complete me' })))).toBe('complete me')
  })

  it.each([
    ['on an http route', 'routes:\n  - { name: r, path: /v1, split: [{ model: m, weight: 1 }], judge: { model: m } }\n', 'routes[0].judge', 'set api: openai'],
    ['naming an unknown model', 'routes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }], judge: { model: nope } }\n', 'routes[0].judge.model', 'is not defined under models'],
    ['with a prompt missing a placeholder', 'routes:\n  - { name: r, path: /v1, api: openai, split: [{ model: m, weight: 1 }], judge: { model: m, prompt: "{{answer_a}} or {{answer_b}}?" } }\n', 'routes[0].judge.prompt', 'must contain {{question}}'],
  ])('refuses a judge %s, with its place', (_name, routes, path, message) => {
    const r = compile(`models:\n  m:\n    url: http://127.0.0.1:9\n${routes}`, 'judge.yaml')
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.problems).toHaveLength(1)
    expect(r.problems[0]).toMatchObject({ file: 'judge.yaml', line: 5, path })
    expect(r.problems[0]?.message).toContain(message)
  })
})
