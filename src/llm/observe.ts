// What the observer does differently on api: openai routes: answers are assembled text (streamed
// or not) compared by the text cascade, and each side's tokens and cost go in its record.
import { compareText, type TextLayer } from '../compare/index.js'
import type { ModelPrice } from '../config/types.js'
import { assembleAnswer, type AssembledAnswer } from './assemble.js'
import { decode, isGzip } from './encoded.js'

export type AnswerRead = { ok: true; value: unknown; answer: AssembledAnswer } | { ok: false; reason: string; transport?: true }

/** The most a captured compressed answer may decode to for its comparison. */
const MAX_DECODED_BYTES = 16 * 1024 * 1024

/** The answer of one side: its text (with tool calls when it made any) as the record's prediction. */
export function readAnswer(status: number, body: Buffer | undefined, error: string | null): AnswerRead {
  if (error !== null) return { ok: false, reason: error, transport: true }
  if (status < 200 || status > 299) return { ok: false, reason: `answered HTTP ${status}` }
  if (body === undefined) return { ok: false, reason: 'no response body captured' }
  // A compressed answer (gzip, told by its magic bytes: the capture keeps no headers) is read decoded,
  // bounded: off the request path, as every comparison.
  const plain = isGzip(body) ? decode(body, 'gzip', MAX_DECODED_BYTES) : body
  if (plain === null) return { ok: false, reason: `a gzip answer that does not decode within ${MAX_DECODED_BYTES} bytes` }
  const answer = assembleAnswer(plain)
  if (answer === null) return { ok: false, reason: 'not an OpenAI-style answer (neither SSE events nor a JSON body)' }
  const value = answer.toolCalls.length === 0 ? answer.text : { text: answer.text, tool_calls: answer.toolCalls }
  return { ok: true, value, answer }
}

/** A record's usage: tokens as reported, cost by the model's price (null: unknown or unpriced). */
export interface RecordUsage {
  input_tokens: number | null
  output_tokens: number | null
  cost: number | null
}

export function usageOf(answer: AssembledAnswer, price: ModelPrice | null): RecordUsage {
  const i = answer.inputTokens
  const o = answer.outputTokens
  const cost = price === null || (i === null && o === null) ? null : ((i ?? 0) * price.input_per_million_tokens + (o ?? 0) * price.output_per_million_tokens) / 1e6
  return { input_tokens: i, output_tokens: o, cost }
}

/** The record's comparison for two assembled answers; undecided pairs are not agreements. */
export function compareAnswers(a: AssembledAnswer, b: AssembledAnswer): { agree: boolean; abs_diff_max: null; abs_diff_mean: null; fraction_agree: number; layer: TextLayer } {
  const c = compareText(a, b)
  return { agree: c.agree === true, abs_diff_max: null, abs_diff_mean: null, fraction_agree: c.agree === true ? 1 : 0, layer: c.layer }
}
