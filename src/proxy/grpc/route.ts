// Which route a gRPC call takes and what the model is sent first: the method's routes are told
// apart by the model name in the call's first message (OIP field 1, TF Serving model_spec.name),
// which is read, and rewritten per arm, on its protobuf bytes. Nothing here touches a stream.
import type { IncomingHttpHeaders } from 'node:http2'
import { gunzipSync } from 'node:zlib'
import { frame, readNameAt, rewriteNameAt } from '../../upstream/grpc-wire.js'
import type { Arm, RouteRuntime } from '../runtime.js'

const OIP_NAME = [1] as const
const TF_NAME = [1, 1] as const

/** Where the model's name is in a call's first message, by method: OIP's field 1, TF Serving's model_spec.name. */
export function namePathOf(method: string): readonly number[] {
  return method.startsWith('/tensorflow.serving.') ? TF_NAME : OIP_NAME
}

/** The call's first message, read for its model's name. */
export interface FirstMessage {
  /** The first message with its prefix as the client sent it; null: the call had none. */
  readonly message: Buffer | null
  /** Its protobuf bytes, gunzipped if they came compressed. */
  readonly payload: Buffer | null
  /** Bytes the client sent after it (the next messages of a stream). */
  readonly rest: Buffer | null
  readonly name: string
  readonly namePath: readonly number[]
}

/** Why a first message could not be read. */
export type FirstProblem = 'unsupported_encoding' | 'too_large' | 'not_protobuf'

/**
 * The route a call takes before any of its bytes arrive: the method's only route, when it neither
 * matches nor rewrites a model name (the common case: the call is forwarded as its bytes come).
 */
export function routeBeforeMessage(candidates: readonly RouteRuntime[]): RouteRuntime | undefined {
  if (candidates.length !== 1) return undefined
  const only = candidates[0] as RouteRuntime
  if (only.plan.config.grpc?.model_name != null) return undefined
  // A route whose arms go by other names on their servers must read (and rewrite) the first message.
  for (const t of only.targets) if (t.modelName !== null) return undefined
  return only
}

/**
 * Reads the model's name from the first message (null: the call has none, so its name is empty).
 * A compressed message must be opened to read the name in it: gzip only (the one every gRPC
 * implementation has); it goes on uncompressed (flag 0), which any server accepts.
 */
export function readFirst(message: Buffer | null, rest: Buffer | null, method: string, encoding: unknown, maxBytes: number): FirstMessage | FirstProblem {
  const namePath = namePathOf(method)
  let payload: Buffer | null = null
  if (message !== null) {
    payload = message.subarray(5)
    if (message[0] === 1) {
      if (encoding !== 'gzip') return 'unsupported_encoding'
      try {
        payload = gunzipSync(payload, { maxOutputLength: maxBytes })
      } catch {
        return 'too_large'
      }
    }
  }
  const name = payload === null ? '' : readNameAt(payload, namePath)
  if (name === null) return 'not_protobuf'
  return { message, payload, rest, name, namePath }
}

/** The route naming `name` in its model_name, else the one without model_name; undefined if neither. */
export function routeForName(candidates: readonly RouteRuntime[], name: string): RouteRuntime | undefined {
  let route: RouteRuntime | undefined
  let fallback: RouteRuntime | undefined
  for (const r of candidates) {
    const wanted = r.plan.config.grpc?.model_name ?? null
    if (wanted === name) route = r
    else if (wanted === null) fallback = r
  }
  return route ?? fallback
}

/** UNIMPLEMENTED's message when no route takes the name. */
export function noRouteMessage(candidates: readonly RouteRuntime[], method: string, name: string): string {
  const known = candidates.map((r) => r.plan.config.grpc?.model_name).join(', ')
  return `no route for ${method} with model name "${name}" (routes take: ${known})`
}

/**
 * The bytes the arm's model is sent before the rest of the call: the first message as it came,
 * uncompressed if it came gzipped, with the name rewritten where the arm's server knows the model
 * by another; null when the message is not protobuf that can be rewritten.
 */
export function firstBytesFor(first: FirstMessage, arm: Arm): Buffer | null {
  const message = first.message as Buffer
  let out: Buffer
  if (arm.modelName !== null && arm.modelName !== first.name) {
    const rewritten = rewriteNameAt(first.payload as Buffer, first.namePath, arm.modelName)
    if (rewritten === null) return null
    out = frame(rewritten)
  } else out = message[0] === 1 ? frame(first.payload as Buffer) : message
  return first.rest !== null && first.rest.length > 0 ? Buffer.concat([out, first.rest]) : out
}

/** The request for one shadow: its one message with the model's name rewritten where the shadow goes by another. */
export function shadowBody(body: Buffer, modelName: string | null, method: string, encoding: unknown): Buffer {
  if (modelName === null || body.length < 5) return body
  let payload = body.subarray(5)
  if (body[0] === 1) {
    if (encoding !== 'gzip') return body
    try {
      payload = gunzipSync(payload)
    } catch {
      return body
    }
  }
  const rewritten = rewriteNameAt(payload, namePathOf(method), modelName)
  return rewritten === null ? body : frame(rewritten)
}

/** The route reads its user id from a `-bin` metadata key (base64 on the wire). */
export function hasBinarySource(route: RouteRuntime): boolean {
  for (const s of route.plan.sources) if (s.kind === 'header' && s.name.endsWith('-bin')) return true
  return false
}

/**
 * Metadata with the route's `-bin` sources base64-decoded, as Latin-1 text of their bytes, which
 * is how node:http hands a header's bytes to the decision: the same bytes hash alike on both.
 */
export function decodeBinary(incoming: IncomingHttpHeaders, route: RouteRuntime): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = { ...incoming }
  for (const s of route.plan.sources) {
    if (s.kind !== 'header' || !s.name.endsWith('-bin')) continue
    const v = incoming[s.name]
    const text = typeof v === 'string' ? v : v?.[0]
    // gRPC joins repeated -bin values with ","; the first is the id.
    if (text !== undefined) out[s.name] = Buffer.from(text.split(',')[0] as string, 'base64').toString('latin1')
  }
  return out
}
