import { describe, expect, it } from 'vitest'
import { isJsonLine } from '../src/record/raw-json.js'
import { recordJson, kRawInput } from '../src/record/schema.js'
import { Random } from '../src/decisions/random.js'

// A prediction record's input is written as the body's own text when the body is one JSON value
// on one line (src/record/raw-json.ts). The oracle is V8's JSON.parse: the check must accept what
// it accepts (less any line break) and refuse what it refuses.
function oracle(text: string): boolean {
  if (text.includes('\n') || text.includes('\r')) return false
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

const CASES: [string, boolean][] = [
  ['{"features":[0.12,3.4,-5.6e-3,7E+2,0,-0]}', true],
  ['  {"a" : [1, 2 ,{"b":null}] , "c":true,"d":false}\t', true],
  ['"just a string"', true],
  ['12345678901234567890123', true],
  ['[]', true],
  ['{}', true],
  ['"\\u00e9\\n\\"\\\\\\/\\b\\f\\r\\t"', true],
  ['"é 漢字 \u2028"', true],
  ['{"a":1}\n', false],
  ['{\n  "a": 1\n}', false],
  ['{"a":1,}', false],
  ['[1,]', false],
  ['{"a":NaN}', false],
  ['[Infinity]', false],
  ['01', false],
  ['1.', false],
  ['.5', false],
  ['-', false],
  ['1e', false],
  ['+1', false],
  ['"\\x41"', false],
  ['"\\u12"', false],
  ['"tab\there"', false],
  ['{a:1}', false],
  ["{'a':1}", false],
  ['{"a" 1}', false],
  ['[1 2]', false],
  ['tru', false],
  ['nul', false],
  ['true false', false],
  ['', false],
  ['   ', false],
  ['{"a":1}}', false],
  ['[[[', false],
  ['// c\n1', false],
]

describe('isJsonLine', () => {
  it.each(CASES)('%j → %s, as JSON.parse says', (text, expected) => {
    expect(oracle(text)).toBe(expected)
    expect(isJsonLine(text)).toBe(expected)
  })

  it('agrees with JSON.parse on 20 000 mutations of valid documents', () => {
    const prng = new Random(22)
    const rand = (): number => prng.next()
    const alphabet = ' \t\n{}[]:,"\\-+.0123456789eEtruefalsnx/bu'
    const seeds = CASES.filter(([, ok]) => ok).map(([t]) => t)
    let accepted = 0
    for (let n = 0; n < 20_000; n++) {
      let t = seeds[Math.floor(rand() * seeds.length)] as string
      const edits = 1 + Math.floor(rand() * 3)
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * (t.length + 1))
        const ch = alphabet[Math.floor(rand() * alphabet.length)] as string
        const op = rand()
        t = op < 0.4 ? t.slice(0, at) + ch + t.slice(at) : op < 0.8 ? t.slice(0, at) + t.slice(at + 1) : t.slice(0, at) + ch + t.slice(at + 1)
      }
      const want = oracle(t)
      if (isJsonLine(t) !== want) throw new Error(`disagrees with JSON.parse on ${JSON.stringify(t)} (JSON.parse: ${want})`)
      if (want) accepted++
    }
    // Both sides of the boundary were exercised.
    expect(accepted).toBeGreaterThan(1000)
  })
})

describe('recordJson', () => {
  it('writes a raw input as the last key, the same JSON value as the parsed one', () => {
    const body = '{"features":[0.1,2],"id":12345678901234567890123,"s":"\\u00e9"}'
    const rec: Record<string | symbol, unknown> = { type: 'prediction', request_id: 'r1', shadows: [] }
    rec[kRawInput] = body
    const line = recordJson(rec) as string
    expect(line).toBe(`{"type":"prediction","request_id":"r1","shadows":[],"input":${body}}`)
    expect(JSON.parse(line)).toEqual({ ...JSON.parse(JSON.stringify(rec)), input: JSON.parse(body) })
    expect(recordJson({ a: 1 })).toBe('{"a":1}')
  })
})
