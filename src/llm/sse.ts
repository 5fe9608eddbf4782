// The answer of an OpenAI-compatible server, read as it passes: server-sent events split
// incrementally (an event may be cut at any byte across chunks), each complete event forwarded at
// once, and only what the metrics need read from it. Pure: no I/O, no metrics; the caller reads
// the fields when the answer ends.

const LF = 10
const CR = 13

/** How the answer is read: SSE event by event, or one JSON body held whole (non-streamed). */
export type AnswerMode = 'sse' | 'json'

const DATA = Buffer.from('data:')
const DONE = Buffer.from('[DONE]')
const USAGE_KEY = Buffer.from('"usage":')
const MODEL_KEY = Buffer.from('"model":')
const USAGE_NULL = Buffer.from('"usage":null')
const ERROR_START = Buffer.from('{"error"')
/** Keys whose non-empty string value is generated text (chat, completions, responses, tools, reasoning). */
const TOKEN_KEYS = ['"content":', '"text":', '"delta":', '"arguments":', '"reasoning_content":'].map((k) => Buffer.from(k))

/** What rewriting an answer needs; fixed for one request. */
export interface AnswerOptions {
  readonly mode: AnswerMode
  /** The client's `model`, JSON-encoded, written over every `"model"` value; null: models untouched. */
  readonly model: Buffer | null
  /** include_usage was injected: drop the usage-only chunk and the `"usage":null` the server adds. */
  readonly stripUsage: boolean
  /** limits.max_sse_event_bytes: a larger event (or JSON body) is forwarded as is, unread. */
  readonly maxEventBytes: number
}

/**
 * One answer's reader and rewriter. `push` returns what to send the client now (the chunk itself
 * when nothing in it changed, so the common case copies nothing), `end` what is left at the end.
 */
export class AnswerReader {
  /** performance.now() of the first event carrying generated text; -1 before it. */
  firstTokenAt = -1
  inputTokens = -1
  outputTokens = -1
  events = 0
  sawDone = false
  malformed = 0
  oversized = 0
  errorEvents = 0
  #pending: Buffer[] = []
  #pendingBytes = 0
  /** Inside an oversized event: bytes pass through until its end. */
  #passing = false
  #atLineStart = true
  #lastCR = false
  #now: () => number

  constructor(readonly opts: AnswerOptions, now: () => number = performance.now.bind(performance)) {
    this.#now = now
  }

  /** Takes the next chunk of the answer; returns the bytes the client gets now, or null for none. */
  push(chunk: Buffer): Buffer | null {
    if (this.opts.mode === 'json') return this.#hold(chunk)
    let out: Buffer[] | null = null
    let flushed = 0 // bytes of chunk before this are sent (in out) or belong to events already handled
    let eventStart = 0
    let atLineStart = this.#atLineStart
    let lastCR = this.#lastCR
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number
      if (b !== LF && b !== CR) {
        atLineStart = false
        lastCR = false
        continue
      }
      if (b === LF && lastCR) {
        // The LF of a CRLF: the line already ended at its CR (WHATWG HTML §9.2.5), but the pair
        // belongs to the event it ends, so an event ending in CRLF CRLF ends after this byte.
        lastCR = false
        if (!this.#endedAtCR) continue
        this.#endedAtCR = false
      } else {
        lastCR = b === CR
        if (!atLineStart) {
          atLineStart = true
          continue
        }
        // A blank line: the event ends here (with CRLF, after the LF that may follow).
        if (b === CR && i + 1 < chunk.length && chunk[i + 1] === LF) {
          this.#endedAtCR = true
          continue
        }
      }
      const end = i + 1
      if (this.#passing) {
        this.#passing = false
      } else {
        const held = this.#pendingBytes > 0
        const ev = held ? this.#takePending(chunk.subarray(eventStart, end)) : chunk.subarray(eventStart, end)
        const sent = this.#event(ev)
        // Unchanged events of this chunk go out as the chunk's own bytes, uncopied.
        if (held || sent !== ev) {
          out ??= []
          if (eventStart > flushed) out.push(chunk.subarray(flushed, eventStart))
          if (sent !== null) out.push(sent)
          flushed = end
        }
      }
      eventStart = end
      atLineStart = true
    }
    this.#atLineStart = atLineStart
    this.#lastCR = lastCR
    // What follows the last complete event is the start of the next one.
    if (eventStart < chunk.length) {
      const rest = chunk.subarray(eventStart)
      if (this.#passing) {
        out ??= []
        if (eventStart > flushed) out.push(chunk.subarray(flushed, eventStart))
        out.push(rest)
        flushed = chunk.length
      } else {
        this.#pending.push(rest)
        this.#pendingBytes += rest.length
        if (this.#pendingBytes > this.opts.maxEventBytes) {
          // Too large to hold: what is held goes now, the rest of the event follows unread.
          this.oversized++
          this.#passing = true
          out ??= []
          if (eventStart > flushed) out.push(chunk.subarray(flushed, eventStart))
          for (const p of this.#pending) out.push(p)
          this.#pending = []
          this.#pendingBytes = 0
          flushed = chunk.length
        }
      }
    }
    if (out === null) return eventStart === 0 ? null : eventStart === chunk.length ? chunk : chunk.subarray(0, eventStart)
    if (flushed < eventStart) out.push(chunk.subarray(flushed, eventStart))
    return out.length === 0 ? null : out.length === 1 ? out[0] as Buffer : Buffer.concat(out)
  }

  #endedAtCR = false

  /** The end of the answer: whatever is held (an event without its blank line, a JSON body) as it is read. */
  end(): Buffer | null {
    if (this.#pendingBytes === 0) return null
    const held = this.#takePending(null)
    if (this.opts.mode === 'json') return this.#json(held)
    // An unterminated last event is still read (for usage) and sent on, rewritten like the others.
    return this.#event(held)
  }

  #takePending(tail: Buffer | null): Buffer {
    if (tail !== null) this.#pending.push(tail)
    const all = this.#pending.length === 1 ? this.#pending[0] as Buffer : Buffer.concat(this.#pending)
    this.#pending = []
    this.#pendingBytes = 0
    return all
  }

  /** A non-streamed answer is held whole (the client needs all of it anyway), up to maxEventBytes. */
  #hold(chunk: Buffer): Buffer | null {
    if (this.#passing) return chunk
    this.#pending.push(chunk)
    this.#pendingBytes += chunk.length
    if (this.#pendingBytes <= this.opts.maxEventBytes) return null
    this.oversized++
    this.#passing = true
    return this.#takePending(null)
  }

  #json(body: Buffer): Buffer {
    this.events++
    if (body.indexOf(USAGE_KEY) >= 0) this.#readUsage(body, 0, body.length)
    return this.opts.model === null ? body : rewriteModel(body, this.opts.model)
  }

  /** One complete event: read, and returned as the client gets it (null: dropped). */
  #event(ev: Buffer): Buffer | null {
    // Comments (keep-alives, ": ping") and events without data pass as they are.
    const at = dataAt(ev)
    if (at < 0) return ev
    let start = at + DATA.length
    if (ev[start] === 32) start++
    let stop = start
    while (stop < ev.length && ev[stop] !== LF && ev[stop] !== CR) stop++
    if (stop - start === DONE.length && ev.indexOf(DONE, start) === start) {
      this.sawDone = true
      return ev
    }
    if (ev[start] !== 123 /* { */) {
      this.malformed++
      return ev
    }
    this.events++
    if (this.firstTokenAt < 0 && hasToken(ev, start)) this.firstTokenAt = this.#now()
    if (startsAt(ev, start, ERROR_START)) this.errorEvents++
    const usage = ev.indexOf(USAGE_KEY, start)
    if (usage >= 0 && valueStart(ev, usage + USAGE_KEY.length) === 123) {
      const parsed = this.#readUsage(ev, start, stop)
      // The usage-only chunk include_usage adds: `choices` empty (OpenAI chat and completions).
      if (this.opts.stripUsage && parsed !== null && Array.isArray(parsed.choices) && parsed.choices.length === 0) return null
    }
    let out = ev
    if (this.opts.stripUsage && out.indexOf(USAGE_NULL, start) >= 0) out = dropUsageNull(out)
    if (this.opts.model !== null) out = rewriteModel(out, this.opts.model)
    return out
  }

  /** Parses the payload once it is known to carry usage; counts it malformed if it is not JSON. */
  #readUsage(buf: Buffer, start: number, stop: number): { choices?: unknown } | null {
    let parsed: unknown
    try {
      parsed = JSON.parse(buf.toString('utf8', start, stop))
    } catch {
      this.malformed++
      return null
    }
    if (parsed === null || typeof parsed !== 'object') return null
    const o = parsed as { usage?: unknown; response?: { usage?: unknown }; choices?: unknown }
    // Chat/completions put usage at the top; the Responses API in response.completed's response.
    const u = (o.usage ?? o.response?.usage) as Record<string, unknown> | null | undefined
    if (u !== null && typeof u === 'object') {
      const input = u.prompt_tokens ?? u.input_tokens
      const output = u.completion_tokens ?? u.output_tokens
      if (typeof input === 'number' && Number.isFinite(input) && input >= 0) this.inputTokens = input
      if (typeof output === 'number' && Number.isFinite(output) && output >= 0) this.outputTokens = output
    }
    return o
  }
}

/** Where the event's first `data:` line starts, or -1 (a comment, or a field other than data). */
function dataAt(ev: Buffer): number {
  if (ev.indexOf(DATA) === 0) return 0
  if (ev[0] === 58 /* : */ && ev.indexOf(DATA) < 0) return -1
  // `event: NAME` first (the Responses API): data on a later line.
  const i = ev.indexOf('\ndata:')
  return i < 0 ? -1 : i + 1
}

/** Whether `buf` holds `what` at `at` (a compare of a few bytes, not a scan of the event). */
function startsAt(buf: Buffer, at: number, what: Buffer): boolean {
  if (buf.length - at < what.length) return false
  for (let i = 0; i < what.length; i++) if (buf[at + i] !== what[i]) return false
  return true
}

/** The first byte of a JSON value after a key's colon, skipping whitespace. */
function valueStart(buf: Buffer, i: number): number {
  while (i < buf.length) {
    const c = buf[i] as number
    if (c !== 32 && c !== 9) return c
    i++
  }
  return -1
}

/** Whether the payload carries generated text: a token key whose value is a non-empty string. */
function hasToken(ev: Buffer, from: number): boolean {
  for (const key of TOKEN_KEYS) {
    let i = ev.indexOf(key, from)
    while (i >= 0) {
      let j = i + key.length
      while (ev[j] === 32) j++
      if (ev[j] === 34 /* " */ && ev[j + 1] !== 34) return true
      i = ev.indexOf(key, j)
    }
  }
  return false
}

/**
 * Every `"model": "…"` string value written as the client's model name. A key in raw JSON bytes is
 * never inside a string (quotes there are escaped), so this cannot touch generated text.
 */
export function rewriteModel(buf: Buffer, model: Buffer): Buffer {
  let i = buf.indexOf(MODEL_KEY)
  if (i < 0) return buf
  const parts: Buffer[] = []
  let from = 0
  while (i >= 0) {
    let j = i + MODEL_KEY.length
    while (buf[j] === 32) j++
    if (buf[j] !== 34) {
      i = buf.indexOf(MODEL_KEY, j)
      continue
    }
    let k = j + 1
    while (k < buf.length && buf[k] !== 34) k += buf[k] === 92 /* \ */ ? 2 : 1
    if (k >= buf.length) break
    parts.push(buf.subarray(from, j), model)
    from = k + 1
    i = buf.indexOf(MODEL_KEY, from)
  }
  if (parts.length === 0) return buf
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}

/** Drops the `"usage":null` members an injected include_usage adds to every chunk. */
function dropUsageNull(buf: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  let i = buf.indexOf(USAGE_NULL)
  while (i >= 0) {
    // With its comma: the one before it, or else the one after it.
    const before = buf[i - 1] === 44
    const after = !before && buf[i + USAGE_NULL.length] === 44
    parts.push(buf.subarray(from, before ? i - 1 : i))
    from = i + USAGE_NULL.length + (after ? 1 : 0)
    i = buf.indexOf(USAGE_NULL, from)
  }
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}
