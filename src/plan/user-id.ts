import { getByPointer } from '../compare/index.js'
import type { UserIdSource } from '../config/types.js'

/** Why a request has no usable user id (the `reason` label of modelsplit_user_id_missing_total). */
export type MissingReason = 'absent' | 'body_not_json' | 'unknown_override'

/** The parts of a request the decision reads: no transport types, so any listener can build one. */
export interface RequestView {
  readonly method: string
  /** Header names in lower case, as node:http and undici give them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** The raw query string after '?', or ''. */
  readonly query: string
  readonly body: BodyView
}

/** Where a request's body stands for user-id lookup: parsed once, lazily. */
export interface BodyView {
  raw: Buffer | undefined
  parsed: unknown
  state: 'unparsed' | 'json' | 'invalid' | 'empty'
  /** Over max_mirror_body_bytes: forwarded as a stream, not mirrored or recorded. */
  truncated: boolean
}

/**
 * Reads the user id from the first source that has one. Returns the id, or the reason there is
 * none: `body_not_json` when a body source was needed and the body was not JSON, else `absent`.
 */
export function readUserId(sources: readonly UserIdSource[], request: RequestView): string | MissingReason {
  const body = request.body
  let reason: MissingReason = 'absent'
  for (let i = 0; i < sources.length; i++) {
    const s = sources[i] as UserIdSource
    let value: string | undefined
    switch (s.kind) {
      case 'header': {
        const h = request.headers[s.name]
        const raw = typeof h === 'string' ? h : h?.[0]
        value = raw === undefined ? undefined : utf8OfLatin1(raw)
        break
      }
      case 'query': {
        value = readQuery(request.query, s.name)
        break
      }
      case 'cookie': {
        const cookie = request.headers.cookie
        value = readCookie(typeof cookie === 'string' ? utf8OfLatin1(cookie) : undefined, s.name)
        break
      }
      case 'body': {
        if (body.state === 'unparsed') parseBody(body)
        if (body.state === 'invalid') {
          reason = 'body_not_json'
          break
        }
        if (body.state === 'empty') break
        const found = getByPointer(body.parsed, s.tokens)
        // A numeric id is used as its JSON text (42 → "42"), as str() in the offline snippet does.
        // An integer past 2^53 has lost digits in JSON.parse (…891 and …892 both read …900), so
        // its digits are read from the body's text instead.
        const v = found.value
        if (typeof v === 'string') value = v
        else if (typeof v === 'number' && Number.isFinite(v)) {
          // Only an integer literal: 1e21 is a float in Python too, and str() writes it as JS does.
          const raw = Number.isInteger(v) && !Number.isSafeInteger(v) ? rawNumberAt((body.raw as Buffer).toString('utf8'), s.tokens) : undefined
          value = raw !== undefined && /^-?\d+$/.test(raw) ? raw : String(v)
        }
        break
      }
    }
    if (value !== undefined && value !== '') return value
  }
  return reason
}

function parseBody(body: BodyView): void {
  if (body.raw === undefined || body.raw.length === 0) {
    body.state = 'empty' // no body is a missing id, not a malformed one
    return
  }
  try {
    body.parsed = JSON.parse(body.raw.toString('utf8'))
    body.state = 'json'
  } catch {
    body.state = 'invalid'
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A header value as the client wrote it. node:http reads header bytes as Latin-1, so a UTF-8 id
 * such as "José" arrives as "JosÃ©"; the same id in a query, a cookie or a body is read as UTF-8.
 * Bytes that form valid UTF-8 are read as UTF-8, so an id hashes the same wherever it is sent
 * (and as the offline formula and the Python client hash it); other bytes stay Latin-1.
 */
export function utf8OfLatin1(value: string): string {
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0x7f) {
      try {
        return STRICT_UTF8.decode(Buffer.from(value, 'latin1'))
      } catch {
        return value
      }
    }
  }
  return value
}

/**
 * The first value of one parameter in a query string (WHATWG urlencoded: `+` is a space,
 * percent-escapes decoded; a malformed escape leaves the value as written).
 */
export function readQuery(query: string, name: string): string | undefined {
  let start = 0
  while (start <= query.length) {
    let end = query.indexOf('&', start)
    if (end < 0) end = query.length
    const eq = query.indexOf('=', start)
    const keyEnd = eq >= 0 && eq < end ? eq : end
    if (decodeComponent(query.slice(start, keyEnd)) === name) return eq >= 0 && eq < end ? decodeComponent(query.slice(eq + 1, end)) : ''
    start = end + 1
  }
  return undefined
}

function decodeComponent(s: string): string {
  const plain = s.includes('+') ? s.replace(/\+/g, ' ') : s
  if (!plain.includes('%')) return plain
  try {
    return decodeURIComponent(plain)
  } catch {
    return plain
  }
}

/** Value of one cookie in a Cookie header (RFC 6265 §5.4: `name=value` pairs split by "; "). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  let start = 0
  while (start < header.length) {
    let end = header.indexOf(';', start)
    if (end < 0) end = header.length
    while (header.charCodeAt(start) === 32) start++
    const eq = header.indexOf('=', start)
    if (eq > 0 && eq < end && header.slice(start, eq).trim() === name) {
      let v = header.slice(eq + 1, end).trim()
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
      try {
        return decodeURIComponent(v)
      } catch {
        return v
      }
    }
    start = end + 1
  }
  return undefined
}

/**
 * The literal text of the number at a JSON Pointer in a JSON document known to be valid (it was
 * parsed), for integers JSON.parse cannot hold exactly. Where a key repeats, the last one counts,
 * as in JSON.parse. Undefined if the pointer does not lead to a number.
 */
export function rawNumberAt(text: string, tokens: readonly string[]): string | undefined {
  let i = 0
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c !== 32 && c !== 9 && c !== 10 && c !== 13) return
      i++
    }
  }
  const skipString = (): void => {
    i++ // opening quote
    while (i < text.length) {
      const c = text[i]
      if (c === '\\') i += 2
      else if (c === '"') { i++; return } else i++
    }
  }
  const skipValue = (): void => {
    ws()
    const c = text[i]
    if (c === '"') return skipString()
    if (c === '{' || c === '[') {
      let depth = 0
      while (i < text.length) {
        const d = text[i]
        if (d === '"') { skipString(); continue }
        if (d === '{' || d === '[') depth++
        else if (d === '}' || d === ']') depth--
        i++
        if (depth === 0) return
      }
      return
    }
    while (i < text.length && !',}] \t\n\r'.includes(text[i] as string)) i++
  }
  for (const token of tokens) {
    ws()
    const open = text[i]
    let at = -1
    if (open === '{') {
      i++
      for (;;) {
        ws()
        if (text[i] !== '"') break
        const start = i
        skipString()
        const key = JSON.parse(text.slice(start, i)) as string
        ws()
        i++ // ':'
        ws()
        if (key === token) at = i
        skipValue()
        ws()
        if (text[i] !== ',') break
        i++
      }
    } else if (open === '[') {
      i++
      const index = Number(token)
      for (let n = 0; ; n++) {
        ws()
        if (text[i] === ']') break
        if (n === index) { at = i; break }
        skipValue()
        ws()
        if (text[i] !== ',') break
        i++
      }
    }
    if (at < 0) return undefined
    i = at
  }
  ws()
  const start = i
  while (i < text.length && '-+.eE0123456789'.includes(text[i] as string)) i++
  return i > start ? text.slice(start, i) : undefined
}
