// gRPC over HTTP/2 as the router needs it: status codes, timeouts, the 5-byte message prefix and
// the one protobuf field a route reads or rewrites (the model's name). Pure: no I/O, no state but
// the scanner's own. Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

/** gRPC status codes by number (doc/statuscodes.md); the `grpc_status` label of modelsplit_grpc_calls_total. */
export const STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
  'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
] as const

export const OK = 0
export const CANCELLED = 1
export const UNKNOWN = 2
export const INVALID_ARGUMENT = 3
export const DEADLINE_EXCEEDED = 4
export const RESOURCE_EXHAUSTED = 8
export const UNIMPLEMENTED = 12
export const INTERNAL = 13
export const UNAVAILABLE = 14

/**
 * The HTTP status a gRPC status counts as in modelsplit_requests_total, so error rates, rollout
 * gates and the console read gRPC routes unchanged. The model's failures (UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, DATA_LOSS) are 5xx; the caller's
 * mistakes are 4xx (grpc-gateway's table, but RESOURCE_EXHAUSTED is the model's 503, not a 429).
 */
const HTTP_OF_STATUS = [200, 499, 500, 400, 504, 404, 409, 403, 503, 400, 409, 400, 501, 500, 503, 500, 401]

/** The HTTP code a gRPC status counts as (500 for a code outside 0..16). */
export function httpCodeOf(status: number): number {
  return HTTP_OF_STATUS[status] ?? 500
}

/** The label for a status number: its name, or the number for one outside the spec. */
export function statusName(status: number): string {
  return STATUS_NAMES[status] ?? String(status)
}

/**
 * The gRPC status of a response that is not HTTP 200 (PROTOCOL-HTTP2.md, "HTTP to gRPC Status
 * Code Mapping", as clients apply it).
 */
export function statusOfHttp(code: number): number {
  switch (code) {
    case 400: return INTERNAL
    case 401: return 16
    case 403: return 7
    case 404: return UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return UNAVAILABLE
    default: return UNKNOWN
  }
}

/** A grpc-status value as a number (UNKNOWN when absent or not a number). */
export function parseStatus(value: unknown): number {
  if (typeof value !== 'string' || value === '') return UNKNOWN
  const n = Number(value)
  return Number.isInteger(n) && n >= 0 ? n : UNKNOWN
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }

/**
 * `grpc-timeout` in milliseconds (`TimeoutValue TimeoutUnit`: at most 8 digits, then H M S m u n),
 * or -1 when absent or malformed (then the model's timeout_ms alone applies).
 */
export function parseTimeout(value: unknown): number {
  if (typeof value !== 'string' || value.length < 2 || value.length > 9) return -1
  const unit = TIMEOUT_UNITS[value[value.length - 1] as string]
  const digits = value.slice(0, -1)
  if (unit === undefined || !/^\d+$/.test(digits)) return -1
  return Number(digits) * unit
}

/** A timeout in ms as grpc-timeout writes it: whole milliseconds while they fit 8 digits, else seconds. */
export function formatTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms))
  return whole <= 99_999_999 ? `${whole}m` : `${Math.ceil(whole / 1000)}S`
}

/** grpc-message percent-encoding (PROTOCOL-HTTP2.md: bytes outside 0x20–0x7E, and %). */
export function encodeMessage(text: string): string {
  let plain = true
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x25) { plain = false; break }
  }
  if (plain) return text
  let out = ''
  for (const b of Buffer.from(text, 'utf8')) out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b)
  return out
}

/** What the frame scanner found wrong with a request's messages. */
export type FrameProblem = 'bad_frame' | 'too_large' | null

/**
 * Follows the length-prefixed messages of a stream across chunks, without copying them: each
 * prefix is a compressed flag (0 or 1) and a 4-byte big-endian length. Bytes split anywhere (one
 * at a time included) give the same verdicts.
 */
export class FrameScanner {
  /** Payload bytes of the current message still to come; -1 while reading a prefix. */
  #left = -1
  /** The prefix read so far: its flag, then its length's bytes (numbers, so a call allocates nothing). */
  #flag = 0
  #length = 0
  #have = 0
  messages = 0
  compressed = 0

  constructor(readonly maxMessageBytes: number) {}

  /** Scans one chunk; the first problem found, or null. */
  scan(chunk: Buffer): FrameProblem {
    let i = 0
    while (i < chunk.length) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, chunk.length - i)
        this.#left -= take
        i += take
        if (this.#left === 0) this.#left = -1
        continue
      }
      const byte = chunk[i++] as number
      if (this.#have === 0) this.#flag = byte
      else this.#length = this.#length * 256 + byte
      if (++this.#have < 5) continue
      this.#have = 0
      const flag = this.#flag
      const length = this.#length
      this.#length = 0
      if (flag > 1) return 'bad_frame'
      if (flag === 1) this.compressed++
      if (length > this.maxMessageBytes) return 'too_large'
      this.messages++
      this.#left = length === 0 ? -1 : length
    }
    return null
  }

  /** The stream may end here: not inside a prefix or a message. */
  get atBoundary(): boolean {
    return this.#left === -1 && this.#have === 0
  }
}

// --- protobuf, as little as the model's name needs --------------------------------------------

/** Reads a varint at `at`; [value, next offset], or null when it runs past the end (or past 2^53). */
function varint(buf: Buffer, at: number): [number, number] | null {
  let value = 0
  let scale = 1
  for (let i = at; i < buf.length && i < at + 10; i++) {
    const b = buf[i] as number
    value += (b & 0x7f) * scale
    if (b < 0x80) return value <= Number.MAX_SAFE_INTEGER ? [value, i + 1] : null
    scale *= 128
  }
  return null
}

function writeVarint(n: number): Buffer {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 128) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Buffer.from(out)
}

/** One top-level field's place in a message: its tag's start, its value's start and end. */
interface FieldSpan { start: number; valueStart: number; end: number }

/**
 * The spans of field `number` (wire type 2, length-delimited) at the top level of a message, or
 * null when the message is not well-formed protobuf.
 */
function fieldSpans(msg: Buffer, number: number): FieldSpan[] | null {
  const spans: FieldSpan[] = []
  let i = 0
  while (i < msg.length) {
    const start = i
    const tag = varint(msg, i)
    if (tag === null) return null
    i = tag[1]
    const wire = tag[0] % 8
    const field = Math.floor(tag[0] / 8)
    if (field === 0) return null
    switch (wire) {
      case 0: { const v = varint(msg, i); if (v === null) return null; i = v[1]; break }
      case 1: i += 8; break
      case 5: i += 4; break
      case 2: {
        const len = varint(msg, i)
        if (len === null) return null
        const valueStart = len[1]
        i = valueStart + len[0]
        if (i > msg.length) return null
        if (field === number) spans.push({ start, valueStart, end: i })
        break
      }
      default: return null // groups (3, 4) are not in proto3 and not in these messages
    }
    if (i > msg.length) return null
  }
  return spans
}

/**
 * The string at a path of length-delimited fields (`[1]`: OIP ModelInferRequest.model_name;
 * `[1, 1]`: TF Serving PredictRequest.model_spec.name). Protobuf's last-one-wins for repeated
 * scalars; '' when absent; null when the bytes are not protobuf.
 */
export function readNameAt(msg: Buffer, path: readonly number[]): string | null {
  let cur = msg
  for (let d = 0; d < path.length; d++) {
    const spans = fieldSpans(cur, path[d] as number)
    if (spans === null) return null
    if (spans.length === 0) return ''
    // A sub-message repeated on the wire is merged; its last name wins, as the parser's would.
    if (d < path.length - 1) {
      let found = ''
      for (const s of spans) {
        const name = readNameAt(cur.subarray(s.valueStart, s.end), path.slice(d + 1))
        if (name === null) return null
        if (name !== '') found = name
      }
      return found
    }
    const last = spans[spans.length - 1] as FieldSpan
    cur = cur.subarray(last.valueStart, last.end)
  }
  return cur.toString('utf8')
}

/**
 * The message with the string at `path` set to `name`: every occurrence of the field is dropped
 * and one written first (field order does not matter to a parser). The other bytes are copied
 * as they are; null when the message is not protobuf.
 */
export function rewriteNameAt(msg: Buffer, path: readonly number[], name: string): Buffer | null {
  const number = path[0] as number
  const spans = fieldSpans(msg, number)
  if (spans === null) return null
  let value: Buffer
  if (path.length === 1) value = Buffer.from(name, 'utf8')
  else {
    // The sub-messages, merged (concatenation is merging in protobuf), then rewritten inside.
    const inner = Buffer.concat(spans.map((s) => msg.subarray(s.valueStart, s.end)))
    const rewritten = rewriteNameAt(inner, path.slice(1), name)
    if (rewritten === null) return null
    value = rewritten
  }
  const parts: Buffer[] = [writeVarint(number * 8 + 2), writeVarint(value.length), value]
  let at = 0
  for (const s of spans) {
    parts.push(msg.subarray(at, s.start))
    at = s.end
  }
  parts.push(msg.subarray(at))
  return Buffer.concat(parts)
}

/** A message with its 5-byte prefix (uncompressed). */
export function frame(msg: Buffer): Buffer {
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(msg.length, 1)
  return Buffer.concat([prefix, msg])
}
