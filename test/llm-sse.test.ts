// The OpenAI answer reader on its own: events split at any byte, rewritten only where it must,
// and every odd input a counted outcome with the bytes passed on.
import { describe, expect, it } from 'vitest'
import { AnswerReader, rewriteModel, type AnswerOptions } from '../src/llm/sse.js'
import { prepareRequest } from '../src/llm/request.js'
import { renderJson, renderStream } from './helpers/openai.js'

const answer = { tokens: ['Hel', 'lo', ' "model":"x" \\n\n\n'], promptTokens: 7 }
const plain: AnswerOptions = { mode: 'sse', model: null, stripUsage: false, maxEventBytes: 1 << 20 }

function run(reader: AnswerReader, pieces: readonly Buffer[]): string {
  const out: Buffer[] = []
  for (const p of pieces) {
    const b = reader.push(p)
    if (b !== null) out.push(b)
  }
  const tail = reader.end()
  if (tail !== null) out.push(tail)
  return Buffer.concat(out).toString('utf8')
}

function cut(text: string, at: number[]): Buffer[] {
  const b = Buffer.from(text)
  const out: Buffer[] = []
  let from = 0
  for (const a of at) {
    out.push(b.subarray(from, a))
    from = a
  }
  out.push(b.subarray(from))
  return out
}

describe('AnswerReader', () => {
  const { head, tail } = renderStream('up-model', answer, true)
  const wire = [...head, ...tail].join('')
  const { head: h0, tail: t0 } = renderStream('client-model', answer, false)
  const withoutUsage = [...h0, ...t0].join('')

  it('passes a stream through unchanged when nothing is rewritten, and reads its usage', () => {
    const r = new AnswerReader(plain)
    expect(run(r, [Buffer.from(wire)])).toBe(wire)
    expect([r.inputTokens, r.outputTokens, r.sawDone, r.malformed]).toEqual([7, 3, true, 0])
  })

  it('hands back the chunk itself when it holds whole events and nothing changes (no copy)', () => {
    const r = new AnswerReader(plain)
    const chunk = Buffer.from(head[0] as string)
    expect(r.push(chunk)).toBe(chunk)
  })

  it('gives the client what it would have got without the injected include_usage, at every byte boundary', () => {
    const bytes = Buffer.byteLength(wire)
    for (let at = 1; at < bytes; at++) {
      const r = new AnswerReader({ mode: 'sse', model: Buffer.from('"client-model"'), stripUsage: true, maxEventBytes: 1 << 20 })
      const got = run(r, cut(wire, [at]))
      if (got !== withoutUsage) throw new Error(`split at byte ${at}: ${JSON.stringify(got)}`)
      expect([r.inputTokens, r.outputTokens, r.sawDone]).toEqual([7, 3, true])
    }
  })

  it('reads a stream that arrives one byte at a time', () => {
    const r = new AnswerReader({ mode: 'sse', model: Buffer.from('"client-model"'), stripUsage: true, maxEventBytes: 1 << 20 })
    const b = Buffer.from(wire)
    expect(run(r, [...b].map((x) => Buffer.of(x)))).toBe(withoutUsage)
    expect(r.outputTokens).toBe(3)
  })

  it('times the first event that carries text, not the role-only one or a keep-alive', () => {
    let t = 0
    const r = new AnswerReader(plain, () => t)
    t = 5
    r.push(Buffer.from((head[0] as string) + (head[1] as string)))
    expect(r.firstTokenAt).toBe(-1)
    t = 9
    r.push(Buffer.from(tail[0] as string))
    t = 12
    r.push(Buffer.from(tail[1] as string))
    expect(r.firstTokenAt).toBe(9)
  })

  it('splits CRLF-separated events', () => {
    const crlf = wire.replace(/\n/g, '\r\n')
    const r = new AnswerReader({ mode: 'sse', model: null, stripUsage: true, maxEventBytes: 1 << 20 })
    const got = run(r, cut(crlf, [3, 200, 201, 202]))
    expect(r.outputTokens).toBe(3)
    expect(got).not.toContain('"choices":[]')
    expect(got).not.toContain('"usage":null')
  })

  it('counts a malformed event and passes it on as it came', () => {
    const bad = 'data: {"id":1,"usage":{"prompt_tokens":\n\ndata: not json\n\n'
    const r = new AnswerReader(plain)
    expect(run(r, [Buffer.from(bad)])).toBe(bad)
    expect(r.malformed).toBe(2)
  })

  it('passes a 10 MB event through unread (counted oversized) and reads the events after it', () => {
    const big = `data: {"choices":[{"delta":{"content":"${'x'.repeat(10 * 1024 * 1024)}"}}],"model":"up"}\n\n`
    const text = big + (tail.at(-2) as string) + 'data: [DONE]\n\n'
    const pieces = cut(text, [1000, 65536, 5_000_000, big.length - 1, big.length + 10])
    const r = new AnswerReader({ mode: 'sse', model: Buffer.from('"c"'), stripUsage: false, maxEventBytes: 1 << 20 })
    const out = run(r, pieces)
    expect(out.length).toBe(text.length - 'up-model'.length + 'c'.length) // the usage chunk after it is rewritten
    expect(out.slice(0, big.length)).toBe(big)
    expect([r.oversized, r.outputTokens, r.sawDone]).toEqual([1, 3, true])
  })

  it('reads and sends on a last event that has no blank line after it (closed early)', () => {
    const text = (head[0] as string) + 'data: {"choices":[{"delta":{"content":"a"}}],"model":"up"}'
    const r = new AnswerReader({ mode: 'sse', model: Buffer.from('"c"'), stripUsage: false, maxEventBytes: 1 << 20 })
    const out = run(r, [Buffer.from(text)])
    expect(out).toBe(text.replaceAll('"model":"up-model"', '"model":"c"').replace('"model":"up"', '"model":"c"'))
    expect(r.sawDone).toBe(false)
  })

  it('counts an error event mid-stream', () => {
    const { head: eh, tail: et } = renderStream('m', { ...answer, ending: 'error' }, false)
    const r = new AnswerReader(plain)
    run(r, [Buffer.from([...eh, ...et].join(''))])
    expect([r.errorEvents, r.sawDone]).toEqual([1, false])
  })

  it('holds a non-streamed answer whole, rewrites its model and reads its usage', () => {
    const json = renderJson('up-model', answer)
    const r = new AnswerReader({ mode: 'json', model: Buffer.from('"client-model"'), stripUsage: false, maxEventBytes: 1 << 20 })
    expect(run(r, cut(json, [10, 40]))).toBe(renderJson('client-model', answer))
    expect([r.inputTokens, r.outputTokens]).toEqual([7, 3])
  })
})

describe('rewriteModel', () => {
  it.each([
    ['{"model":"a","x":1}', '{"model":"CLIENT","x":1}'],
    ['{"model": "a\\"b", "response":{"model":"a"}}', '{"model": "CLIENT", "response":{"model":"CLIENT"}}'],
    ['{"content":"say \\"model\\":\\"a\\""}', '{"content":"say \\"model\\":\\"a\\""}'],
    ['{"model":null}', '{"model":null}'],
  ])('%s', (input, expected) => {
    expect(rewriteModel(Buffer.from(input), Buffer.from('"CLIENT"')).toString()).toBe(expected)
  })
})

describe('prepareRequest', () => {
  const view = (body: unknown) => ({ raw: Buffer.from(JSON.stringify(body)), parsed: body, state: 'json' as const, truncated: false })

  it('sends the raw body when nothing needs changing', () => {
    const v = view({ model: 'm', messages: [] })
    expect(prepareRequest(v, null, '/v1/chat/completions')?.body).toBe(v.raw)
  })

  it('renames the model and asks for usage on a streamed chat request, keeping other stream options', () => {
    const r = prepareRequest(view({ model: 'chat', stream: true, stream_options: { x: 1 } }), 'llama-3', '/v1/chat/completions')
    expect(JSON.parse(r?.body.toString() ?? '')).toEqual({ model: 'llama-3', stream: true, stream_options: { x: 1, include_usage: true } })
    expect([r?.clientModel?.toString(), r?.injected]).toEqual(['"chat"', true])
  })

  it('does not inject on the Responses API, nor when the client asked for usage itself', () => {
    expect(prepareRequest(view({ model: 'm', stream: true }), null, '/v1/responses')?.injected).toBe(false)
    expect(prepareRequest(view({ model: 'm', stream: true, stream_options: { include_usage: true } }), null, '/v1/chat/completions')?.injected).toBe(false)
  })
})
