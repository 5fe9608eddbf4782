// The demo's automated-decisions part, end to end: `node examples/demo.mjs --rollout --once` starts
// the example models and a router on config/rollout.yaml, sends traffic with outcomes, and prints
// each decision as the router takes it: churn-v2 walks its steps and is promoted, then the shadow
// churn-v3 is promoted to candidate, walks the same steps and is promoted too. Real time, 2 s
// decision intervals: about 15 s. The config is the bundled one with free ports and a temporary
// directory for its records and state, so a demo running beside the tests does not collide.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bundledConfig, demoConfig, expectCompilesAndExplained, outputLines, runDemo, type DemoPart } from './helpers/demo.js'

const PART: DemoPart = { name: 'rollout', env: 'MODELSPLIT_ROLLOUT_CONFIG' }
const bundled = await bundledConfig(PART)

describe('config/rollout.yaml', () => {
  it('compiles, and every line that sets a key says what it does', () => {
    expectCompilesAndExplained(PART, bundled)
  })
})

describe('npm run demo -- --rollout --once', () => {
  it('prints the decisions live: churn-v2 walks its steps and is promoted, the shadow churn-v3 is promoted to candidate, walks them and is promoted', async () => {
    const { dir, config } = await demoConfig(PART, bundled, { listen: 8081, admin: 9465, models: [9011, 9012, 9013] })

    const { code, out } = await runDemo(PART, config)
    expect(out, out).not.toMatch(/demo failed|not done within/)
    expect(code, out).toBe(0)
    const { lines, at } = outputLines(out)
    const start = at(/rollout\s+start\s+rollout of churn-v2 starts at 10%/)
    const up50 = at(/rollout\s+advance\s+gates held .* at 10% .*step up to 50%/, start)
    const up100 = at(/rollout\s+advance\s+gates held .* at 50% .*step up to 100%/, up50)
    const v2 = at(/rollout\s+promote\s+gates held at 100% .*churn-v2 promoted/, up100)
    const promotion = at(/promotion\s+start_rollout\s+churn-v3: \d+ comparisons, agreement lower bound \d+\.\d\d% ≥ 95\.00%: promoted to rollout candidate/, v2)
    at(/weights in force: churn-v1 0% · churn-v2 90% · churn-v3 10%/, promotion)
    const v3up50 = at(/rollout\s+advance\s+gates held .* at 10% .*step up to 50%/, promotion)
    const v3up100 = at(/rollout\s+advance\s+gates held .* at 50% .*step up to 100%/, v3up50)
    const v3 = at(/rollout\s+promote\s+gates held at 100% .*churn-v3 promoted, it is the control now/, v3up100)
    at(/^final weights: churn-v1 0% · churn-v2 0% · churn-v3 100% \(churn-v3 promoted; \d+ requests sent, \d+ outcomes fed back\)/, v3)
    // Each judged step shows the numbers it saw, guardrail included.
    expect(lines[up50 + 1]).toMatch(/seen on the step: candidate \d+ requests, p99 [\d.]+ ms · control \d+ requests, p99 [\d.]+ ms · retained: sequential p /)
    expect(out).not.toMatch(/\brollback\b|\bpause\b/)
    // The decisions were records too, beside the state file, in the temporary directory.
    const records = (await readFile(join(dir, 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; kind: string; result: string })
    expect(records.filter((r) => r.type === 'decision' && r.result !== 'hold').map((r) => `${r.kind} ${r.result}`)).toEqual([
      'rollout start', 'rollout advance', 'rollout advance', 'rollout promote', 'promotion start_rollout', 'rollout advance', 'rollout advance', 'rollout promote',
    ])
  }, 90_000)
})
