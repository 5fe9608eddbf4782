// The demo's LLM part, end to end: `node examples/demo.mjs --llm --once` starts two tiny
// OpenAI-compatible chat models and a judge (in-process, streaming SSE), a router on
// config/llm.yaml, and streamed chat traffic; chat-v2 is ramped against chat-v1 with the judge's
// win rate as a gate and promoted, and the demo prints the shares per arm and the judge's verdicts.
// Real time, 2 s decision intervals: about 15 s. The config is the bundled one with free ports and
// a temporary directory for its records and state.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bundledConfig, demoConfig, expectCompilesAndExplained, outputLines, runDemo, type DemoPart } from './helpers/demo.js'

const PART: DemoPart = { name: 'llm', env: 'MODELSPLIT_LLM_CONFIG' }
const bundled = await bundledConfig(PART)

describe('config/llm.yaml', () => {
  it('compiles, and every line that sets a key says what it does', () => {
    expectCompilesAndExplained(PART, bundled)
  })
})

describe('npm run demo -- --llm --once', () => {
  it('ramps chat-v2 on the judge\'s win rate, promotes it, and prints the shares per arm and the verdicts', async () => {
    const { dir, config } = await demoConfig(PART, bundled, { listen: 8082, admin: 9466, models: [9021, 9022, 9023] })

    const { code, out } = await runDemo(PART, config)
    expect(out, out).not.toMatch(/demo failed|not done within/)
    expect(code, out).toBe(0)
    const { lines, at } = outputLines(out)
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
