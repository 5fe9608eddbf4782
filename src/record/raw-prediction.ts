// `prediction: auto` on a route that records answers and compares none: the prediction goes into
// the record as the answer's own text, found by a scan of its bytes (record/raw-json.ts) instead of
// JSON.parse, the auto rule and JSON.stringify. Recording cost per request is what issue 22 cuts;
// for the small answers most models give, parsing and serialising again were its largest part.
import { isUtf8 } from 'node:buffer'
import { noAutoPredictionReason } from '../compare/index.js'
import { scanAutoPrediction, type AutoScan } from './raw-json.js'
import type { RawPrediction } from './serialise.js'

/** An answer in which the auto rule finds no prediction, and why (as the parse path says it). */
export interface NoPrediction {
  readonly ok: false
  readonly reason: string
  readonly transport?: undefined
}

/**
 * From this size up the prediction is written as the model wrote it even when that is not how
 * JSON.stringify would write it (spaces, `1.0`, escapes): no string as large as the answer is
 * made, and a capture costs its buffer (issue 18, item 20). Below it, only text that is exactly
 * what the parse path writes is taken, so a record does not depend on how the model formats numbers.
 */
export const RAW_PREDICTION_MIN_BYTES = 64 * 1024

/**
 * The prediction of a 2xx answer by `prediction: auto`, read without parsing: its text (its bytes,
 * for a large answer), or why it has none; undefined when the scan cannot tell it exactly as
 * parsing would, and the caller parses (not JSON, line breaks, escaped keys, a number such as
 * `1e3` or `0.10`, a repeated key in the prediction, an answer with "outputs" or "data").
 */
export function readAutoPrediction(body: Buffer): RawPrediction | NoPrediction | undefined {
  const scan = scanAutoPrediction(body)
  if (scan === null) return undefined
  if (scan.kind === 'none') return noPrediction(body, scan)
  if (body.length >= RAW_PREDICTION_MIN_BYTES) {
    // Bytes that are not UTF-8 are parsed as before (replaced by U+FFFD): a record line is always UTF-8.
    const prediction = body.subarray(scan.start, scan.end)
    return isUtf8(prediction) ? prediction : undefined
  }
  // The span starts and ends on ASCII, so bytes that are not UTF-8 decode to the U+FFFD the
  // parse path's decoding of the whole answer gives them, and JSON.stringify keeps.
  return scan.canonical ? body.toString('utf8', scan.start, scan.end) : undefined
}

// The last answer's keys (the text its reason names) and its reason: a model answers in one
// shape, so the same reason serves record after record without a string built for each.
let lastKeys: Buffer = Buffer.alloc(0)
let lastKeyCount = -1
let last: NoPrediction = { ok: false, reason: '' }

/** Shown keys in extractPrediction's message: the first five. */
const SHOWN_KEYS = 5

function noPrediction(body: Buffer, scan: AutoScan): NoPrediction {
  const shown = Math.min(scan.keys, SHOWN_KEYS)
  if (scan.keys === lastKeyCount && sameKeys(body, scan, shown)) return last
  const names: string[] = []
  // Keys are written without escapes (the scan declines others), so each one's text, quotes
  // included, is what JSON.stringify writes of it.
  for (let k = 0; k < shown; k++) names.push(body.toString('utf8', scan.keyStarts[k], scan.keyEnds[k]))
  const text = names.join(', ')
  last = { ok: false, reason: noAutoPredictionReason(shown === 0 ? null : text, scan.keys > SHOWN_KEYS) }
  lastKeys = Buffer.from(text)
  lastKeyCount = scan.keys
  return last
}

/** Whether the shown keys are, byte for byte, the last answer's (`"a", "b"`: quotes keep them apart). */
function sameKeys(body: Buffer, scan: AutoScan, shown: number): boolean {
  const keys = lastKeys
  let at = 0
  for (let k = 0; k < shown; k++) {
    if (k > 0) {
      if (keys[at] !== 0x2c || keys[at + 1] !== 0x20) return false
      at += 2
    }
    const end = scan.keyEnds[k] as number
    for (let i = scan.keyStarts[k] as number; i < end; i++, at++) if (keys[at] !== body[i]) return false
  }
  return at === keys.length
}
