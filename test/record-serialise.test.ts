import { describe, expect, it } from 'vitest'
import { Random } from '../src/decisions/random.js'
import { isoTime, kRawInput, kRawPrediction, kShaped, recordJson, recordLine } from '../src/record/schema.js'

// The observer's prediction records are serialised key by key (src/record/serialise.ts) rather
// than by JSON.stringify. The oracle is JSON.stringify itself: for every shape the observer builds
// (its object literal's keys, in its order), the line must be the same text, byte for byte.

type Rec = Record<string, unknown>

/** A record as the observer's object literal builds it (same keys, same order), from the options. */
function build(rng: Random, o: { transport?: boolean; version?: boolean; usage?: boolean; shadows?: number; input?: 'raw' | 'parsed' | 'omitted' | 'none'; unicode?: boolean }): Rec {
  const s = (base: string): string => (o.unicode ? `${base} "é" \\ \u2028 \u0007 \ud800 漢` : base)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)] as T
  const prediction = pick<unknown>([0.25, [1, 2.5, -3e-7], { label: s('cat'), p: [0.1, 0.9] }, null, 'text', 2 ** 60, 1e21, true, undefined])
  const shadows = Array.from({ length: o.shadows ?? 0 }, (_, i) => i % 2 === 0
    ? { model: s('shadow'), status: 200, latency_ms: 3.25, prediction: [1, 2], error: null, comparison: { agree: true, abs_diff_max: 0, abs_diff_mean: 0, fraction_agree: 1 } }
    : { model: 'shadow_dead', dropped: 'unavailable' })
  const failed = rng.next() < 0.3
  const r: Rec = {
    type: 'prediction',
    schema: 1,
    ts: isoTime(1_700_000_000_000 + Math.floor(rng.next() * 1e9)),
    request_id: s(`req-${Math.floor(rng.next() * 1e6)}`),
    route: s('rec'),
    ...(o.transport ? { transport: 'grpc' as const } : {}),
    user_id: rng.next() < 0.2 ? null : s(`user-${Math.floor(rng.next() * 256)}`),
    assignment: pick(['hash', 'override', 'missing_user_id']),
    shares: Object.freeze({ [s('model_a')]: 0.5, model_b: 0.5 }),
    primary: {
      model: s('model_a'), ...(o.version ? { model_version: pick(['3', null]) } : {}), status: failed ? 502 : 200,
      latency_ms: pick([1.234, 0, 250, Number.NaN]), prediction: failed ? null : prediction, error: failed ? s('connection refused') : null,
      ...(rng.next() < 0.5 ? { prediction_error: s('no prediction found: expected "predictions", got an object with keys "model"') } : {}),
      ...(o.usage ? { usage: { input_tokens: 12, output_tokens: null, cost: 0.0003 }, ttft_ms: 41.5 } : {}),
    },
    shadows,
  }
  if (o.input === 'omitted') r.input_omitted = 'body_too_large'
  if (o.input === 'parsed') r.input = { text: s('hello'), n: [1, 2] }
  return r
}

/** The same record with the serialiser's mark: the line must not change. */
function shaped(r: Rec): Rec {
  const copy: Rec = { ...r }
  ;(copy as { [kShaped]?: true })[kShaped] = true
  return copy
}

describe('prediction records serialised key by key', () => {
  it('give the text JSON.stringify gives, for every shape the observer builds', () => {
    const rng = new Random(22)
    let n = 0
    for (const transport of [false, true]) {
      for (const version of [false, true]) {
        for (const usage of [false, true]) {
          for (const shadows of [0, 1, 2]) {
            for (const input of ['none', 'parsed', 'omitted'] as const) {
              for (const unicode of [false, true]) {
                for (let k = 0; k < 4; k++) {
                  const r = build(rng, { transport, version, usage, shadows, input, unicode })
                  const want = JSON.stringify(r)
                  expect(recordJson(shaped(r))).toBe(want)
                  expect(recordLine(shaped(r))).toBe(`${want}\n`)
                  n++
                }
              }
            }
          }
        }
      }
    }
    expect(n).toBe(576)
  })

  it('write a raw input as its own text, where JSON.stringify puts the parsed input', () => {
    const rng = new Random(7)
    for (const text of ['{"features":[0.12,3.4,5.6]}', '"just text"', '[1,2,{"a":null}]']) {
      const r = build(rng, { input: 'none', shadows: 1 })
      const raw = shaped(r)
      ;(raw as { [kRawInput]?: string })[kRawInput] = text
      expect(recordJson(raw)).toBe(JSON.stringify({ ...r, input: JSON.parse(text) }))
      // The mark changes nothing: the generic path splices the same text in.
      const generic = { ...r, [kRawInput]: text }
      expect(recordJson(raw)).toBe(recordJson(generic))
    }
    // Digit for digit, as the client sent it (JSON.stringify would write 7E+2 as 700).
    const r = shaped(build(rng, { input: 'none' }))
    ;(r as { [kRawInput]?: string })[kRawInput] = '[7E+2,1.50]'
    expect(recordJson(r)?.endsWith(',"input":[7E+2,1.50]}')).toBe(true)
  })

  it('write a raw prediction (text or bytes) in place of the primary prediction, as the generic path does', () => {
    const rng = new Random(9)
    for (let k = 0; k < 20; k++) {
      const r = build(rng, { shadows: k % 3, input: k % 2 === 0 ? 'parsed' : 'none', unicode: k % 4 === 0 })
      ;(r.primary as Rec).prediction = null
      ;(r.primary as Rec).error = null
      const text = '[[0.1,0.2],[0.3,"é"]]'
      for (const raw of [text, Buffer.from(text)]) {
        const fast = shaped(r)
        ;(fast as { [kRawPrediction]?: string | Buffer })[kRawPrediction] = raw
        const generic = { ...r, [kRawPrediction]: raw }
        const want = JSON.stringify({ ...r, primary: { ...(r.primary as Rec), prediction: JSON.parse(text) } })
        expect(recordJson(fast)).toBe(want)
        expect(recordJson(generic)).toBe(want)
        const line = recordLine(fast)
        expect(Buffer.isBuffer(line) || typeof line === 'string').toBe(true)
        expect(Buffer.from(line as string | Buffer).toString('utf8')).toBe(`${want}\n`)
      }
    }
  })
})

describe('isoTime', () => {
  it('is Date#toISOString for whole milliseconds, across minutes, hours, days and years, in any order', () => {
    const rng = new Random(3)
    const points = [0, 59_999, 60_000, 1_700_000_000_000, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), Date.UTC(2024, 1, 29, 12, 0, 0, 5), -1, -60_001, 253_402_300_799_999, 253_402_300_800_000]
    for (let k = 0; k < 5000; k++) {
      const base = points[k % points.length] as number
      points.push(base + Math.floor((rng.next() - 0.5) * 200_000))
    }
    // Sequential runs too: most calls fall in the minute of the one before.
    let t = 1_765_000_000_000
    for (let k = 0; k < 5000; k++) points.push((t += Math.floor(rng.next() * 40)))
    for (const ms of points) expect(isoTime(ms)).toBe(new Date(ms).toISOString())
  })

  it('falls back to Date for fractional milliseconds', () => {
    expect(isoTime(1_700_000_000_000.5)).toBe(new Date(1_700_000_000_000.5).toISOString())
  })
})

describe('numbers in prediction records', () => {
  it('are the text JSON.stringify gives: latencies in microseconds and any other number', () => {
    const rng = new Random(5)
    const base = build(rng, { shadows: 0, input: 'none' })
    const primary = base.primary as Rec
    const values: number[] = [0.001, 0.01, 0.1, 0.5, 0.999, 1.001, 1.01, 1.1, 9.999, 10.05, 99.95, 1e12 - 0.001, 999999999999.999, 1e15 / 1000 + 0.5, -1.25, 1e-7, 0.0005, 1 / 3, 2 ** -20]
    for (let i = 0; i < 20_000; i++) {
      const ms = rng.next() * 10 ** Math.floor(rng.next() * 13)
      values.push(Math.round(ms * 1000) / 1000, ms)
    }
    for (const v of values) {
      const r = { ...base, primary: { ...primary, latency_ms: v } }
      expect(recordJson(shaped(r)), String(v)).toBe(JSON.stringify(r))
    }
  })
})
