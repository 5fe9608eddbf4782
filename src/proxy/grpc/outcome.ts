// What a gRPC call sends and counts at its ends: the metadata passed on (and the router's own),
// the answer's headers and trailers, the status a refusal gets, and the outcome by grpc-status.
import { sensitiveHeaders, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import {
  INTERNAL, RESOURCE_EXHAUSTED, UNIMPLEMENTED, encodeMessage, formatTimeout, httpCodeOf, statusName, type FrameProblem,
} from '../../upstream/grpc-wire.js'
import type { ProxyContext } from '../exchange.js'
import { countResponse, type Arm } from '../runtime.js'

/** Kinds of modelsplit_grpc_anomalies_total. */
export type GrpcAnomaly =
  | 'unimplemented' | 'not_grpc' | 'http1_client' | 'bad_frame' | 'too_large' | 'compressed' | 'unsupported_encoding'
  | 'upstream_reset' | 'upstream_no_trailers' | 'upstream_bad_status' | 'session_error' | 'shutting_down'

/**
 * Request metadata passed on to the model: not pseudo-headers (rebuilt), nor the router's own
 * (`grpc-timeout`, `x-request-id`, `x-modelsplit-model`), nor connection-specific ones (RFC 9113
 * §8.2.2). A switch on the length first: this runs for every key of every call.
 */
export function isForwarded(key: string): boolean {
  if (key.charCodeAt(0) === 58 /* : */) return false
  switch (key.length) {
    case 4: return key !== 'host'
    case 10: return key !== 'connection' && key !== 'keep-alive'
    case 12: return key !== 'grpc-timeout' && key !== 'x-request-id'
    case 18: return key !== 'x-modelsplit-model'
    default: return true
  }
}

/**
 * x-request-id is sent never-indexed (RFC 7541 §6.2.3, node:http2's sensitiveHeaders): a value
 * new on every call would only take a place in the session's HPACK table, pushing out the
 * entries that do repeat (content-type, te, the model's name) so they went literal again.
 */
const UNIQUE: readonly string[] = Object.freeze(['x-request-id'])

/** The metadata for the model's call: the client's, with the call's deadline and request id. */
export function upstreamHeaders(incoming: IncomingHttpHeaders, path: string, timeoutMs: number, requestId: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': path }
  for (const key in incoming) if (isForwarded(key)) headers[key] = incoming[key]
  headers['grpc-timeout'] = timeoutHeader(timeoutMs)
  headers['x-request-id'] = requestId
  ;(headers as Record<symbol, unknown>)[sensitiveHeaders] = UNIQUE
  return headers
}

let lastTimeoutMs = -1
let lastTimeout = ''

/** formatTimeout, remembering the last value: calls without grpc-timeout all ask for their model's timeout_ms. */
function timeoutHeader(ms: number): string {
  if (ms !== lastTimeoutMs) {
    lastTimeout = formatTimeout(ms)
    lastTimeoutMs = ms
  }
  return lastTimeout
}

/**
 * The answer's headers for the client: the model's, with the call's request id and model, written
 * into the object node:http2 handed over (a response's only pseudo-header is `:status`, checked to
 * be 200 by the caller, so nothing needs leaving out and no copy is made per call).
 */
export function answerHeaders(headers: IncomingHttpHeaders, requestId: string, arm: Arm): OutgoingHttpHeaders {
  const out = headers as OutgoingHttpHeaders
  out['x-request-id'] = requestId
  out['x-modelsplit-model'] = modelHeader(arm)
  ;(out as Record<symbol, unknown>)[sensitiveHeaders] = UNIQUE
  return out
}

/**
 * The model's trailers as the client gets them: the object node:http2 handed over, as it is
 * (RFC 9113 §8.1: trailers carry no pseudo-headers, and nghttp2 resets a stream whose do).
 */
export function trailersOf(trailers: IncomingHttpHeaders): OutgoingHttpHeaders {
  return trailers as OutgoingHttpHeaders
}

/** A status the router sets itself, as trailers. */
export function statusTrailers(status: number, message: string): OutgoingHttpHeaders {
  return { 'grpc-status': String(status), 'grpc-message': encodeMessage(message) }
}

/**
 * A call the router ends before any answer: trailers-only (PROTOCOL-HTTP2.md: the status in the
 * headers), with the request id and, once decided, the model.
 */
export function trailersOnly(status: number, message: string, requestId: string, arm: Arm | undefined): OutgoingHttpHeaders {
  const head: OutgoingHttpHeaders = { ':status': 200, 'content-type': 'application/grpc', ...statusTrailers(status, message), 'x-request-id': requestId }
  if (arm !== undefined) head['x-modelsplit-model'] = modelHeader(arm)
  return head
}

/** The status, message and anomaly the router answers a client's bad bytes with. */
export function refusal(problem: NonNullable<FrameProblem> | 'unsupported_encoding', maxBytes: number, encoding: unknown): [number, string, GrpcAnomaly] {
  if (problem === 'too_large') return [RESOURCE_EXHAUSTED, `a request message is larger than limits.max_body_bytes (${maxBytes} bytes)`, 'too_large']
  if (problem === 'bad_frame') return [INTERNAL, 'malformed gRPC message framing (a length prefix is bad or the stream ended inside a message)', 'bad_frame']
  return [UNIMPLEMENTED, `grpc-encoding ${String(encoding)} cannot be read by the router (a route reads the model's name): send identity or gzip`, 'unsupported_encoding']
}

const modelHeaders = new WeakMap<Arm, string>()

/**
 * The arm's model name as metadata: HTTP/2 header values are visible ASCII, so a name outside it
 * is percent-encoded as UTF-8 (as grpc-message is); computed once per arm.
 */
function modelHeader(arm: Arm): string {
  let v = modelHeaders.get(arm)
  if (v === undefined) modelHeaders.set(arm, v = encodeMessage(arm.model))
  return v
}

/** Children of modelsplit_grpc_calls_total by arm and status, bound on first use. */
const callChildren = new WeakMap<Arm, (ReturnType<ProxyContext['metrics']['grpcCalls']['labels']> | undefined)[]>()

/**
 * Counts a call's outcome by its grpc-status; an answered one also in the model's requests (as
 * its status's HTTP code) and latency. A client's cancel is not the model's outcome
 * (modelsplit_client_aborts_total has it).
 */
export function countCall(arm: Arm, status: number, answered: boolean, seconds: number): void {
  let children = callChildren.get(arm)
  if (children === undefined) callChildren.set(arm, children = [])
  let child = children[status]
  if (child === undefined) children[status] = child = arm.metrics.grpcCalls.labels({ route: arm.route, model: arm.model, grpc_status: statusName(status) })
  child.inc()
  if (answered) countResponse(arm, httpCodeOf(status), seconds)
}
