// Whether a request body can go into a record as it is: one JSON value (RFC 8259) on one line.
// A record with inputs used to parse the body and serialise it again; a body that passes this
// check is written as its own text instead (the same JSON value, its numbers digit for digit).
// The auto rule's scan for a prediction (scanAutoPrediction) reads answers on the same grammar
// (json-grammar.ts) without parsing them.

import { C, Validator, isDigit } from './json-grammar.js'

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
  const scan = scanAutoPrediction(answer)
  return scan === null || scan.kind !== 'found' ? null : { start: scan.start, end: scan.end }
}

/** Distinct top-level keys an AutoScan keeps: the auto rule's message names five, and says if there are more. */
export const SCAN_KEYS = 6

/**
 * What scanAutoPrediction read. One object, overwritten by the next call: read it at once.
 * - `found`: the prediction is [start, end); `canonical` when that text is exactly what
 *   JSON.stringify writes of its parsed value (no whitespace, no escape or number written another
 *   way, no key JSON.parse would reorder or merge), so it can stand for the parse-and-serialise path.
 * - `none`: a JSON object with no "predictions", "outputs" or "data" key (the auto rule finds
 *   nothing in it); `keys` distinct keys (at most SCAN_KEYS) as [keyStarts[k], keyEnds[k]), quotes
 *   included, in JSON.parse's order (each where it first appears), none written with an escape.
 */
export interface AutoScan {
  kind: 'found' | 'none'
  start: number
  end: number
  canonical: boolean
  keys: number
  readonly keyStarts: Int32Array
  readonly keyEnds: Int32Array
}

const SCAN: AutoScan = { kind: 'none', start: 0, end: 0, canonical: false, keys: 0, keyStarts: new Int32Array(SCAN_KEYS), keyEnds: new Int32Array(SCAN_KEYS) }

/**
 * autoPredictionSpan, and more: whether the prediction's text is canonical, and for an object the
 * rule finds nothing in, its keys (the rule's message names them). Null: read it by parsing.
 * Allocates nothing; the result is overwritten by the next call.
 */
export function scanAutoPrediction(answer: string | Uint8Array): AutoScan | null {
  const v = new Validator(answer)
  let lo = 0
  let hi = v.length
  while (lo < hi && isSpace(v.at(lo))) lo++
  while (hi > lo && isSpace(v.at(hi - 1))) hi--
  v.i = lo
  const first = v.at(lo)
  const scan = SCAN
  scan.keys = 0
  if (first === C.OpenBracket) {
    v.tracks = true
    if (!v.value(0) || v.i !== hi) return null
    scan.kind = 'found'
    scan.start = lo
    scan.end = hi
    scan.canonical = v.canonical
    return scan
  }
  if (first !== C.OpenBrace) return null
  let found = false
  // A key the rule reads ("outputs", "data") or one JSON.parse puts first (an array index):
  // the answer is parsed to say what it holds.
  let isUnreadable = false
  v.i++
  v.space()
  if (v.at(v.i) === C.CloseBrace) {
    v.i++
    if (v.i !== hi) return null
    scan.kind = 'none'
    return scan
  }
  for (;;) {
    const keyStart = v.i
    if (v.at(keyStart) !== C.Quote || !v.string()) return null
    const keyEnd = v.i
    const isPredictions = keyEnd - keyStart === 13 && v.isAt('"predictions"', keyStart)
    // "predict\u0069ons" is "predictions" to JSON.parse: an escaped key is not read here.
    if (!isPredictions && hasBackslash(v, keyStart, keyEnd)) return null
    if (!found && !isPredictions) {
      if (isDigit(v.at(keyStart + 1)) || (keyEnd - keyStart === 9 && v.isAt('"outputs"', keyStart)) || (keyEnd - keyStart === 6 && v.isAt('"data"', keyStart))) isUnreadable = true
      else if (!isUnreadable) addKey(v, scan, keyStart, keyEnd)
    }
    v.space()
    if (v.at(v.i) !== C.Colon) return null
    v.i++
    v.space()
    const valueStart = v.i
    v.tracks = isPredictions
    v.canonical = true
    if (!v.value(1)) return null
    v.tracks = false
    if (isPredictions) {
      found = true
      scan.start = valueStart
      scan.end = v.i
      scan.canonical = v.canonical
    }
    v.space()
    const c = v.at(v.i++)
    if (c === C.CloseBrace) {
      if (v.i !== hi) return null
      if (found) {
        scan.kind = 'found'
        return scan
      }
      if (isUnreadable) return null
      scan.kind = 'none'
      return scan
    }
    if (c !== C.Comma) return null
    v.space()
  }
}

/** Keeps a top-level key unless it repeats one kept (JSON.parse keeps a repeated key where it first was). */
function addKey(v: Validator, scan: AutoScan, start: number, end: number): void {
  if (scan.keys === SCAN_KEYS) return
  for (let k = 0; k < scan.keys; k++) if (v.same(scan.keyStarts[k] as number, scan.keyEnds[k] as number, start, end)) return
  scan.keyStarts[scan.keys] = start
  scan.keyEnds[scan.keys] = end
  scan.keys++
}

function hasBackslash(v: Validator, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (v.at(i) === C.Backslash) return true
  return false
}

function isSpace(c: number): boolean {
  return c === C.Space || c === C.Tab || c === C.Lf || c === C.Cr
}
