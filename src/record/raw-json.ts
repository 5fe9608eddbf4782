// Whether a request body can go into a record as it is: one JSON value (RFC 8259) on one line.
// A record with inputs used to parse the body and serialise it again; a body that passes this
// check is written as its own text instead (the same JSON value, its numbers digit for digit).

const enum C {
  Tab = 0x09, Lf = 0x0a, Cr = 0x0d, Space = 0x20, Quote = 0x22, Plus = 0x2b, Comma = 0x2c, Minus = 0x2d, Dot = 0x2e,
  Zero = 0x30, One = 0x31, Nine = 0x39, Colon = 0x3a, UpperE = 0x45, OpenBracket = 0x5b, Backslash = 0x5c,
  CloseBracket = 0x5d, LowerE = 0x65, OpenBrace = 0x7b, CloseBrace = 0x7d,
}

/** Deeper than this is refused (the record then takes the parsed value, as before). */
const MAX_DEPTH = 512

/**
 * True when `text` is exactly one JSON value with no line break anywhere (JSONL keeps a record on
 * one line; inside strings a raw line break is invalid JSON anyway). Strict: NaN, comments and
 * trailing commas are not JSON. Allocates nothing.
 */
export function isJsonLine(text: string): boolean {
  const v = new Validator(text)
  v.space()
  if (!v.value(0)) return false
  v.space()
  return v.i === text.length
}

/** Where a value sits in a text: [start, end). */
export interface Span {
  readonly start: number
  readonly end: number
}

/**
 * Where `prediction: auto` finds the prediction in a model's answer, read without parsing it: the
 * whole answer when it is an array, or the value of its top-level "predictions" (the last one, as
 * JSON.parse keeps), provided the answer is exactly one valid JSON value with no line break outside
 * its ends. Null when it is anything else (the caller parses it as before): an object without
 * "predictions", a key written with escapes, a line break between tokens, invalid JSON. Allocates nothing.
 */
export function autoPredictionSpan(answer: string | Uint8Array): Span | null {
  const v = new Validator(answer)
  let lo = 0
  let hi = v.length
  while (lo < hi && isSpace(v.at(lo))) lo++
  while (hi > lo && isSpace(v.at(hi - 1))) hi--
  v.i = lo
  const first = v.at(lo)
  if (first === C.OpenBracket) return v.value(0) && v.i === hi ? { start: lo, end: hi } : null
  if (first !== C.OpenBrace) return null
  let found: Span | null = null
  v.i++
  v.space()
  if (v.at(v.i) === C.CloseBrace) return null
  for (;;) {
    const keyStart = v.i
    if (v.at(keyStart) !== C.Quote || !v.string()) return null
    const isPredictions = v.i - keyStart === 13 && v.isAt('"predictions"', keyStart)
    // "predict\u0069ons" is "predictions" to JSON.parse: an escaped key is not read here.
    if (!isPredictions && hasBackslash(v, keyStart, v.i)) return null
    v.space()
    if (v.at(v.i) !== C.Colon) return null
    v.i++
    v.space()
    const valueStart = v.i
    if (!v.value(1)) return null
    if (isPredictions) found = { start: valueStart, end: v.i }
    v.space()
    const c = v.at(v.i++)
    if (c === C.CloseBrace) return v.i === hi ? found : null
    if (c !== C.Comma) return null
    v.space()
  }
}

function hasBackslash(v: Validator, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (v.at(i) === C.Backslash) return true
  return false
}

function isSpace(c: number): boolean {
  return c === C.Space || c === C.Tab || c === C.Lf || c === C.Cr
}

/**
 * The JSON grammar over a string (request bodies) or the bytes of an answer (read without a string
 * made of it: UTF-8 keeps every byte of a multi-byte character at 0x80 or above, so the structure
 * reads the same, and a control byte is one inside a string too).
 */
class Validator {
  i = 0
  readonly length: number
  readonly #text: string | null
  readonly #bytes: Uint8Array | null
  constructor(s: string | Uint8Array) {
    this.length = s.length
    this.#text = typeof s === 'string' ? s : null
    this.#bytes = typeof s === 'string' ? null : s
  }

  /** The code unit (string) or byte at `i`; NaN past the end. */
  at(i: number): number {
    const t = this.#text
    if (t !== null) return t.charCodeAt(i)
    const b = (this.#bytes as Uint8Array)[i]
    return b === undefined ? Number.NaN : b
  }

  /** Whether the ASCII `w` is written at `i`. */
  isAt(w: string, i: number): boolean {
    if (i + w.length > this.length) return false
    for (let k = 0; k < w.length; k++) if (this.at(i + k) !== w.charCodeAt(k)) return false
    return true
  }

  space(): void {
        let i = this.i
    for (; i < this.length; i++) {
      const c = this.at(i)
      if (c !== C.Space && c !== C.Tab) break
    }
    this.i = i
  }

  value(depth: number): boolean {
    const c = this.at(this.i)
    if (c === C.Quote) return this.string()
    if (c === C.OpenBrace) return depth < MAX_DEPTH && this.object(depth + 1)
    if (c === C.OpenBracket) return depth < MAX_DEPTH && this.array(depth + 1)
    if (c === C.Minus || (c >= C.Zero && c <= C.Nine)) return this.number()
    return this.word('true') || this.word('false') || this.word('null')
  }

  word(w: string): boolean {
    if (!this.isAt(w, this.i)) return false
    this.i += w.length
    return true
  }

  object(depth: number): boolean {
        this.i++
    this.space()
    if (this.at(this.i) === C.CloseBrace) {
      this.i++
      return true
    }
    for (;;) {
      if (this.at(this.i) !== C.Quote || !this.string()) return false
      this.space()
      if (this.at(this.i) !== C.Colon) return false
      this.i++
      this.space()
      if (!this.value(depth)) return false
      this.space()
      const c = this.at(this.i++)
      if (c === C.CloseBrace) return true
      if (c !== C.Comma) return false
      this.space()
    }
  }

  array(depth: number): boolean {
        this.i++
    this.space()
    if (this.at(this.i) === C.CloseBracket) {
      this.i++
      return true
    }
    for (;;) {
      if (!this.value(depth)) return false
      this.space()
      const c = this.at(this.i++)
      if (c === C.CloseBracket) return true
      if (c !== C.Comma) return false
      this.space()
    }
  }

  string(): boolean {
        let i = this.i + 1
    for (;;) {
      if (i >= this.length) return false
      const c = this.at(i)
      if (c === C.Quote) break
      // RFC 8259 §7: control characters must be escaped.
      if (c < 0x20) return false
      if (c === C.Backslash) {
        const e = this.at(i + 1)
        if (e === 0x75) { // \uXXXX
          for (let k = i + 2; k < i + 6; k++) if (!isHex(this.at(k))) return false
          i += 6
          continue
        }
        // " \ / b f n r t
        if (e !== C.Quote && e !== C.Backslash && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) return false
        i += 2
        continue
      }
      i++
    }
    this.i = i + 1
    return true
  }

  digits(i: number): number {
    while (i < this.length) {
      const c = this.at(i)
      if (c < C.Zero || c > C.Nine) break
      i++
    }
    return i
  }

  number(): boolean {
        let i = this.i
    if (this.at(i) === C.Minus) i++
    const first = this.at(i)
    if (first === C.Zero) i++
    else if (first >= C.One && first <= C.Nine) i = this.digits(i)
    else return false
    if (this.at(i) === C.Dot) {
      const j = this.digits(i + 1)
      if (j === i + 1) return false
      i = j
    }
    const e = this.at(i)
    if (e === C.LowerE || e === C.UpperE) {
      i++
      const sign = this.at(i)
      if (sign === C.Plus || sign === C.Minus) i++
      const j = this.digits(i)
      if (j === i) return false
      i = j
    }
    this.i = i
    return true
  }
}


function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}
