/** Outcome of parsing a model server's response body. */
export type ParseResult = { ok: true; value: unknown } | { ok: false; reason: string }

// RFC 8259 §6 number grammar; sticky so it matches only at the current position.
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y

/** Thrown inside the lenient parser only; turned into `{ ok: false }` at the boundary. */
class SyntaxFault extends Error {}

/**
 * Parses a model server's JSON body, also accepting the bare `NaN`, `Infinity` and `-Infinity`
 * tokens that TF Serving and Python's `json` module write.
 */
export function parseModelJson(text: string): ParseResult {
  // Fast path: almost every body is strict JSON, and V8's parser beats anything we can write.
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch {
    // fall through to the lenient parser, which also produces a stable, positioned reason
  }
  if (isBlank(text)) return { ok: false, reason: 'response is not JSON: empty body' }
  try {
    return { ok: true, value: new LenientParser(text).parseDocument() }
  } catch (err) {
    if (err instanceof SyntaxFault) return { ok: false, reason: `response is not JSON: ${err.message}` }
    if (err instanceof RangeError) return { ok: false, reason: 'response is not JSON: nesting too deep' }
    throw err
  }
}

function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    if (!isWhitespace(text.charCodeAt(i))) return false
  }
  return true
}

// RFC 8259 §2: only space, tab, LF and CR are insignificant whitespace.
function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

/** Strict RFC 8259 parser plus the three non-finite tokens; only runs when JSON.parse failed. */
class LenientParser {
  readonly #text: string
  #pos = 0

  constructor(text: string) {
    this.#text = text
  }

  parseDocument(): unknown {
    const value = this.#parseValue()
    this.#skipWhitespace()
    if (this.#pos < this.#text.length) throw this.#fault()
    return value
  }

  #parseValue(): unknown {
    this.#skipWhitespace()
    const text = this.#text
    switch (text.charCodeAt(this.#pos)) {
      case 0x7b: // {
        return this.#parseObject()
      case 0x5b: // [
        return this.#parseArray()
      case 0x22: // "
        return this.#parseString()
      case 0x74: // t
        return this.#literal('true', true)
      case 0x66: // f
        return this.#literal('false', false)
      case 0x6e: // n
        return this.#literal('null', null)
      case 0x4e: // N
        return this.#literal('NaN', Number.NaN)
      case 0x49: // I
        return this.#literal('Infinity', Number.POSITIVE_INFINITY)
      case 0x2d: // -
        if (text.startsWith('-I', this.#pos)) return this.#literal('-Infinity', Number.NEGATIVE_INFINITY)
        return this.#parseNumber()
      default:
        return this.#parseNumber()
    }
  }

  #parseObject(): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    this.#pos++ // {
    this.#skipWhitespace()
    if (this.#text.charCodeAt(this.#pos) === 0x7d) {
      this.#pos++
      return out
    }
    for (;;) {
      this.#skipWhitespace()
      if (this.#text.charCodeAt(this.#pos) !== 0x22) throw this.#fault()
      const key = this.#parseString()
      this.#skipWhitespace()
      if (this.#text.charCodeAt(this.#pos) !== 0x3a) throw this.#fault()
      this.#pos++ // :
      setOwn(out, key, this.#parseValue())
      this.#skipWhitespace()
      const c = this.#text.charCodeAt(this.#pos)
      this.#pos++
      if (c === 0x7d) return out
      if (c !== 0x2c) throw this.#fault(this.#pos - 1)
    }
  }

  #parseArray(): unknown[] {
    const out: unknown[] = []
    this.#pos++ // [
    this.#skipWhitespace()
    if (this.#text.charCodeAt(this.#pos) === 0x5d) {
      this.#pos++
      return out
    }
    for (;;) {
      out.push(this.#parseValue())
      this.#skipWhitespace()
      const c = this.#text.charCodeAt(this.#pos)
      this.#pos++
      if (c === 0x5d) return out
      if (c !== 0x2c) throw this.#fault(this.#pos - 1)
    }
  }

  #parseString(): string {
    const text = this.#text
    const start = this.#pos
    let hasEscape = false
    let i = start + 1
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c === 0x22) break
      if (c === 0x5c) {
        hasEscape = true
        i++
      } else if (c < 0x20) {
        // RFC 8259 §7: control characters must be escaped inside strings.
        throw this.#fault(i)
      }
    }
    if (i >= text.length) throw this.#fault(text.length)
    this.#pos = i + 1
    if (!hasEscape) return text.slice(start + 1, i)
    // Let V8 decode the escapes: the slice is a complete JSON string literal.
    try {
      return JSON.parse(text.slice(start, i + 1)) as string
    } catch {
      throw new SyntaxFault(`Bad escape in string at position ${start}`)
    }
  }

  #parseNumber(): number {
    NUMBER.lastIndex = this.#pos
    const match = NUMBER.exec(this.#text)
    if (match === null) throw this.#fault()
    this.#pos = NUMBER.lastIndex
    return Number(match[0])
  }

  #literal<T>(word: string, value: T): T {
    if (!this.#text.startsWith(word, this.#pos)) throw this.#fault()
    this.#pos += word.length
    return value
  }

  #skipWhitespace(): void {
    const text = this.#text
    while (this.#pos < text.length && isWhitespace(text.charCodeAt(this.#pos))) this.#pos++
  }

  #fault(at = this.#pos): SyntaxFault {
    if (at >= this.#text.length) return new SyntaxFault('Unexpected end of JSON input')
    return new SyntaxFault(`Unexpected token ${this.#text.charAt(at)} at position ${at}`)
  }
}

/** Sets an own property the way JSON.parse does, so a `__proto__` key never changes the prototype. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
  } else {
    target[key] = value
  }
}
