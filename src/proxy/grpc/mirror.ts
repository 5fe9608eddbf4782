// Mirrors of a unary gRPC call and the keeping of its answer for their comparison: built only on
// routes with shadows (or records), so a call on any other route carries none of this state.
import type { IncomingHttpHeaders } from 'node:http2'
import { gunzipSync } from 'node:zlib'
import { isShadowed } from '../../plan/index.js'
import type { Observation } from '../../shadow/index.js'
import type { RequestTrace } from '../../tracing/types.js'
import { formatTimeout } from '../../upstream/grpc-wire.js'
import type { Arm, RouteRuntime } from '../runtime.js'
import type { GrpcContext } from './forward.js'
import { isForwarded } from './outcome.js'
import { shadowBody } from './route.js'

/** What a mirror needs to know of the call it copies. */
export interface MirroredCall {
  readonly ctx: GrpcContext
  readonly incoming: IncomingHttpHeaders
  readonly path: string
  readonly requestId: string
}

/**
 * One call's observation (the pairing of its answer with its mirrors'), the request's bytes as
 * the client sent them (for the mirrors) and the answer's (for the comparison), each kept up to
 * its limit.
 */
export class GrpcMirror {
  /** null: not kept, or past max_mirror_body_bytes. */
  #request: Buffer[] | null = []
  #requestBytes = 0
  #requestTooLarge = false
  /** null: not kept, or past max_capture_bytes. */
  #answer: Buffer[] | null = []
  #answerBytes = 0
  #released = false
  #observed = false

  constructor(
    readonly obs: Observation,
    readonly maxRequestBytes: number,
    readonly maxAnswerBytes: number,
  ) {
    // Open until the mirrors are sent (at the request's end) or the call ends without them.
    obs.hold()
  }

  keepRequest(chunk: Buffer): void {
    if (this.#request === null) return
    this.#requestBytes += chunk.length
    if (this.#requestBytes > this.maxRequestBytes) {
      this.#request = null
      this.#requestTooLarge = true
      return
    }
    this.#request.push(chunk)
  }

  keepAnswer(chunk: Buffer): void {
    if (this.#answer === null) return
    this.#answerBytes += chunk.length
    if (this.#answerBytes <= this.maxAnswerBytes) this.#answer.push(chunk)
    else this.#answer = null
  }

  /**
   * The client's request is all in: a unary call (`messages` is 1) is mirrored to the route's
   * shadows under the same gates as HTTP's (sampling by user, max_in_flight, breaker, capture
   * budget). A streaming call (any other number of messages) is not mirrored.
   */
  send(call: MirroredCall, route: RouteRuntime, arm: Arm, userId: string | undefined, trace: RequestTrace | null, messages: number): void {
    const obs = this.obs
    if (this.#released) return
    const body = this.#request === null ? null : Buffer.concat(this.#request, this.#requestBytes)
    this.#request = null
    if (route.plan.includeInputs && route.plan.config.record) this.#keepInput(body, messages, call.incoming['grpc-encoding'])
    if (messages === 1 || this.#requestTooLarge) {
      let headers: string[] | undefined
      for (const target of route.shadows) {
        if (target.model === arm.model || !isShadowed(target, userId)) continue
        if (body === null) {
          target.dropped.body_too_large.inc()
          obs.shadowSkipped(target, 'body_too_large')
          continue
        }
        // The gate (in flight, breaker, shutting down) is asked before anything is built for the mirror.
        const refused = call.ctx.shadows.refuse(target)
        if (refused !== null && trace === null) {
          obs.shadowSkipped(target, refused)
          continue
        }
        headers ??= shadowHeaders(call)
        const mirror = [...headers, 'grpc-timeout', formatTimeout(target.timeoutMs)]
        const traced = trace === null ? null : trace.shadow(mirror, target.model)
        if (refused !== null) {
          // Traced: the dropped mirror still gets its span, saying why.
          obs.shadowSkipped(target, refused)
          traced?.span?.dropped(refused)
          continue
        }
        if (traced !== null && traced.span !== null) obs.traceShadow(target, traced.span)
        const shadowed = shadowBody(body, target.modelName, call.path, call.incoming['grpc-encoding'])
        call.ctx.shadows.send(target, 'POST', call.path, '', traced === null ? mirror : traced.headers, shadowed, obs)
      }
    }
    this.release()
  }

  /**
   * The record's input: a unary call's one message, unframed and uncompressed (decoded to tensors
   * when the record is written); a streaming call's messages are not recorded.
   */
  #keepInput(body: Buffer | null, messages: number, encoding: unknown): void {
    if (this.#requestTooLarge || body === null) return this.obs.setInput(undefined, true)
    if (messages !== 1 || body.length < 5) return this.obs.setInputOmitted('streaming')
    const message = body.subarray(5, 5 + body.readUInt32BE(1))
    if (body[0] !== 1) return this.obs.setInput(message, false)
    if (encoding !== 'gzip') return this.obs.setInputOmitted('not_decodable')
    try {
      this.obs.setInput(gunzipSync(message, { maxOutputLength: this.maxRequestBytes }), false)
    } catch {
      this.obs.setInput(undefined, true)
    }
  }

  /** Hands the primary's outcome to the observation (once): its answer if kept, else why not. */
  primaryDone(model: string, status: number, latencyMs: number, error: string | null): void {
    if (this.#observed) return
    this.#observed = true
    const answer = this.#answer
    this.#answer = null
    const body = error === null && answer !== null ? Buffer.concat(answer, this.#answerBytes) : undefined
    const why = error ?? (answer === null ? `response over limits.max_capture_bytes (${this.maxAnswerBytes} bytes)` : null)
    this.obs.primaryDone(model, status, latencyMs, body, why, null)
    this.release()
  }

  /** Lets the observation close once nothing more will be mirrored. */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.obs.release()
  }
}

/** A mirror's metadata: the client's, marked as a shadow call, with the call's request id. */
function shadowHeaders(call: MirroredCall): string[] {
  const out = ['content-type', 'application/grpc', 'te', 'trailers', 'x-request-id', call.requestId, 'x-modelsplit-shadow', '1']
  const incoming = call.incoming
  for (const key in incoming) {
    if (!isForwarded(key) || key === 'content-type' || key === 'te') continue
    const v = incoming[key]
    if (typeof v === 'string') out.push(key, v)
  }
  return out
}
