// The demo's LLM part, end to end: `node examples/demo.mjs --llm --once` starts two tiny
// OpenAI-compatible chat models and a judge (in-process, streaming SSE), a router on
// config/llm.yaml, and streamed chat traffic; chat-v2 is ramped against chat-v1 with the judge's
// win rate as a gate and promoted, and the demo prints the shares per arm and the judge's verdicts.
// Real time, 2 s decision intervals: about 15 s. The config is the bundled one with free ports and
// a temporary directory for its records and state.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { compile } from '../src/plan/index.js'
import { freePort } from './helpers/upstream.js'

const ROOT = join(import.meta.dirname, '..')
const bundled = await readFile(join(ROOT, 'config/llm.yaml'), 'utf8')

function replaceOnce(text: string, from: string, to: string): string {
  expect(text.split(from).length - 1, `"${from}" once in config/llm.yaml`).toBe(1)
  return text.replace(from, to)
}

function runDemo(config: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['examples/demo.mjs', '--llm', '--once'], {
      cwd: ROOT, env: { ...process.env, MODELSPLIT_LLM_CONFIG: config }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 85_000,
    })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, out }))
  })
}

describe('config/llm.yaml', () => {
  it('compiles, and every line that sets a key says what it does', () => {
    const r = compile(bundled, 'config/llm.yaml')
    expect(r.ok ? [] : r.problems).toEqual([])
    const uncommented = bundled.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#') && !l.includes('#'))
    expect(uncommented).toEqual([])
  })
})

describe('npm run demo -- --llm --once', () => {
  it('ramps chat-v2 on the judge\'s win rate, promotes it, and prints the shares per arm and the verdicts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-demo-llm-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    let text = bundled
    text = replaceOnce(text, 'port: 8082', `port: ${await freePort()}`)
    text = replaceOnce(text, 'port: 9466', `port: ${await freePort()}`)
    for (const port of ['9021', '9022', '9023']) text = replaceOnce(text, `127.0.0.1:${port}`, `127.0.0.1:${await freePort()}`)
    text = replaceOnce(text, 'path: ../data/llm/records.jsonl', 'path: ./records.jsonl')
    const config = join(dir, 'llm.yaml')
    await writeFile(config, text)

    const { code, out } = await runDemo(config)
    expect(out, out).not.toMatch(/demo failed|not done within/)
    expect(code, out).toBe(0)
    const lines = out.split('\n')
    const at = (re: RegExp, from = 0): number => {
      const i = lines.findIndex((l, k) => k >= from && re.test(l))
      expect(i, `${re} after line ${from} in:\n${out}`).toBeGreaterThanOrEqual(0)
      return i
    }
    at(/one streamed answer through the router \(alice → chat-v\d\): \d+ events, text "(Nairobi\.|The capital of Kenya is Nairobi, .*)"/)
    const start = at(/rollout\s+start\s+rollout of chat-v2 starts at 10%/)
    const up50 = at(/rollout\s+advance\s+gates held .* at 10% .*judged win rate \d+\.\d\d% \(\d+ wins, \d+ ties, \d+ losses\), 95% lower bound \d+\.\d\d% ≥ 50\.00%\): step up to 50%/, start)
    const up100 = at(/rollout\s+advance\s+.* at 50% .*step up to 100%/, up50)
    const promoted = at(/rollout\s+promote\s+gates held at 100% .*chat-v2 promoted, it is the control now/, up100)
    const table = at(/per arm, side by side \(GET \/admin\/llm\)/, promoted)
    // Each arm's shares: requests, tokens, cost.
    const row = (m: string): RegExpMatchArray | null => (lines.slice(table).find((l) => l.trimStart().startsWith(`${m} `)) ?? '').match(/(\d+)\s+([\d.]+)%\s+(\d+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)%/)
    const v1 = row('chat-v1')
    const v2 = row('chat-v2')
    expect(v1, out).not.toBeNull()
    expect(v2, out).not.toBeNull()
    expect(Number(v1?.[2]) + Number(v2?.[2])).toBeCloseTo(100, 0)
    // chat-v2 writes longer answers at six times the price per token: its cost share is well above its request share.
    expect(Number(v2?.[6])).toBeGreaterThan(Number(v2?.[2]))
    at(/mean time to first token: chat-v1 [\d.]+ ms · chat-v2 [\d.]+ ms/, table)
    at(/the judge on chat-v2 \(shadow\) vs chat-v1: \d+ wins, \d+ ties, \d+ losses; win rate [\d.]+% \[[\d.]+%, [\d.]+%\], sign test p \S+, sequential p \S+/, table)
    at(/^final weights: chat-v1 0% · chat-v2 100% \(chat-v2 promoted; \d+ chat requests streamed\)/, table)
    expect(out).not.toMatch(/\brollback\b|\bpause\b/)
    // Predictions, judgements and decisions were records, in the temporary directory.
    const records = (await readFile(join(dir, 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; verdict?: string })
    expect(records.some((r) => r.type === 'judgement' && (r.verdict === 'win' || r.verdict === 'loss' || r.verdict === 'tie'))).toBe(true)
    expect(records.some((r) => r.type === 'prediction')).toBe(true)
    expect(records.some((r) => r.type === 'decision')).toBe(true)
  }, 90_000)
})
