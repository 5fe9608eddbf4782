// A fake OpenAI-compatible server that writes the wire format as OpenAI's API does: `data: ` lines,
// blank-line separators, `: keep-alive` comments, the usage-only chunk (with `"usage":null` on every
// other chunk) when stream_options.include_usage is set, and `[DONE]`. llama.cpp's server differs
// (no keep-alive comments, no `"usage":null`, its own key order and `timings`): its recorded bytes
// (test/fixtures/llamacpp/wire.json) are replayed as they were by startReplayOpenAi below.
import type { ServerResponse } from 'node:http'
import { startUpstream, type Received, type Upstream } from './upstream.js'

export interface FakeAnswer {
  readonly tokens: readonly string[]
  readonly promptTokens: number
  /** Milliseconds before the first token (the model's own time to first token). */
  readonly firstTokenDelayMs?: number
  /** What to do after the tokens: finish normally, stop sending (stall), close without [DONE], or send an error event. */
  readonly ending?: 'done' | 'stall' | 'no_done' | 'error'
  /** Each event split into single-byte writes (flushed one by one). */
  readonly byteByByte?: boolean
}

/** The SSE events (each with its blank line) the fake sends for a request body, in order. */
export function renderStream(model: string, answer: FakeAnswer, includeUsage: boolean): { head: string[]; tail: string[] } {
  const usageNull = includeUsage ? ',"usage":null' : ''
  const chunk = (delta: string, finish: string | null): string =>
    `data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1733540000,"model":${JSON.stringify(model)},"system_fingerprint":"b1","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : JSON.stringify(finish)}}]${usageNull}}\n\n`
  const head = [chunk('{"role":"assistant","content":""}', null), ': keep-alive\n\n']
  const tail = answer.tokens.map((t) => chunk(JSON.stringify({ content: t }), null))
  if (answer.ending === 'error') {
    tail.push('data: {"error":{"message":"the model crashed","type":"server_error","code":500}}\n\n')
    return { head, tail }
  }
  tail.push(chunk('{}', 'stop'))
  if (includeUsage) {
    tail.push(`data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1733540000,"model":${JSON.stringify(model)},"system_fingerprint":"b1","choices":[],"usage":{"prompt_tokens":${answer.promptTokens},"completion_tokens":${answer.tokens.length},"total_tokens":${answer.promptTokens + answer.tokens.length}}}\n\n`)
  }
  if (answer.ending !== 'no_done' && answer.ending !== 'stall') tail.push('data: [DONE]\n\n')
  return { head, tail }
}

/** The non-streamed answer, as OpenAI writes it (compact JSON). */
export function renderJson(model: string, answer: FakeAnswer): string {
  return JSON.stringify({
    id: 'chatcmpl-7', object: 'chat.completion', created: 1733540000, model,
    choices: [{ index: 0, message: { role: 'assistant', content: answer.tokens.join('') }, finish_reason: 'stop' }],
    usage: { prompt_tokens: answer.promptTokens, completion_tokens: answer.tokens.length, total_tokens: answer.promptTokens + answer.tokens.length },
  })
}

export interface FakeOpenAi extends Upstream {
  /** Everything written on each answer, as sent. */
  readonly sent: string[]
}

/** Starts the fake; `answerFor` picks the answer from the request it gets. */
export async function startFakeOpenAi(answerFor: (req: Received) => FakeAnswer): Promise<FakeOpenAi> {
  const sent: string[] = []
  const up = await startUpstream((req, res) => {
    const body = JSON.parse(req.body) as { model: string; stream?: boolean; stream_options?: { include_usage?: boolean } }
    const answer = answerFor(req)
    if (body.stream !== true) {
      const text = renderJson(body.model, answer)
      sent.push(text)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
      return
    }
    const { head, tail } = renderStream(body.model, answer, body.stream_options?.include_usage === true)
    let log = ''
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const write = (events: string[]): void => {
      for (const e of events) {
        log += e
        if (answer.byteByByte === true) for (const b of Buffer.from(e)) res.write(Buffer.of(b))
        else res.write(e)
      }
    }
    write(head)
    const rest = (): void => {
      write(tail)
      sent.push(log)
      if (answer.ending === 'stall') return // keeps the connection open, silent
      res.end()
    }
    if ((answer.firstTokenDelayMs ?? 0) > 0) setTimeout(rest, answer.firstTokenDelayMs)
    else rest()
  })
  return Object.assign(up, { sent })
}

export type { ServerResponse }

/**
 * A judge model's handler (for startUpstream): it reads the pairwise prompt the router sends, gives
 * `pick` the text between "Answer A:" and "Answer B:", and answers a non-streamed chat completion
 * whose content is what `pick` returns ('A', 'B', 'tie', …), with the usage given.
 */
export function fakeJudge(pick: (answerA: string) => string, promptTokens: number): (req: Received, res: ServerResponse) => void {
  return (req, res) => {
    const prompt = (JSON.parse(req.body) as { messages: { content: string }[] }).messages[0]?.content ?? ''
    const content = pick(prompt.slice(prompt.indexOf('Answer A:'), prompt.indexOf('Answer B:')))
    const body = JSON.stringify({ id: 'j', object: 'chat.completion', model: 'judge', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage: { prompt_tokens: promptTokens, completion_tokens: 1, total_tokens: promptTokens + 1 } })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
}

/** One exchange recorded from llama.cpp's server (test/fixtures/llamacpp/wire.json). */
export interface WireExchange {
  readonly path: string
  readonly request: Record<string, unknown>
  readonly status: number
  /** The answer's header lines as the server wrote them: name, value, name, value, ... */
  readonly rawHeaders: readonly string[]
  /** The answer body as it arrived, read by read (transfer coding removed). */
  readonly chunks: readonly string[]
}

export interface Wire {
  readonly recorded_from: string
  readonly exchanges: Record<string, WireExchange>
}

const SAY = [{ role: 'user', content: 'Say something.' }]

/** The requests test/fixtures/llamacpp/wire.json holds llama.cpp's answers to (model tiny-19). */
export const WIRE_CASES: Record<string, { path: string; request: Record<string, unknown> }> = {
  chat_stream_usage: {
    path: '/v1/chat/completions',
    request: { model: 'tiny-19', messages: SAY, max_tokens: 6, temperature: 0, cache_prompt: false, ignore_eos: true, stream: true, stream_options: { include_usage: true } },
  },
  chat_stream: {
    path: '/v1/chat/completions',
    request: { model: 'tiny-19', messages: SAY, max_tokens: 6, temperature: 0, cache_prompt: false, ignore_eos: true, stream: true },
  },
  chat_json: {
    path: '/v1/chat/completions',
    request: { model: 'tiny-19', messages: SAY, max_tokens: 6, temperature: 0, cache_prompt: false, ignore_eos: true },
  },
  completions_stream_usage: {
    path: '/v1/completions',
    request: { model: 'tiny-19', prompt: 'Say something.', max_tokens: 6, temperature: 0, cache_prompt: false, ignore_eos: true, stream: true, stream_options: { include_usage: true } },
  },
  // A grammar the tiny vocabulary cannot finish ("é" is no token of it): llama.cpp streams "a",
  // "b", then fails the task and ends the stream with an error event, without [DONE].
  chat_stream_error: {
    path: '/v1/chat/completions',
    request: { model: 'tiny-19', messages: SAY, max_tokens: 6, temperature: 0, cache_prompt: false, grammar: 'root ::= "ab" "é"', stream: true, stream_options: { include_usage: true } },
  },
  // A prompt longer than a slot's context: llama.cpp refuses it before it streams anything.
  chat_stream_too_long: {
    path: '/v1/chat/completions',
    request: { model: 'tiny-19', messages: [{ role: 'user', content: 'x'.repeat(5000) }], max_tokens: 6, stream: true },
  },
}

/** Headers node writes itself (framing and connection), left out of a replay. */
const FRAMING = new Set(['transfer-encoding', 'keep-alive', 'connection'])

/**
 * A fake that answers every request with one recorded exchange, replayed byte for byte: the same
 * status, header lines and body, written read by read as llama.cpp's server sent it (or one byte a
 * write, so events arrive cut at every byte boundary).
 */
export async function startReplayOpenAi(ex: WireExchange, opts: { byteByByte?: boolean } = {}): Promise<Upstream> {
  return startUpstream((_req, res) => {
    const headers: [string, string][] = []
    for (let i = 0; i + 1 < ex.rawHeaders.length; i += 2) {
      const name = ex.rawHeaders[i] as string
      if (!FRAMING.has(name.toLowerCase())) headers.push([name, ex.rawHeaders[i + 1] as string])
    }
    res.writeHead(ex.status, headers.flat())
    for (const c of ex.chunks) {
      if (opts.byteByByte !== true) res.write(c)
      else for (const b of Buffer.from(c)) res.write(Buffer.of(b)) // every event cut at every byte
    }
    res.end()
  })
}
