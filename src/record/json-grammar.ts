// The JSON grammar (RFC 8259) read in place, over a string or an answer's bytes, allocating nothing:
// whether a value is valid and, while asked, whether its text is exactly what JSON.stringify writes
// of it (canonical). raw-json.ts builds its checks and scans on it.

/** The ASCII characters the grammar names, as code units and as bytes. */
export const enum C {
  Tab = 0x09, Lf = 0x0a, Cr = 0x0d, Space = 0x20, Quote = 0x22, Plus = 0x2b, Comma = 0x2c, Minus = 0x2d, Dot = 0x2e,
  Zero = 0x30, One = 0x31, Nine = 0x39, Colon = 0x3a, UpperE = 0x45, OpenBracket = 0x5b, Backslash = 0x5c,
  CloseBracket = 0x5d, LowerE = 0x65, OpenBrace = 0x7b, CloseBrace = 0x7d,
}

/** Deeper than this is refused (the record then takes the parsed value, as before). */
const MAX_DEPTH = 512

/**
 * The JSON grammar over a string (request bodies) or the bytes of an answer (read without a string
 * made of it: UTF-8 keeps every byte of a multi-byte character at 0x80 or above, so the structure
 * reads the same, and a control byte is one inside a string too).
 */
export class Validator {
  i = 0
  readonly length: number
  readonly #text: string | null
  readonly #bytes: Uint8Array | null
  /** While set, the values read are checked for canonical (see AutoScan); `canonical` turns false at the first that is not. */
  tracks = false
  canonical = true
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

  /** Whether [a, aEnd) and [b, bEnd) hold the same code units or bytes. */
  same(a: number, aEnd: number, b: number, bEnd: number): boolean {
    if (aEnd - a !== bEnd - b) return false
    for (; a < aEnd; a++, b++) if (this.at(a) !== this.at(b)) return false
    return true
  }

  space(): void {
    let i = this.i
    for (; i < this.length; i++) {
      const c = this.at(i)
      if (c !== C.Space && c !== C.Tab) break
    }
    // JSON.stringify writes no whitespace between tokens.
    if (i !== this.i && this.tracks) this.canonical = false
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
    const base = keyTop
    try {
      for (;;) {
        const keyStart = this.i
        if (this.at(keyStart) !== C.Quote || !this.string()) return false
        if (this.tracks && this.canonical) this.#checkKey(base, keyStart, this.i)
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
    } finally {
      keyTop = base
    }
  }

  /**
   * A key JSON.parse would move (an array index goes first) or merge with an earlier one of its
   * object (the last value is kept where the first key was) makes the text not canonical.
   */
  #checkKey(base: number, start: number, end: number): void {
    if (isDigit(this.at(start + 1)) || keyTop - base >= MAX_OBJECT_KEYS || keyTop + 2 > KEYS.length) {
      this.canonical = false
      return
    }
    for (let k = base; k < keyTop; k += 2) {
      if (this.same(KEYS[k] as number, KEYS[k + 1] as number, start, end)) {
        this.canonical = false
        return
      }
    }
    KEYS[keyTop] = start
    KEYS[keyTop + 1] = end
    keyTop += 2
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
      // A lone surrogate (text only; bytes are never one) JSON.stringify writes as an escape.
      if (c >= 0xd800 && c <= 0xdfff && this.tracks) this.canonical = false
      if (c === C.Backslash) {
        const e = this.at(i + 1)
        if (e === 0x75) { // \uXXXX
          for (let k = i + 2; k < i + 6; k++) if (!isHex(this.at(k))) return false
          if (this.tracks && !this.#isStringifyEscape(i + 2)) this.canonical = false
          i += 6
          continue
        }
        // " \ / b f n r t
        if (e !== C.Quote && e !== C.Backslash && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) return false
        // JSON.stringify writes "/" as it is, the others escaped as here.
        if (e === 0x2f && this.tracks) this.canonical = false
        i += 2
        continue
      }
      i++
    }
    this.i = i + 1
    return true
  }

  /**
   * Whether the \u escape whose 4 hex digits start at `i` is one JSON.stringify writes: \u00XX in
   * lower case for a control character without a short escape (\b \t \n \f \r). Any other
   * (an escaped letter, a surrogate pair) it writes another way.
   */
  #isStringifyEscape(i: number): boolean {
    if (this.at(i) !== C.Zero || this.at(i + 1) !== C.Zero) return false
    const hi = this.at(i + 2)
    const lo = this.at(i + 3)
    if (hi !== C.Zero && hi !== C.One) return false
    if (lo >= 0x41 && lo <= 0x46) return false
    const code = (hi - C.Zero) * 16 + (lo <= C.Nine ? lo - C.Zero : lo - 0x61 + 10)
    return code !== 0x08 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d
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
    const start = this.i
    let i = start
    if (this.at(i) === C.Minus) i++
    const intStart = i
    const first = this.at(i)
    if (first === C.Zero) i++
    else if (first >= C.One && first <= C.Nine) i = this.digits(i)
    else return false
    const intEnd = i
    let fracEnd = i
    if (this.at(i) === C.Dot) {
      const j = this.digits(i + 1)
      if (j === i + 1) return false
      i = fracEnd = j
    }
    const e = this.at(i)
    const hasExponent = e === C.LowerE || e === C.UpperE
    if (hasExponent) {
      i++
      const sign = this.at(i)
      if (sign === C.Plus || sign === C.Minus) i++
      const j = this.digits(i)
      if (j === i) return false
      i = j
    }
    this.i = i
    if (this.tracks && this.canonical && (hasExponent || !isShortestNumber(this, start, intStart, intEnd, fracEnd))) this.canonical = false
    return true
  }
}

/** Keys (start, end pairs) of the objects being read while tracking, to find a repeated one. */
const KEYS = new Int32Array(512)
let keyTop = 0
/** An object with more keys than this is taken as not canonical (the repeat check is quadratic). */
const MAX_OBJECT_KEYS = 2 * 32

/**
 * Whether a number written without an exponent is what JSON.stringify (Number#toString) writes
 * of its value. It is when it has at most 15 significant digits (every such decimal is the
 * shortest that reads back as its double, ECMA-262 Number::toString; 15 is DBL_DIG) and is in the
 * range toString writes without an exponent (1e-6 up to 1e21), with no trailing zero after the
 * point and not -0 (written 0).
 */
function isShortestNumber(v: Validator, start: number, intStart: number, intEnd: number, fracEnd: number): boolean {
  const isZeroInt = v.at(intStart) === C.Zero
  const fracLen = fracEnd === intEnd ? 0 : fracEnd - intEnd - 1
  if (fracLen === 0) return !(isZeroInt && intStart !== start) && intEnd - intStart <= 15
  if (v.at(fracEnd - 1) === C.Zero) return false
  if (!isZeroInt) return intEnd - intStart + fracLen <= 15
  let zeros = 0
  while (v.at(intEnd + 1 + zeros) === C.Zero) zeros++
  return zeros <= 5 && fracLen - zeros <= 15
}

/** Whether `c` is an ASCII digit. */
export function isDigit(c: number): boolean {
  return c >= C.Zero && c <= C.Nine
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}
