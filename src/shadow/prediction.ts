// What a side's answer predicts, as the comparison reads it and the record writes it: JSON by the
// route's prediction rule, a gRPC call's tensors, or (prediction: auto, nothing to compare) the
// prediction's own text found by a scan instead of a parse.
import { gunzipSync } from 'node:zlib'
import { decodeInferRequest, decodeInferResponse, decodePredictRequest, decodePredictResponse, extractPrediction, parseModelJson, type Tensor } from '../compare/index.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import { readAutoPrediction, type NoPrediction } from '../record/raw-prediction.js'
import type { RawPrediction, RecordTensor } from '../record/schema.js'
import type { AssembledAnswer } from '../llm/assemble.js'
import type { PrimaryOutcome } from './pairing.js'

/** A side's prediction as the comparison reads it (the route's rule, or a gRPC call's tensors), or why it has none. */
export function predictionOf(route: RouteRuntime, status: number, body: Buffer | undefined, error: string | null): { ok: true; value: unknown } | { ok: false; reason: string; transport?: true } {
  if (error !== null) return { ok: false, reason: error, transport: true }
  if (status < 200 || status > 299) return { ok: false, reason: `answered HTTP ${status}` }
  if (body === undefined) return { ok: false, reason: 'no response body captured' }
  if (route.plan.config.grpc != null) return tensorsOf(route.plan.config.grpc.method, body)
  const parsed = parseModelJson(body.toString('utf8'))
  if (!parsed.ok) return parsed
  return extractPrediction(parsed.value, route.plan.prediction)
}

/** The primary's side when its prediction goes into the record as its own text: nothing is parsed. */
export const RAW_OK = { ok: true as const, value: null }

/**
 * A 2xx answer's prediction by `prediction: auto`, read without parsing it (record/raw-prediction.ts):
 * its text or bytes for the record, or why it has none; undefined: parse it.
 */
export function rawPredictionOf(route: RouteRuntime, primary: PrimaryOutcome): RawPrediction | NoPrediction | undefined {
  const body = primary.body
  if (body === undefined || primary.error !== null || primary.status < 200 || primary.status > 299 || route.plan.prediction !== 'auto') return undefined
  return readAutoPrediction(body)
}

/**
 * A unary gRPC answer's tensors: its one message (gunzipped if flagged compressed), decoded as a
 * TF Serving PredictResponse for /tensorflow.serving.* methods, else an OIP ModelInferResponse.
 */
function tensorsOf(method: string, body: Buffer): { ok: true; value: Tensor[] } | { ok: false; reason: string } {
  if (body.length < 5) return { ok: false, reason: 'the answer has no message' }
  const n = body.readUInt32BE(1)
  if (body.length !== 5 + n) return { ok: false, reason: 'the answer is not exactly one message (a streaming call is not compared)' }
  try {
    const msg = body[0] === 1 ? gunzipSync(body.subarray(5)) : body.subarray(5)
    return { ok: true, value: method.startsWith('/tensorflow.serving.') ? decodePredictResponse(msg) : decodeInferResponse(msg) }
  } catch (err) {
    return { ok: false, reason: `the answer's tensors cannot be read: ${(err as Error).message}` }
  }
}

/** A unary gRPC call's request tensors, decoded as its answer's are (OIP ModelInferRequest or TF Serving PredictRequest). */
export function requestTensorsOf(method: string, msg: Buffer): { ok: true; value: Tensor[] } | { ok: false } {
  try {
    return { ok: true, value: method.startsWith('/tensorflow.serving.') ? decodePredictRequest(msg) : decodeInferRequest(msg) }
  } catch {
    return { ok: false }
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

/** Tensors as JSON can hold them (RecordTensor): exact integers past 2^53 as strings, bytes as text. */
export function recordTensors(tensors: readonly Tensor[]): RecordTensor[] {
  return tensors.map((t) => ({
    name: t.name,
    datatype: t.datatype,
    shape: [...t.shape],
    data: t.data.values.map((v: number | bigint | Buffer): number | string | null => {
      if (typeof v === 'number') return Number.isFinite(v) ? v : null
      if (typeof v === 'bigint') return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v.toString()
      try {
        return STRICT_UTF8.decode(v)
      } catch {
        return `base64:${v.toString('base64')}`
      }
    }),
  }))
}

/** The assembled answer of an OpenAI route's side, if it has one. */
export function answerOf(r: { ok: boolean }): AssembledAnswer | undefined {
  return r.ok && 'answer' in r ? r.answer as AssembledAnswer : undefined
}

/** Whether a scanned answer has no prediction (as against the prediction's text or bytes). */
export function isNoPrediction(r: RawPrediction | NoPrediction): r is NoPrediction {
  return typeof r === 'object' && !Buffer.isBuffer(r)
}
