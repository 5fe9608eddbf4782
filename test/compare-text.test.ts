// The text comparison cascade and the answer assembler: golden rows, each naming the layer that
// must decide, and answers assembled from the wire formats of the three OpenAI APIs.
import { describe, expect, it } from 'vitest'
import { compareText, type TextAnswer } from '../src/compare/index.js'
import { assembleAnswer } from '../src/llm/assemble.js'
import { renderJson, renderStream } from './helpers/openai.js'

const t = (text: string, toolCalls: TextAnswer['toolCalls'] = []): TextAnswer => ({ text, toolCalls })
const call = (name: string, args: string) => ({ name, arguments: args })

describe('compareText', () => {
  it.each([
    ['identical text', t('Paris.'), t('Paris.'), true, 'exact'],
    ['case and spacing', t('The answer is  Paris.\n'), t('the answer is paris.'), true, 'normalised'],
    ['full-width forms (NFKC)', t('ＰＡＲＩＳ'), t('paris'), true, 'normalised'],
    ['JSON with keys reordered', t('{"city":"Paris","n":1}'), t('{ "n": 1.0, "city": "Paris" }'), true, 'structured'],
    ['fenced JSON against bare JSON', t('```json\n{"a":[1,2]}\n```'), t('{"a":[1,2]}'), true, 'structured'],
    ['JSON that differs', t('{"a":1}'), t('{"a":2}'), false, 'structured'],
    ['the same tool call, arguments reordered', t('', [call('get_weather', '{"city":"Paris","unit":"c"}')]), t('', [call('get_weather', '{"unit":"c","city":"Paris"}')]), true, 'structured'],
    ['another tool', t('', [call('get_weather', '{}')]), t('', [call('get_time', '{}')]), false, 'structured'],
    ['a tool call against text', t('', [call('f', '{}')]), t('I cannot.'), false, 'structured'],
    ['different prose', t('Paris is the capital.'), t('The capital is Paris.'), null, 'undecided'],
    ['a number in prose is not JSON', t('42'), t('42.0'), null, 'undecided'],
  ])('%s', (_name, a, b, agree, layer) => {
    expect(compareText(a, b)).toEqual({ agree, layer })
    expect(compareText(b, a)).toEqual({ agree, layer })
  })
})

describe('assembleAnswer', () => {
  const answer = { tokens: ['Hel', 'lo', ' world'], promptTokens: 9 }

  it('assembles a streamed chat answer and its usage chunk', () => {
    const { head, tail } = renderStream('m', answer, true)
    expect(assembleAnswer(Buffer.from([...head, ...tail].join('')))).toEqual({ text: 'Hello world', toolCalls: [], inputTokens: 9, outputTokens: 3 })
  })

  it('assembles a non-streamed chat answer', () => {
    expect(assembleAnswer(Buffer.from(renderJson('m', answer)))).toEqual({ text: 'Hello world', toolCalls: [], inputTokens: 9, outputTokens: 3 })
  })

  it('assembles streamed tool calls by index', () => {
    const ev = (d: unknown) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: d }] })}\n\n`
    const body = ev({ role: 'assistant', tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }) +
      ev({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }) + ev({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }) + 'data: [DONE]\n\n'
    expect(assembleAnswer(Buffer.from(body))?.toolCalls).toEqual([{ name: 'get_weather', arguments: '{"city":"Paris"}' }])
  })

  it('assembles a streamed Responses API answer', () => {
    const body = 'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n' +
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n' +
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":" there"}\n\n' +
      'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":2}}}\n\n'
    expect(assembleAnswer(Buffer.from(body))).toEqual({ text: 'Hi there', toolCalls: [], inputTokens: 4, outputTokens: 2 })
  })

  it('refuses what is neither SSE nor JSON', () => {
    expect(assembleAnswer(Buffer.from('<html>'))).toBeNull()
  })
})
