import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { newDecision, type Decision } from '../../plan/index.js'
import type { RequestTrace } from '../../tracing/types.js'
import type { H2Sessions } from '../../upstream/h2-sessions.js'
import {
  CANCELLED, DEADLINE_EXCEEDED, FrameScanner, INTERNAL, OK, UNAVAILABLE, encodeMessage, httpCodeOf, parseStatus,
  parseTimeout, statusName, statusOfHttp,
} from '../../upstream/grpc-wire.js'
import type { ProxyContext } from '../exchange.js'
import type { Arm, RouteRuntime, Runtime } from '../runtime.js'
import {
  kCall, onClientDrain, onDeadline, onUpstreamClose, onUpstreamData, onUpstreamError, onUpstreamResponse, onUpstreamTrailers,
  type Tagged,
} from './events.js'
import type { GrpcMirror } from './mirror.js'
import { answerHeaders, countCall, statusTrailers, trailersOf, trailersOnly, upstreamHeaders, type GrpcAnomaly } from './outcome.js'

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = constants

/** What every gRPC call shares: the HTTP listener's context and the upstream sessions. */
export interface GrpcContext extends ProxyContext {
  readonly sessions: H2Sessions
}

export const READING = 0
export const DISPATCHED = 1
export const DONE = 2

/** Options node:http2 copies on every call: one object each, never written. */
const STREAMING: { waitForTrailers: boolean } = Object.freeze({ waitForTrailers: true })
const END: { endStream: boolean } = Object.freeze({ endStream: true })

/**
 * A decided gRPC call's way to its model and back: the model's call over a pooled HTTP/2 session
 * (each chunk forwarded as it comes, framing untouched, one deadline timer), the answer and its
 * trailers relayed, resets passed on both ways, the outcome counted by grpc-status, and the
 * router's own statuses. GrpcCall (call.ts) adds the client's side and the decision.
 */
export abstract class GrpcForward {
  route: RouteRuntime | undefined
  arm: Arm | undefined
  readonly decision: Decision = newDecision()
  protected state = READING
  protected readonly scanner: FrameScanner
  protected clientEnded = false
  protected upstream: ClientHttp2Stream | null = null
  /** Shadows (or records) on the route: the mirrors and the answer kept for them; else null. */
  protected mirror: GrpcMirror | null = null
  /** This call's trace; null unless tracing is on. */
  protected trace: RequestTrace | null = null
  #trailers: OutgoingHttpHeaders | null = null
  #responded = false
  #timer: NodeJS.Timeout | undefined
  #start = 0
  #upstreamError: Error | null = null
  #traceEnded = false

  constructor(
    readonly ctx: GrpcContext,
    readonly stream: ServerHttp2Stream,
    readonly incoming: IncomingHttpHeaders,
    readonly runtime: Runtime,
    readonly path: string,
    readonly requestId: string,
  ) {
    this.scanner = new FrameScanner(runtime.plan.maxBodyBytes)
  }

  /** @internal The client's side (call.ts): its messages, its end, and room again on the model's stream. */
  abstract onClientData(chunk: Buffer): void
  /** @internal */ abstract onClientEnd(): void
  /** @internal */ abstract onUpstreamDrain(): void

  /** @internal The client reset the call or went away before its answer ended. */
  onClientClose(): void {
    if (this.state === DONE) return
    const wasDispatched = this.state === DISPATCHED
    this.state = DONE
    clearTimeout(this.#timer)
    // RST_STREAM onward: the model stops work nobody will read.
    this.upstream?.close(NGHTTP2_CANCEL)
    this.route?.clientAborts.inc()
    if (wasDispatched && this.arm !== undefined) this.countCall(this.arm, CANCELLED, false)
  }

  /** @internal */ onWantTrailers(): void {
    this.stream.sendTrailers(this.#trailers ?? { 'grpc-status': String(INTERNAL) })
  }

  // --- forwarding ----------------------------------------------------------------------------------

  /** Opens the model's call (`initial`: bytes read before deciding, sent first) and its deadline. */
  protected dispatch(arm: Arm, initial: Buffer | null): void {
    const asked = parseTimeout(this.incoming['grpc-timeout'])
    const timeoutMs = asked < 0 ? arm.timeoutMs : Math.min(asked, arm.timeoutMs)
    const headers = upstreamHeaders(this.incoming, arm.basePath + this.path, timeoutMs, this.requestId)
    // The model is told the trace, naming the upstream call's span (the client's traceparent is replaced).
    if (this.trace !== null) {
      const tp = this.trace.upstream([], arm.model)
      for (let i = 0; i + 1 < tp.length; i += 2) headers[tp[i] as string] = tp[i + 1]
    }
    this.#start = performance.now()
    this.state = DISPATCHED
    let up: ClientHttp2Stream
    try {
      // No options: a POST's stream stays open for the messages (node:http2's default).
      up = this.ctx.sessions.get(arm.origin).request(headers)
    } catch (err) {
      this.#upstreamError = err as Error
      return this.#modelFailed(UNAVAILABLE, `cannot reach model "${arm.model}": ${(err as Error).message}`, 'refused')
    }
    ;(up as ClientHttp2Stream & Tagged)[kCall] = this
    this.upstream = up
    up.on('response', onUpstreamResponse)
    up.on('data', onUpstreamData)
    up.on('trailers', onUpstreamTrailers)
    up.on('close', onUpstreamClose)
    up.on('error', onUpstreamError)
    this.#timer = setTimeout(onDeadline, timeoutMs, this)
    if (initial !== null) up.write(initial)
    if (this.clientEnded) {
      up.end()
      this.sendShadows()
    }
  }

  /** The client's request is all in: a unary call goes to the route's shadows (mirror.ts). */
  protected sendShadows(): void {
    this.mirror?.send(this, this.route as RouteRuntime, this.arm as Arm, this.decision.userId, this.trace, this.scanner.messages)
  }

  /** @internal */ onUpstreamResponse(headers: IncomingHttpHeaders): void {
    if (this.state !== DISPATCHED) return
    const status = Number(headers[':status'])
    const arm = this.arm as Arm
    if (status !== 200) {
      this.anomaly('upstream_bad_status')
      this.upstream?.close(NGHTTP2_CANCEL)
      return this.#modelFailed(statusOfHttp(status), `model "${arm.model}" answered HTTP ${status}, not a gRPC response`, 'other')
    }
    const out = answerHeaders(headers, this.requestId, arm)
    const onlyTrailers = headers['grpc-status'] !== undefined
    this.#responded = true
    if (this.stream.destroyed || this.stream.closed) return
    this.stream.respond(out, onlyTrailers ? END : STREAMING)
    if (onlyTrailers) this.#finish(parseStatus(headers['grpc-status']))
  }

  /** @internal */ onUpstreamData(chunk: Buffer): void {
    if (this.state !== DISPATCHED) return
    this.mirror?.keepAnswer(chunk)
    if (!this.stream.write(chunk)) {
      ;(this.upstream as ClientHttp2Stream).pause()
      this.stream.once('drain', onClientDrain)
    }
  }

  /** @internal */ onClientDrain(): void {
    if (this.state === DISPATCHED) this.upstream?.resume()
  }

  /** @internal */ onUpstreamTrailers(trailers: IncomingHttpHeaders): void {
    this.#trailers = trailersOf(trailers)
  }

  /** @internal */ onUpstreamError(err: Error): void {
    this.#upstreamError = err
  }

  /**
   * @internal The model's stream closed: after its answer ended (its trailers go to the client,
   * its status to the metrics), or reset before that.
   */
  onUpstreamClose(): void {
    if (this.state !== DISPATCHED) return
    const up = this.upstream as ClientHttp2Stream
    const code = up.rstCode ?? NGHTTP2_INTERNAL_ERROR
    // readableEnded: 'end' was emitted, the answer came whole (a reset also closes the stream).
    if (code === NGHTTP2_NO_ERROR && up.readableEnded) return this.#upstreamDone()
    const err = this.#upstreamError as (Error & { code?: string; cause?: { code?: string } }) | null
    const refused = err?.code === 'ECONNREFUSED' || err?.cause?.code === 'ECONNREFUSED'
    if (!refused) this.anomaly('upstream_reset')
    const arm = this.arm as Arm
    if (this.#responded) {
      // The answer had started: the reset goes on to the client, as the model sent it.
      this.state = DONE
      clearTimeout(this.#timer)
      arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason: 'reset' })
      this.countCall(arm, UNAVAILABLE, true)
      if (!this.stream.destroyed) this.stream.close(code === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code)
      return
    }
    const why = refused ? `cannot reach model "${arm.model}" (connection refused)`
      : err !== null ? `model "${arm.model}" failed the call: ${err.message}` : `model "${arm.model}" reset the call (RST_STREAM ${code})`
    this.#modelFailed(UNAVAILABLE, why, refused ? 'refused' : 'reset')
  }

  #upstreamDone(): void {
    const arm = this.arm as Arm
    if (!this.#responded) return this.#modelFailed(INTERNAL, `model "${arm.model}" ended the call without an answer`, 'other')
    if (this.#trailers === null || this.#trailers['grpc-status'] === undefined) {
      // A response with no grpc-status has no outcome; clients read it as INTERNAL, so do we.
      this.anomaly('upstream_no_trailers')
      this.#trailers = { 'grpc-status': String(INTERNAL), 'grpc-message': encodeMessage(`model "${arm.model}" ended the call without trailers`) }
    }
    this.#finish(parseStatus(this.#trailers['grpc-status']))
    this.stream.end()
  }

  /** @internal The call's deadline: the client's grpc-timeout, bounded by the model's timeout_ms. */
  onDeadline(): void {
    if (this.state !== DISPATCHED) return
    this.upstream?.close(NGHTTP2_CANCEL)
    this.#modelFailed(DEADLINE_EXCEEDED, `model "${(this.arm as Arm).model}" did not answer within the deadline`, 'timeout')
  }

  // --- ending ----------------------------------------------------------------------------------------

  /** The model's call ended with a status the client gets as it came (counted by its status). */
  #finish(status: number): void {
    this.state = DONE
    clearTimeout(this.#timer)
    this.countCall(this.arm as Arm, status, true)
  }

  /** The model failed (unreachable, reset, deadline, not gRPC): the client gets `status`, the model the error. */
  #modelFailed(status: number, message: string, reason: 'refused' | 'reset' | 'timeout' | 'other'): void {
    const arm = this.arm as Arm
    arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason })
    this.state = DONE
    clearTimeout(this.#timer)
    this.countCall(arm, status, true)
    this.#send(status, message)
  }

  /** The call's outcome to the metrics, its span and its observation. */
  protected countCall(arm: Arm, status: number, answered: boolean): void {
    countCall(arm, status, answered, (performance.now() - this.#start) / 1000)
    const cancelled = answered ? null : 'the client cancelled the call'
    this.#endTrace(answered ? httpCodeOf(status) : 0, status, cancelled)
    this.mirror?.primaryDone(arm.model, answered ? httpCodeOf(status) : 0, performance.now() - this.#start, cancelled)
  }

  /** The router ends the call itself with a status: the model's call (if any) is cancelled. */
  protected status(status: number, message: string, anomaly: GrpcAnomaly | null): void {
    if (anomaly !== null) this.anomaly(anomaly)
    this.#endTrace(httpCodeOf(status), status, message)
    if (this.state === DISPATCHED) this.mirror?.primaryDone((this.arm as Arm).model, 0, performance.now() - this.#start, message)
    this.state = DONE
    clearTimeout(this.#timer)
    this.upstream?.close(NGHTTP2_CANCEL)
    this.#send(status, message)
  }

  /** Ends the call's span once: the HTTP code of its grpc-status, and an error unless it is OK. */
  #endTrace(httpStatus: number, status: number, message: string | null): void {
    const trace = this.trace
    if (trace === null || this.#traceEnded) return
    this.#traceEnded = true
    trace.end(httpStatus, status === OK && message === null ? null : message ?? `grpc-status ${statusName(status)}`)
  }

  protected anomaly(kind: GrpcAnomaly): void {
    this.ctx.metrics.grpcAnomalies.labels({ kind }).inc()
  }

  #send(status: number, message: string): void {
    const stream = this.stream
    if (stream.destroyed || stream.closed) return
    if (!stream.headersSent) return stream.respond(trailersOnly(status, message, this.requestId, this.arm), END)
    if (this.#responded) {
      this.#trailers = statusTrailers(status, message)
      stream.end()
      return
    }
    stream.close(NGHTTP2_INTERNAL_ERROR)
  }
}
