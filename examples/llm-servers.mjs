// Two tiny OpenAI-compatible chat models and a judge, in-process, for the demo's LLM part. They
// speak the wire format of OpenAI's and llama.cpp's servers: POST .../chat/completions, streamed
// as server-sent events (`data: {chunk}` lines, a role-only first chunk, one chunk per token, a
// usage-only chunk when stream_options.include_usage is set, `data: [DONE]`) or answered whole as
// JSON, with usage. No model weights: each answers from a small table of facts, token by token.
import { createServer } from 'node:http'

const CAPITALS = {
  France: 'Paris', Japan: 'Tokyo', Kenya: 'Nairobi', Peru: 'Lima', Canada: 'Ottawa', Norway: 'Oslo',
  Egypt: 'Cairo', Chile: 'Santiago', Vietnam: 'Hanoi', Ghana: 'Accra', Poland: 'Warsaw', Nepal: 'Kathmandu',
}
export const COUNTRIES = Object.keys(CAPITALS)

/** The chat models' styles: v1 answers in a word, v2 in a sentence that says why. */
export const STYLES = {
  terse: (country) => `${CAPITALS[country] ?? 'I do not know'}.`,
  full: (country) => CAPITALS[country] === undefined ? 'I do not know that country.' : `The capital of ${country} is ${CAPITALS[country]}, its largest city and seat of government.`,
}

function countryOf(text) {
  return COUNTRIES.find((c) => text.includes(c)) ?? ''
}

function lastUserMessage(body) {
  const messages = Array.isArray(body.messages) ? body.messages : []
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === 'user') return String(messages[i].content ?? '')
  return String(body.prompt ?? '')
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms))

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      const { port: p } = server.address()
      resolve({ url: `http://${host}:${p}`, close: () => new Promise((res) => { server.closeAllConnections?.(); server.close(() => res()) }) })
    })
  })
}

async function readJson(req) {
  const chunks = []
  for await (const c of req) chunks.push(c)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    return null
  }
}

/**
 * A chat model: `style` turns the question into an answer, sent one word a token after
 * `firstTokenMs`, then every `tokenMs`.
 */
export function startChatModel({ style, port = 0, host = '127.0.0.1', firstTokenMs = 30, tokenMs = 4 }) {
  const server = createServer(async (req, res) => {
    const body = await readJson(req)
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions') || body === null) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end('{"error":{"message":"POST /v1/chat/completions only","type":"invalid_request_error"}}')
      return
    }
    const model = String(body.model ?? 'tiny')
    const question = lastUserMessage(body)
    const tokens = STYLES[style](countryOf(question)).split(/(?<= )/)
    const usage = { prompt_tokens: 8 + question.split(/\s+/).length, completion_tokens: tokens.length, total_tokens: 0 }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    const id = `chatcmpl-${Math.random().toString(36).slice(2, 10)}`
    const created = Math.floor(Date.now() / 1000)
    if (body.stream !== true) {
      await sleep(firstTokenMs + tokens.length * tokenMs)
      const text = JSON.stringify({ id, object: 'chat.completion', created, model, choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: 'stop' }], usage })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
      return
    }
    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (delta, finish) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) })}\n\n`
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write(chunk({ role: 'assistant', content: '' }, null))
    await sleep(firstTokenMs)
    for (const [i, t] of tokens.entries()) {
      if (i > 0) await sleep(tokenMs)
      res.write(chunk({ content: t }, null))
    }
    res.write(chunk({}, 'stop'))
    if (includeUsage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`)
    res.end('data: [DONE]\n\n')
  })
  return listen(server, port, host)
}

/** A number in [0, 1) fixed by the text: the judge's taste does not depend on timing. */
function unit(text) {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0
  return h / 4294967296
}

/**
 * The judge: reads the prompt it is sent (the request and answers A and B) and answers one word.
 * It likes an answer that says why: it picks the longer one for 70 % of questions, calls 10 % a
 * tie and the shorter one better for the rest, whichever position each answer has.
 */
export function startJudge({ port = 0, host = '127.0.0.1' } = {}) {
  const server = createServer(async (req, res) => {
    const body = await readJson(req)
    const prompt = lastUserMessage(body ?? {})
    const a = /Answer A:\n([\s\S]*?)\n\nAnswer B:/.exec(prompt)?.[1] ?? ''
    const b = /Answer B:\n([\s\S]*?)\n\nReply/.exec(prompt)?.[1] ?? ''
    const u = unit(/Request:\n([\s\S]*?)\n\nAnswer A:/.exec(prompt)?.[1] ?? prompt)
    const longer = a.length >= b.length ? 'A' : 'B'
    const shorter = longer === 'A' ? 'B' : 'A'
    const verdict = u < 0.7 ? longer : u < 0.8 ? 'TIE' : shorter
    const text = JSON.stringify({
      id: 'judge-1', object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: String(body?.model ?? 'judge'),
      choices: [{ index: 0, message: { role: 'assistant', content: verdict }, finish_reason: 'stop' }],
      usage: { prompt_tokens: Math.ceil(prompt.length / 4), completion_tokens: 1, total_tokens: Math.ceil(prompt.length / 4) + 1 },
    })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  })
  return listen(server, port, host)
}
