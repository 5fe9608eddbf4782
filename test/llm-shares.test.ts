// Request, token and cost shares per arm side by side (/admin/llm and the console), and the judge's
// verdicts under serve --workers: every worker's summed on the primary. Real routers, fake
// OpenAI-compatible models whose usage reports are the oracle.
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest'
import { llmSharesOf, sumLlmCounts } from '../src/experiment/index.js'
import { parseMetrics, startRouter } from './helpers/router.js'
import { spawnRouter } from './helpers/router-process.js'
import { startFakeOpenAi, type FakeAnswer } from './helpers/openai.js'
import { startUpstream } from './helpers/upstream.js'

const open: { close(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

// Two arms that answer at very different lengths and prices: equal request shares, unequal the rest.
const SHORT: FakeAnswer = { tokens: ['Paris.'], promptTokens: 12 }
const LONG: FakeAnswer = { tokens: Array.from({ length: 29 }, (_, i) => `w${i} `), promptTokens: 12 }
const PRICE = { short: { in: 0.1, out: 0.2 }, long: { in: 1, out: 3 } }

async function arms(): Promise<{ short: string; long: string; judge: string }> {
  const short = await startFakeOpenAi(() => SHORT)
  const long = await startFakeOpenAi(() => LONG)
  const judge = await startUpstream((_req, res) => {
    const body = JSON.stringify({ id: 'j', object: 'chat.completion', model: 'judge', choices: [{ index: 0, message: { role: 'assistant', content: 'TIE' }, finish_reason: 'stop' }], usage: { prompt_tokens: 50, completion_tokens: 1, total_tokens: 51 } })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  open.push(short, long, judge)
  return { short: short.url, long: long.url, judge: `${judge.url}/v1` }
}

const yaml = (u: { short: string; long: string; judge: string }, top = ''): string => `${top}models:
  short-model: { url: "${u.short}", price: { input_per_million_tokens: ${PRICE.short.in}, output_per_million_tokens: ${PRICE.short.out} } }
  long-model: { url: "${u.long}", price: { input_per_million_tokens: ${PRICE.long.in}, output_per_million_tokens: ${PRICE.long.out} } }
  judge-model: { url: "${u.judge}" }
routes:
  - name: chat
    path: /v1
    api: openai
    split: [{ model: short-model, weight: 50 }, { model: long-model, weight: 50 }]
    shadow: [{ model: long-model }]
    judge: { model: judge-model }
`

/** One streamed chat request on a connection of its own (so a cluster spreads them over workers); the arm that answered. */
function ask(base: string, user: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve(String(res.headers['x-modelsplit-model'])) : reject(new Error(`status ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(JSON.stringify({ model: 'chat', stream: true, user, messages: [{ role: 'user', content: `hello from ${user}` }] }))
  })
}

/** What the fake servers reported for `n` answers of one arm: the oracle. */
function expected(answer: FakeAnswer, price: { in: number; out: number }, n: number) {
  const input = n * answer.promptTokens
  const output = n * answer.tokens.length
  return { requests: n, input_tokens: input, output_tokens: output, cost: (input * price.in + output * price.out) / 1e6 }
}

interface LlmBody { scope: string; routes: { route: string; arms: { model: string; requests: number; input_tokens: number; output_tokens: number; tokens: number; cost: number; request_share: number; token_share: number; output_token_share: number; cost_share: number }[] }[] }

function checkShares(body: LlmBody, served: Record<string, number>): void {
  const a = body.routes.find((r) => r.route === 'chat')?.arms ?? []
  const short = expected(SHORT, PRICE.short, served['short-model'] ?? 0)
  const long = expected(LONG, PRICE.long, served['long-model'] ?? 0)
  expect(a.map((x) => x.model)).toEqual(['short-model', 'long-model'])
  const [s, l] = a
  expect(s).toMatchObject({ requests: short.requests, input_tokens: short.input_tokens, output_tokens: short.output_tokens })
  expect(l).toMatchObject({ requests: long.requests, input_tokens: long.input_tokens, output_tokens: long.output_tokens })
  expect(s?.cost).toBeCloseTo(short.cost, 12)
  expect(l?.cost).toBeCloseTo(long.cost, 12)
  const total = short.requests + long.requests
  expect(s?.request_share).toBeCloseTo(short.requests / total, 12)
  const tokens = (x: typeof short) => x.input_tokens + x.output_tokens
  expect(s?.token_share).toBeCloseTo(tokens(short) / (tokens(short) + tokens(long)), 12)
  expect(l?.output_token_share).toBeCloseTo(long.output_tokens / (short.output_tokens + long.output_tokens), 12)
  expect(l?.cost_share).toBeCloseTo(long.cost / (short.cost + long.cost), 12)
}

describe('shares per arm side by side', () => {
  it('gives each arm\'s requests, tokens and cost, and its shares of each, as the models reported them', async () => {
    const r = await startRouter(yaml(await arms()))
    open.push(r)
    const empty = await (await fetch(`${r.adminUrl}/admin/llm`)).json() as LlmBody
    expect(empty.routes[0]?.arms[0]).toMatchObject({ requests: 0, request_share: null, token_share: null, cost_share: null })
    const served: Record<string, number> = {}
    for (let i = 0; i < 40; i++) {
      const m = await ask(r.url, `user-${i}`)
      served[m] = (served[m] ?? 0) + 1
    }
    expect(Object.keys(served).sort()).toEqual(['long-model', 'short-model'])
    await r.router.flush()
    const body = await (await fetch(`${r.adminUrl}/admin/llm`)).json() as LlmBody
    checkShares(body, served)
    // Similar request shares, very different token and cost shares: the point of showing them together.
    const long = body.routes[0]?.arms[1]
    expect(long?.cost_share).toBeGreaterThan(0.9)
  })

  it('counts shares from empty arms as null, and sums workers\' counts per route and model', () => {
    expect(llmSharesOf([{ model: 'a', requests: 0, input_tokens: 0, output_tokens: 0, cost: 0 }])[0]).toMatchObject({ request_share: null, token_share: null, cost_share: null })
    const arm = (model: string, k: number) => ({ model, requests: k, input_tokens: 10 * k, output_tokens: 2 * k, cost: k / 100 })
    expect(sumLlmCounts([[{ route: 'chat', arms: [arm('a', 1), arm('b', 2)] }], [{ route: 'chat', arms: [arm('a', 3)] }]]))
      .toEqual([{ route: 'chat', arms: [{ ...arm('a', 4), cost: 0.01 + 0.03 }, arm('b', 2)] }])
  })
})

describe('serve --workers 2: shares and the judge\'s verdicts on the primary', () => {
  it('sums every worker\'s arms and verdicts, as one process shows its own', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-llm-workers-'))
    open.push({ close: () => rm(dir, { recursive: true, force: true }) })
    const file = join(dir, 'router.yaml')
    await writeFile(file, yaml(await arms(), 'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n'))
    const r = await spawnRouter(file, ['--log-level', 'error', '--workers', '2'])
    onTestFinished(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
    const served: Record<string, number> = {}
    const n = 30
    for (const m of await Promise.all(Array.from({ length: n }, (_, i) => ask(r.url, `user-${i}`)))) served[m] = (served[m] ?? 0) + 1
    // Users on short-model are mirrored to long-model: each such pair differs in words, so the judge gets it (TIE).
    const mirrored = served['short-model'] ?? 0
    expect(mirrored).toBeGreaterThan(0)
    type Pair = { shadow: string; judged?: { wins: number; ties: number; losses: number; decided: number; win_rate: number | null } }
    let pair: Pair | undefined
    await vi.waitFor(async () => {
      const body = await (await fetch(`${r.adminUrl}/admin/shadows`)).json() as { routes: { route: string; pairs: Pair[] }[] }
      pair = body.routes.find((x) => x.route === 'chat')?.pairs.find((p) => p.shadow === 'long-model')
      expect(pair?.judged?.ties).toBe(mirrored)
    }, { timeout: 20_000, interval: 50 })
    expect(pair?.judged).toMatchObject({ wins: 0, ties: mirrored, losses: 0, decided: 0, win_rate: null })
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_llm_judge_verdicts_total{route="chat",primary="short-model",shadow="long-model",verdict="tie"}')).toBe(mirrored)
    checkShares(await (await fetch(`${r.adminUrl}/admin/llm`)).json() as LlmBody, served)
    r.child.kill('SIGTERM')
    expect(await r.exited).toBe(0)
  }, 60_000)
})

const CHROMIUM = '/usr/bin/chromium'

describe.skipIf(!existsSync(CHROMIUM))('the console', () => {
  it('shows each arm\'s request, token and cost shares and the judge\'s win rate as the admin API gives them', async () => {
    const r = await startRouter(yaml(await arms(), 'evaluation: { interval: 1h }\n'))
    open.push(r)
    for (let i = 0; i < 20; i++) await ask(r.url, `user-${i}`)
    await r.router.flush()
    await vi.waitFor(() => expect(r.router.shadowCounts()[0]?.pairs[0]?.judged?.ties).toBeGreaterThan(0), { timeout: 10_000, interval: 20 })
    const api = await (await fetch(`${r.adminUrl}/admin/llm`)).json() as LlmBody
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] })
    onTestFinished(() => browser.close())
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(String(e)))
    await page.goto(`${r.adminUrl}/`)
    const table = page.locator('[data-route="chat"] [data-section="llm-shares"]')
    await table.waitFor()
    for (const a of api.routes[0]?.arms ?? []) {
      const row = table.locator(`tr[data-model="${a.model}"]`)
      for (const [name, v] of [['request-share', a.request_share], ['token-share', a.token_share], ['cost-share', a.cost_share], ['tokens', a.tokens]] as const) {
        expect(Number(await row.locator(`[data-field="${name}"]`).getAttribute('data-value'))).toBe(v)
      }
    }
    const judged = page.locator('[data-route="chat"] [data-section="judged"]')
    const ties = r.router.shadowCounts()[0]?.pairs[0]?.judged?.ties
    expect(Number(await judged.locator('[data-field="ties"]').getAttribute('data-value'))).toBe(ties)
    expect(await judged.textContent()).toContain('decided pairs')
    expect(errors).toEqual([])
  }, 60_000)
})
