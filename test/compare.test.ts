import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  comparePredictions,
  compilePredictionSpec,
  extractPrediction,
  getByPointer,
  parseJsonPointer,
  parseModelJson,
} from '../src/compare/index.js'
import type { CompareOptions, Comparison } from '../src/compare/index.js'

/** Reads a golden-vector file; `{"$number": "NaN"}` stands in for the non-finite numbers JSON cannot hold. */
function fixture<T>(name: string): T {
  const text = readFileSync(new URL(`./fixtures/compare-${name}.json`, import.meta.url), 'utf8')
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const tagged = (value as Record<string, unknown>).$number
      if (typeof tagged === 'string') return Number(tagged)
    }
    return value
  }) as T
}

type Expected = { value: unknown } | { reason: string }
type ParseCase = { name: string; text: string } & Expected
type ExtractCase = { name: string; body: string; spec: string } & Expected
type PointerFixture = {
  valid: Array<{ pointer: string; tokens: string[] }>
  invalid: Array<{ pointer: string; message: string }>
  lookups: Array<{ name: string; doc: unknown; pointer: string; found: boolean; value?: unknown }>
}
type CompareCase = { name: string; primary: unknown; shadow: unknown; options: CompareOptions; expected: Comparison }

function outcome(expected: Expected): { ok: true; value: unknown } | { ok: false; reason: string } {
  return 'reason' in expected ? { ok: false, reason: expected.reason } : { ok: true, value: expected.value }
}

/** Float stats are asserted to 10 decimals; everything else exactly. */
function matcher(expected: Comparison): unknown {
  if ('error' in expected) return expected
  const close = (n: number | null): unknown => (n === null ? null : expect.closeTo(n, 10))
  return {
    ...expected,
    abs_diff_max: close(expected.abs_diff_max),
    abs_diff_mean: close(expected.abs_diff_mean),
    fraction_agree: expect.closeTo(expected.fraction_agree, 10),
  }
}

describe('parseModelJson', () => {
  it.each(fixture<ParseCase[]>('parse'))('$name', (c) => {
    expect(parseModelJson(c.text)).toEqual(outcome(c))
  })

  it('keeps a "__proto__" key as data on the lenient path, as JSON.parse does', () => {
    const result = parseModelJson('{"__proto__": {"polluted": true}, "p": NaN}')
    expect(result.ok).toBe(true)
    const value = (result as { value: Record<string, unknown> }).value
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
    expect(Object.hasOwn(value, '__proto__')).toBe(true)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('reports absurd nesting instead of overflowing the stack', () => {
    const deep = '['.repeat(200_000) + 'NaN' + ']'.repeat(200_000)
    expect(parseModelJson(deep)).toEqual({ ok: false, reason: 'response is not JSON: nesting too deep' })
  })
})

describe('JSON Pointer', () => {
  const pointers = fixture<PointerFixture>('pointer')

  it.each(pointers.valid)('parses "$pointer"', ({ pointer, tokens }) => {
    expect(parseJsonPointer(pointer)).toEqual(tokens)
  })

  it.each(pointers.invalid)('rejects "$pointer" saying what to write', ({ pointer, message }) => {
    expect(() => parseJsonPointer(pointer)).toThrow(new Error(message))
  })

  it.each(pointers.lookups)('looks up: $name', ({ doc, pointer, found, value }) => {
    expect(getByPointer(doc, parseJsonPointer(pointer))).toEqual(found ? { found, value } : { found })
  })
})

describe('compilePredictionSpec', () => {
  it('keeps "auto" as the sentinel', () => {
    expect(compilePredictionSpec('auto')).toBe('auto')
  })

  it('pre-parses a pointer so requests never re-parse it', () => {
    expect(compilePredictionSpec('/predictions/0/score')).toEqual({
      pointer: '/predictions/0/score',
      tokens: ['predictions', '0', 'score'],
    })
  })

  it('names the bad spec and the way out when the pointer is invalid', () => {
    expect(() => compilePredictionSpec('predictions/0')).toThrow(
      'invalid prediction spec: invalid JSON Pointer "predictions/0": it must start with "/", e.g. "/predictions/0"; or write "auto"',
    )
  })

  it('reports an invalid hand-built spec as a failure instead of throwing on the shadow path', () => {
    expect(extractPrediction({ predictions: [1] }, { pointer: 'predictions' })).toEqual({
      ok: false,
      reason: 'invalid JSON Pointer "predictions": it must start with "/", e.g. "/predictions"',
    })
  })
})

describe('extractPrediction from real response bodies', () => {
  it.each(fixture<ExtractCase[]>('extract'))('$name', (c) => {
    const parsed = parseModelJson(c.body)
    const result = parsed.ok ? extractPrediction(parsed.value, compilePredictionSpec(c.spec)) : parsed
    expect(result).toEqual(outcome(c))
  })
})

describe('comparePredictions', () => {
  it.each(fixture<CompareCase[]>('predictions'))('$name', (c) => {
    expect(comparePredictions(c.primary, c.shadow, c.options)).toEqual(matcher(c.expected))
  })

  it('compares what extractPrediction returns for two different servers', () => {
    // The same model behind MLflow (primary) and Triton (shadow): shapes differ, predictions match.
    const primary = parseModelJson('{"predictions": [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]}')
    const shadow = parseModelJson(
      '{"outputs": [{"name": "probabilities", "shape": [2, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]}]}',
    )
    if (!primary.ok || !shadow.ok) throw new Error('fixture bodies must parse')
    const a = extractPrediction(primary.value, 'auto')
    const b = extractPrediction(shadow.value, 'auto')
    if (!a.ok || !b.ok) throw new Error('fixture bodies must extract')
    expect(comparePredictions(a.value, b.value, { tolerance: 1e-6, mode: 'argmax' })).toEqual({
      agree: true,
      abs_diff_max: 0,
      abs_diff_mean: 0,
      fraction_agree: 1,
      compared: 2,
    })
  })
})
