// A record's JSON line. Most lines are prediction records of one shape (built by the observer), and
// serialising those is most of what recording costs per request (issue 22): JSON.stringify walks
// the object and escapes every string again, and the raw input and prediction were spliced in
// afterwards by searching the text and copying it. A record the observer marks with kShaped is
// written here key by key instead, in the order its object literal has, so the text is the one
// JSON.stringify gives (test/record-serialise.test.ts holds the two side by side); route and
// model names, shares and repeated error messages are escaped once, not per record.
import type { PredictionRecord } from './schema.js'

/**
 * A prediction record's `input` as JSON text to write as it is (the request body, checked to be one
 * JSON value on one line), instead of a parsed `input` serialised again. A symbol key, so nothing
 * but the serialiser sees it; `input` is the record's last key, so the text goes at the end.
 */
export const kRawInput = Symbol('modelsplit.rawInput')

/**
 * A prediction record's `primary.prediction` as JSON text to write as it is (read out of a large
 * answer without parsing it, see record/raw-json.ts): the record then holds `prediction: null` in
 * its place, which the serialiser replaces with this text.
 */
export const kRawPrediction = Symbol('modelsplit.rawPrediction')
/** The bytes (or text) a record's kRawPrediction holds. */
export type RawPrediction = string | Buffer

/**
 * Set by the observer on the prediction records it builds: their keys are the ones (and in the
 * order) of its object literal, so they are serialised by predictionParts() rather than by
 * JSON.stringify. Any other object (tests, outcomes, decisions) goes through JSON.stringify.
 */
export const kShaped = Symbol('modelsplit.shapedPrediction')

type Raw = { [kRawInput]?: string; [kRawPrediction]?: RawPrediction; [kShaped]?: true }

/**
 * A record as one JSON line's text (no newline): what the Kafka and HTTP sinks send. A raw
 * prediction held as bytes is decoded here (the file sink writes it without a string: recordLine).
 */
export function recordJson(record: object): string | undefined {
  const parts = recordParts(record)
  if (parts === undefined || typeof parts === 'string') return parts
  return parts[0] + parts[1].toString('utf8') + parts[2]
}

/**
 * A record as the file sink writes it, newline included: text, or, when its prediction is held as
 * the answer's own bytes, one Buffer made of them (no string as large as the answer is built: a
 * large answer costs its capture and this line, outside the JS heap).
 */
export function recordLine(record: object): string | Buffer | undefined {
  const parts = recordParts(record)
  if (parts === undefined) return undefined
  if (typeof parts === 'string') return parts + '\n'
  const head = Buffer.from(parts[0])
  const tail = Buffer.from(parts[2] + '\n')
  const line = Buffer.allocUnsafe(head.length + parts[1].length + tail.length)
  head.copy(line, 0)
  parts[1].copy(line, head.length)
  tail.copy(line, head.length + parts[1].length)
  return line
}

/** The record's JSON, or its text before and after a raw prediction held as bytes. */
function recordParts(record: object): string | [string, Buffer, string] | undefined {
  if ((record as Raw)[kShaped] === true) return predictionParts(record as PredictionRecord & Raw)
  let json = JSON.stringify(record)
  if (json === undefined) return json
  const input = (record as Raw)[kRawInput]
  if (input !== undefined) json = `${json.slice(0, -1)},"input":${input}}`
  const prediction = (record as Raw)[kRawPrediction]
  if (prediction === undefined) return json
  // The first "prediction":null after "primary":{ is the primary's own (a quote inside a string is
  // escaped, so the sequence cannot come from a value; the primary's keys before it are fixed).
  const at = json.indexOf('"prediction":null', json.indexOf('"primary":{'))
  if (at === -1) return json
  const head = `${json.slice(0, at)}"prediction":`
  const tail = json.slice(at + 17)
  return typeof prediction === 'string' ? head + prediction + tail : [head, prediction, tail]
}

/**
 * A shaped prediction record, key by key in the order the observer's object literal sets them
 * (JSON.stringify's order): optional keys only when set, and a value JSON.stringify would leave
 * out (undefined) left out the same way.
 */
function predictionParts(r: PredictionRecord & Raw): string | [string, Buffer, string] {
  let s = `{"type":${str(r.type)},"schema":${num(r.schema)},"ts":${str(r.ts)},"request_id":${str(r.request_id)},"route":${name(r.route)}`
  if (r.transport !== undefined) s += `,"transport":${str(r.transport)}`
  s += `,"user_id":${r.user_id === null ? 'null' : str(r.user_id)},"assignment":${str(r.assignment)}`
  if (r.shares !== undefined) s += `,"shares":${r.shares === null ? 'null' : sharesJson(r.shares)}`
  const p = r.primary
  s += `,"primary":{"model":${name(p.model)}`
  if (p.model_version !== undefined) s += `,"model_version":${p.model_version === null ? 'null' : str(p.model_version)}`
  s += `,"status":${num(p.status)},"latency_ms":${num(p.latency_ms)}`
  const raw = r[kRawPrediction]
  let bytes: Buffer | undefined
  if (raw !== undefined && p.prediction === null) {
    if (typeof raw === 'string') s += `,"prediction":${raw}`
    else bytes = raw
  } else {
    const prediction = JSON.stringify(p.prediction)
    if (prediction !== undefined) s += `,"prediction":${prediction}`
  }
  const head = s
  s = bytes === undefined ? head : ''
  s += `,"error":${p.error === null ? 'null' : message(p.error)}`
  if (p.prediction_error !== undefined) s += `,"prediction_error":${message(p.prediction_error)}`
  if (p.usage !== undefined) s += `,"usage":${JSON.stringify(p.usage)}`
  if (p.ttft_ms !== undefined) s += `,"ttft_ms":${num(p.ttft_ms)}`
  s += r.shadows.length === 0 ? '},"shadows":[]' : `},"shadows":${JSON.stringify(r.shadows)}`
  if (r.input_omitted !== undefined) s += `,"input_omitted":${str(r.input_omitted)}`
  const input = r[kRawInput]
  if (input !== undefined) s += `,"input":${input}}`
  else {
    const parsed = r.input === undefined ? undefined : JSON.stringify(r.input)
    s += parsed === undefined ? '}' : `,"input":${parsed}}`
  }
  // The raw prediction's "prediction": key ends the head, the bytes follow.
  return bytes === undefined ? s : [`${head},"prediction":`, bytes, s]
}

/** A finite number as JSON writes it; JSON writes NaN and ±Infinity as null. */
function num(n: number): string {
  if (Number.isInteger(n) || !Number.isFinite(n)) return Number.isFinite(n) ? String(n) : 'null'
  // A latency in whole microseconds (the observer rounds to them): V8's shortest-digits
  // formatting of a fraction costs ~10× an integer's, so it is written from its thousandths. n is
  // the double nearest m/1000, a decimal of at most 15 significant digits from 0.001 up, which
  // Number#toString writes as exactly those digits, without an exponent (ECMA-262 Number::toString).
  const m = Math.round(n * 1000)
  if (m / 1000 !== n || m <= 0 || m >= 1e15) return String(n)
  const whole = Math.floor(m / 1000)
  const r = m - whole * 1000
  const frac = r % 100 === 0 ? String(r / 100) : r % 10 === 0 ? (r < 100 ? '0' : '') + String(r / 10) : (r < 10 ? '00' : r < 100 ? '0' : '') + String(r)
  return `${whole}.${frac}`
}

/**
 * A string as JSON: quoted as it is when nothing in it needs an escape (printable ASCII without
 * `"` or `\`), else by JSON.stringify (control characters, lone surrogates, quotes).
 */
function str(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(s)
  }
  return `"${s}"`
}

// Route and model names: a few per config, escaped once each.
const NAMES = new Map<string, string>()
const MAX_NAMES = 4096

function name(s: string): string {
  let j = NAMES.get(s)
  if (j === undefined) {
    j = str(s)
    if (NAMES.size >= MAX_NAMES) NAMES.clear()
    NAMES.set(s, j)
  }
  return j
}

// The last error message and its JSON: a route whose answers lack a prediction (or a model that
// fails) repeats the same message, with quotes to escape, on every record.
let lastMessage = ''
let lastMessageJson = '""'

function message(s: string): string {
  if (s !== lastMessage) {
    lastMessageJson = str(s)
    lastMessage = s
  }
  return lastMessageJson
}

// A route's shares are one frozen object per bound plan: serialised once.
const SHARES = new WeakMap<object, string>()

function sharesJson(shares: object): string {
  let j = SHARES.get(shares)
  if (j === undefined) {
    j = JSON.stringify(shares)
    if (Object.isFrozen(shares)) SHARES.set(shares, j)
  }
  return j
}

// isoTime(): the minute's text is made once a minute, the seconds and milliseconds per call.
let minuteStart = Number.NaN
let minutePrefix = ''

/**
 * `new Date(ms).toISOString()` for a whole number of milliseconds: a record's `ts`. V8 formats a
 * date in about a microsecond; within one minute only the last 6 characters change.
 */
export function isoTime(ms: number): string {
  const rest = ms - minuteStart
  if (!(rest >= 0 && rest < 60_000) || !Number.isInteger(ms)) {
    const text = new Date(ms).toISOString()
    // Years past 9999 (or before 0) have a sign and 6 digits; never cached, never in a record.
    if (text.length !== 24 || !Number.isInteger(ms)) return text
    minuteStart = ms - (ms % 60_000 + 60_000) % 60_000
    minutePrefix = text.slice(0, 17)
    return text
  }
  const sec = Math.floor(rest / 1000)
  const milli = rest % 1000
  return `${minutePrefix}${sec < 10 ? '0' : ''}${sec}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`
}
