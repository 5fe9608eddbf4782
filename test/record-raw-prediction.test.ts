import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { extractPrediction, parseModelJson } from '../src/compare/index.js'
import { Random } from '../src/decisions/random.js'
import { readAutoPrediction } from '../src/record/raw-prediction.js'
import { router, upstream } from './helpers/servers.js'

// On a route that records answers and compares none, `prediction: auto` reads a small answer by a
// scan of its bytes instead of JSON.parse + the auto rule + JSON.stringify (issue 22). What it
// gives must be what that parse path writes, byte for byte: the prediction's JSON text, or the
// reason there is none. The oracle is the parse path itself (the record it wrote until now).
function parsePath(body: Buffer): { text: string } | { reason: string } {
  const parsed = parseModelJson(body.toString('utf8'))
  if (!parsed.ok) return { reason: parsed.reason }
  const found = extractPrediction(parsed.value, 'auto')
  return found.ok ? { text: JSON.stringify(found.value) } : { reason: found.reason }
}

/** The scan's answer in the oracle's terms; undefined when it declines (the router then parses). */
function scanned(body: Buffer): { text: string } | { reason: string } | undefined {
  const r = readAutoPrediction(body)
  if (r === undefined) return undefined
  if (typeof r === 'string') return { text: r }
  if (Buffer.isBuffer(r)) return { text: r.toString('utf8') }
  return { reason: r.reason }
}

// Answers the scan must read itself (else the route pays for a parse it need not).
const taken = [
  '{"model":"model_a","prediction":0.96,"n":8}',
  '{"predictions":[0.5,0.25]}',
  '[1,2,3]',
  '{"predictions":[{"label":"cat","score":0.9},{"label":"dog","score":0.1}]}',
  '{"predictions":["é","漢字 🙂","\\"q\\"","a\\\\b","\\n\\t\\r\\b\\f","\\u0001\\u001f"]}',
  '{"predictions":[-1,0,-0.5,123456789012345,0.000001,1.5,100000000000000]}',
  '{"predictions":[true,false,null,{},[],{"__proto__":1}]}',
  '{}',
  '{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7}',
  '{"a":1,"b":2,"a":3}',
  '{"é":1,"漢":2}',
  '{"error":"model overloaded"}',
  '  {"predictions":[1]}\n',
  '{"x":{"y":[1,2]},"predictions":7,"predictions":[8]}',
]

// Answers whose prediction text is not what JSON.stringify writes, or that the scan cannot read
// as the parser does: it may decline them (the parse path runs), never write them differently.
const others = [
  '{"predictions":[1.0,1e3,1E3,-0,0.10,1e-7,0.0000001,12345678901234567890,9007199254740993]}',
  '{"predictions":[1, 2]}',
  '{"predictions":{"b":1,"a":2,"b":3}}',
  '{"predictions":{"2":"x","1":"y","a":"z"}}',
  '{"predictions":["\\u00e9","\\/","\\ud83d\\ude00","\\u001F","\\u0008","\\u000a"]}',
  '{"predictions":["\\ud800"]}',
  '{"outputs":[1]}',
  '{"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1,2]}]}',
  '{"data":{"ndarray":[1]}}',
  '{"data":1}',
  '{"1":1,"a":2}',
  '{"predict\\u0069ons":[7]}',
  '{"a\\u0062":1}',
  '{\n"predictions":[1]}',
  '{"predictions":[NaN,Infinity]}',
  '{"predictions":[1,]}',
  '{"predictions":[1]}{"x":1}',
  '"predictions"',
  '42',
  'null',
  '',
  ' ',
  'not json',
  '\ufeff{"predictions":[1]}',
  '{"predictions":0.1}',
  '{"predictions":-0.000001}',
  '{"predictions":123456789012345678901}',
  '{"predictions":1000000000000000000000}',
]

describe('readAutoPrediction', () => {
  it.each(taken)('reads %j without parsing, as the parse path writes it', (text) => {
    const body = Buffer.from(text)
    expect(scanned(body)).toEqual(parsePath(body))
  })

  it.each(others)('writes %j as the parse path does, or declines it', (text) => {
    const body = Buffer.from(text)
    const r = scanned(body)
    if (r !== undefined) expect(r).toEqual(parsePath(body))
  })

  it('gives the reason of each answer when the keys change from one answer to the next', () => {
    // The reason is kept from one answer to the next while the keys stay the same.
    const answers = ['{"a":1}', '{"b":1}', '{"a":1,"b":2}', '{"a":2}', '{"ab":1}', '{}', '{"a":1,"b":2,"c":3,"d":4,"e":5}', '{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}', '{"a":1}']
    for (const text of [...answers, ...answers.reverse()]) {
      const body = Buffer.from(text)
      expect(scanned(body), text).toEqual(parsePath(body))
    }
  })

  it('decodes bytes that are not UTF-8 as the parse path does', () => {
    for (const bytes of [[0xff], [0xc3], [0xe6, 0xbc], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x99]]) {
      for (const [head, tail] of [['{"predictions":["a', 'b"]}'], ['{"k', '":1}'], ['["', '"]']]) {
        const body = Buffer.concat([Buffer.from(head as string), Buffer.from(bytes), Buffer.from(tail as string)])
        const r = scanned(body)
        if (r !== undefined) expect(r, body.toString('hex')).toEqual(parsePath(body))
      }
    }
  })

  it('agrees with the parse path on 20 000 random answers: numbers of every shape, escapes, nesting, repeated keys', () => {
    const rnd = new Random(22)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd.next() * xs.length)] as T
    // Numbers as models write them: shortest, fixed, exponent, padded, huge, tiny, negative zero.
    const number = (): string => {
      const x = pick([() => rnd.next(), () => rnd.next() * 1e6, () => Math.floor(rnd.next() * 1e4), () => rnd.next() * 1e-5, () => -rnd.next() * 100, () => 2 ** 53 + 1, () => 1e21 * rnd.next() * 10, () => 0])()
      return pick([
        () => String(x), () => x.toFixed(Math.floor(rnd.next() * 8)), () => x.toExponential(Math.floor(rnd.next() * 6)),
        () => x.toPrecision(1 + Math.floor(rnd.next() * 20)), () => '-0', () => '0.0', () => '1.50', () => String(Math.floor(x)),
      ])()
    }
    const string = (): string => pick(['"a"', '"é"', '"🙂"', '"\\""', '"\\\\"', '"\\/"', '"\\n"', '"\\u0001"', '"\\u00e9"', '"\\u0041"', '"x y"', '""', '"\\ud83d\\ude00"'])
    const key = (): string => pick(['"a"', '"b"', '"c"', '"1"', '"é"', '"__proto__"', '"a\\u0062"', '"predictions"', '"outputs"', '"data"', '"label"'])
    const value = (depth: number): string => {
      const k = rnd.next()
      if (depth > 3 || k < 0.35) return pick([number, string, () => pick(['true', 'false', 'null'])])()
      const n = Math.floor(rnd.next() * 4)
      const sp = (): string => (rnd.next() < 0.05 ? ' ' : '')
      if (k < 0.7) return `[${sp()}${Array.from({ length: n }, () => value(depth + 1)).join(`,${sp()}`)}]`
      return `{${Array.from({ length: n }, () => `${key()}:${sp()}${value(depth + 1)}`).join(',')}}`
    }
    let read = 0
    let declined = 0
    for (let i = 0; i < 20_000; i++) {
      const k = rnd.next()
      const text = k < 0.5 ? `{"model":"m","predictions":${value(0)}}` : k < 0.7 ? `[${value(1)},${value(1)}]` : value(0)
      const body = Buffer.from(text)
      const r = scanned(body)
      if (r === undefined) {
        declined++
        continue
      }
      read++
      expect(r, text).toEqual(parsePath(body))
    }
    // Most answers are read (the fast path runs), and some are declined (the corpus reaches it).
    expect(read).toBeGreaterThan(6000)
    expect(declined).toBeGreaterThan(1000)
  })
})

describe('recording small answers on a route without shadows', () => {
  it('writes each prediction (or the reason there is none) as the parse path wrote it', async () => {
    const answers = [...taken, ...others]
    const model = await upstream((req, res: ServerResponse) => {
      const i = (JSON.parse(req.body) as { i: number }).i
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(answers[i])
    })
    const r = await router(`recording: { path: ./predictions.jsonl }
models:
  m: { url: "${model.url}" }
routes:
  - name: rec
    path: /rec
    record: true
    split: [{ model: m, weight: 1 }]
`)
    for (let i = 0; i < answers.length; i++) {
      const res = await fetch(`${r.url}/rec`, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json', 'x-user-id': 'u' } })
      expect(Buffer.from(await res.arrayBuffer()).toString('utf8')).toBe(answers[i])
    }
    await r.router.flush()
    const lines = (await readFile(join(dirname(r.configFile), 'predictions.jsonl'), 'utf8')).trimEnd().split('\n')
    expect(lines).toHaveLength(answers.length)
    for (const line of lines) {
      const rec = JSON.parse(line) as { input: { i: number }; primary: { prediction: unknown; prediction_error?: string } }
      const want = parsePath(Buffer.from(answers[rec.input.i] as string))
      // The primary's text from "prediction" to "error", as JSON.stringify writes the parse path's record.
      if ('text' in want) expect(line, answers[rec.input.i]).toContain(`,"prediction":${want.text},"error":null},"shadows":[]`)
      else expect(line, answers[rec.input.i]).toContain(`,"prediction":null,"error":null,"prediction_error":${JSON.stringify(want.reason)}},"shadows":[]`)
    }
  })
})
