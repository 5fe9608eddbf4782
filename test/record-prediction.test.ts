import { isUtf8 } from 'node:buffer'
import { readFile } from 'node:fs/promises'
import { join, dirname } from 'node:path'
import type { ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { autoPredictionSpan } from '../src/record/raw-json.js'
import { readRecords } from '../src/record/index.js'
import { Random } from '../src/decisions/random.js'
import type { RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

// A large answer on a route that only records it is not parsed: `prediction: auto`'s prediction
// is found in its text (src/record/raw-json.ts) and written into the record as is (issue 18,
// item 20: what a capture costs). The oracle is JSON.parse and the auto rule: a top-level array
// is the prediction, else the object's "predictions" (the last one, as JSON.parse keeps it).
function oracle(text: string): unknown {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (Array.isArray(value)) return value
  if (value !== null && typeof value === 'object' && Object.hasOwn(value, 'predictions')) return (value as { predictions: unknown }).predictions
  return undefined
}

describe('autoPredictionSpan', () => {
  const cases = [
    '[1,2,3]',
    '{"predictions":[0.5,0.25]}',
    '  {"model":"x","predictions":{"a":[1,{"b":"]}"}]},"extra":null}\n',
    '{"predictions":1,"predictions":[2]}',
    '{"outputs":[1]}',
    '{"predict\\u0069ons":[7]}',
    '{"predictions":[1],"predict\\u0069ons":[7]}',
    '{"predictions":[1]}{"x":1}',
    '{"predictions":[1,]}',
    '{\n"predictions":[1]}',
    '{"predictions":[1]}\r\n',
    '{"é":"漢字","predictions":["é\u2028漢字 🙂"]}',
    '"predictions"',
    '{}',
    '[]',
    '',
  ]
  it.each(cases)('finds what JSON.parse and the auto rule find, or declines: %j', (text) => {
    const span = autoPredictionSpan(text)
    const want = oracle(text)
    // Declining is always allowed (the caller parses instead); a span must hold exactly the prediction.
    if (span !== null) expect(JSON.parse(text.slice(span.start, span.end))).toEqual(want)
    if (want === undefined) expect(span).toBeNull()
    // The same over the answer's bytes (how the router reads it): a byte span, the same decision.
    const bytes = Buffer.from(text)
    const byteSpan = autoPredictionSpan(bytes)
    expect(byteSpan === null).toBe(span === null)
    if (byteSpan !== null) expect(JSON.parse(bytes.subarray(byteSpan.start, byteSpan.end).toString('utf8'))).toEqual(want)
  })

  it('agrees with the oracle on 5 000 random answers and mutations of them', () => {
    const rnd = new Random(7)
    const atom = (): unknown => [() => rnd.next() * 1000 - 500, () => 'é"\\x', () => null, () => true, () => Math.floor(rnd.next() * 1e6)][Math.floor(rnd.next() * 5)]!()
    const value = (depth: number): unknown => {
      const k = rnd.next()
      if (depth > 2 || k < 0.4) return atom()
      if (k < 0.7) return Array.from({ length: Math.floor(rnd.next() * 4) }, () => value(depth + 1))
      return Object.fromEntries(Array.from({ length: Math.floor(rnd.next() * 4) }, (_, i) => [rnd.next() < 0.3 ? 'predictions' : `k${i}`, value(depth + 1)]))
    }
    let found = 0
    for (let i = 0; i < 5000; i++) {
      const v = rnd.next() < 0.5 ? { predictions: value(0), meta: value(1) } : value(0)
      let text = JSON.stringify(v)
      if (rnd.next() < 0.3) {
        const at = Math.floor(rnd.next() * text.length)
        const edits = [',', ']', '}', '"', ' ', '\n', '1', '']
        text = text.slice(0, at) + edits[Math.floor(rnd.next() * edits.length)]! + text.slice(at + 1)
      }
      const span = autoPredictionSpan(text)
      const want = oracle(text)
      const bytes = Buffer.from(text)
      const byteSpan = autoPredictionSpan(bytes)
      expect(byteSpan === null, text).toBe(span === null)
      if (byteSpan !== null) expect(JSON.parse(bytes.subarray(byteSpan.start, byteSpan.end).toString('utf8')), text).toEqual(want)
      if (span !== null) {
        found++
        expect(JSON.parse(text.slice(span.start, span.end)), text).toEqual(want)
        expect(text.slice(span.start, span.end), text).not.toMatch(/[\r\n]/)
      } else if (want !== undefined && !/[\r\n]/.test(text.trim()) && !text.includes('\\')) {
        // Only line breaks inside and escaped keys may make it decline a readable answer.
        expect.unreachable(`declined ${text}`)
      }
    }
    expect(found).toBeGreaterThan(1000)
  })
})

describe('recording a large answer', () => {
  const recordsOf = async (r: RunningRouter): Promise<{ primary: { prediction: unknown; prediction_error?: string } }[]> => {
    await r.router.flush()
    const out: { primary: { prediction: unknown; prediction_error?: string } }[] = []
    for await (const rec of readRecords(join(dirname(r.configFile), 'predictions.jsonl'))) out.push(rec as never)
    return out
  }
  const serve = async (body: string): Promise<RunningRouter> => {
    const model = await upstream((_req, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(body)
    })
    return router(`recording: { path: ./predictions.jsonl }
models:
  m: { url: "${model.url}" }
routes:
  - name: big
    path: /big
    record: true
    split: [{ model: m, weight: 1 }]
`)
  }
  // About 200 KB, past the size from which answers are read without parsing.
  const numbers = Array.from({ length: 20_000 }, (_, i) => [i / 7, 1.0, -0, 1e21, 2 ** 80][i % 5])
  const cases: [string, string][] = [
    ['an object with predictions', `{"model_version":"3","predictions":${JSON.stringify(numbers)}}\n`],
    ['a bare list', JSON.stringify(numbers)],
    ['a pretty-printed answer (parsed instead)', JSON.stringify({ predictions: numbers.slice(0, 5), pad: 'x'.repeat(100_000) }, null, 2)],
    ['digits JSON.stringify would change', `{"predictions":[1.0,1e21,-0,123456789012345678901234,0.1000],"pad":"${'y'.repeat(100_000)}"}`],
  ]
  it.each(cases)('writes the prediction JSON.parse reads from it: %s', async (_name, body) => {
    const r = await serve(body)
    const res = await fetch(`${r.url}/big`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', 'x-user-id': 'u' } })
    expect(await res.text()).toBe(body)
    const [rec] = await recordsOf(r)
    expect(rec?.primary.prediction_error).toBeUndefined()
    expect(rec?.primary.prediction).toEqual(oracle(body))
  })

  it('writes a large prediction as the model wrote it, not parsed and serialised again', async () => {
    const prediction = '[1.0,1e21,-0,123456789012345678901234,0.1000]'
    const r = await serve(`{"predictions":${prediction},"pad":"${'y'.repeat(100_000)}"}`)
    await fetch(`${r.url}/big`, { method: 'POST', body: '{}', headers: { 'x-user-id': 'u' } })
    await r.router.flush()
    const line = await readFile(join(dirname(r.configFile), 'predictions.jsonl'), 'utf8')
    // JSON.stringify would have written [1,1e+21,0,1.2345678901234568e+23,0.1].
    expect(line).toContain(`"prediction":${prediction},`)
  })

  it('writes a record that is UTF-8 when the answer is not', async () => {
    const model = await upstream((_req, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(Buffer.concat([Buffer.from('{"predictions":["a'), Buffer.from([0xff, 0xfe]), Buffer.from(`b"],"pad":"${'z'.repeat(100_000)}"}`)]))
    })
    const r = await router(`recording: { path: ./predictions.jsonl }
models:
  m: { url: "${model.url}" }
routes:
  - name: big
    path: /big
    record: true
    split: [{ model: m, weight: 1 }]
`)
    await fetch(`${r.url}/big`, { method: 'POST', body: '{}', headers: { 'x-user-id': 'u' } })
    await r.router.flush()
    const bytes = await readFile(join(dirname(r.configFile), 'predictions.jsonl'))
    expect(isUtf8(bytes)).toBe(true)
    expect((JSON.parse(bytes.toString('utf8')) as { primary: { prediction: unknown } }).primary.prediction).toEqual(['a\ufffd\ufffdb'])
  })

  it('still says why an answer that is not JSON has no prediction', async () => {
    const r = await serve(`{"predictions":[1,2,${'3,'.repeat(50_000)}]`)
    await fetch(`${r.url}/big`, { method: 'POST', body: '{}', headers: { 'x-user-id': 'u' } })
    const [rec] = await recordsOf(r)
    expect(rec?.primary.prediction).toBeNull()
    expect(rec?.primary.prediction_error).toMatch(/JSON/)
  })
})
