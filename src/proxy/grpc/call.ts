import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { gunzipSync } from 'node:zlib'
import { unitHash } from '../../experiment/index.js'
import { decide, isShadowed, newDecision, type BodyView, type Decision, type RequestView } from '../../plan/index.js'
import type { Observation } from '../../shadow/index.js'
import type { H2Sessions } from '../../upstream/h2-sessions.js'
import type { RequestTrace } from '../../tracing/types.js'
import type { ProxyContext } from '../exchange.js'
import { countResponse, type Arm, type RouteRuntime, type Runtime } from '../runtime.js'
import {
  CANCELLED, DEADLINE_EXCEEDED, FrameScanner, INTERNAL, INVALID_ARGUMENT, OK, RESOURCE_EXHAUSTED, UNAVAILABLE, UNIMPLEMENTED,
  encodeMessage, formatTimeout, frame, httpCodeOf, parseStatus, parseTimeout, readNameAt, rewriteNameAt, statusName,
  statusOfHttp, type FrameProblem,
} from '../../upstream/grpc-wire.js'

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = constants

/** What every gRPC call shares: the HTTP listener's context and the upstream sessions. */
export interface GrpcContext extends ProxyContext {
  readonly sessions: H2Sessions
}

/** Kinds of modelsplit_grpc_anomalies_total. */
export type GrpcAnomaly =
  | 'unimplemented' | 'not_grpc' | 'http1_client' | 'bad_frame' | 'too_large' | 'compressed' | 'unsupported_encoding'
  | 'upstream_reset' | 'upstream_no_trailers' | 'upstream_bad_status' | 'session_error' | 'shutting_down'

const READING = 0
const DISPATCHED = 1
const DONE = 2

/** No gRPC route reads a body for its user id: the view's body is always this (never written). */
const NO_BODY: BodyView = Object.freeze({ raw: undefined, parsed: undefined, state: 'empty', truncated: false }) as BodyView

/** Request metadata a call never forwards: pseudo-headers are rebuilt, and these are the router's. */
const NOT_FORWARDED = new Set(['grpc-timeout', 'x-request-id', 'x-modelsplit-model', 'connection', 'keep-alive', 'host'])

const kCall = Symbol('modelsplit.grpcCall')
type Tagged = { [kCall]?: GrpcCall }

/** Children of modelsplit_grpc_calls_total by arm and status, bound on first use. */
const callChildren = new WeakMap<Arm, (ReturnType<ProxyContext['metrics']['grpcCalls']['labels']> | undefined)[]>()

/** Where the model's name is in a call's first message, by method: OIP's field 1, TF Serving's model_spec.name. */
export function namePathOf(method: string): readonly number[] {
  return method.startsWith('/tensorflow.serving.') ? TF_NAME : OIP_NAME
}
const OIP_NAME = [1] as const
const TF_NAME = [1, 1] as const

/**
 * One gRPC call from start to end: waits for the first message when the route needs the model's
 * name from it, decides through the same plan as HTTP, forwards over a pooled HTTP/2 session with
 * framing untouched, relays the answer and its trailers, and counts the outcome by grpc-status.
 * It is the RequestView the decision reads; listeners are module functions tagged by a symbol.
 */
export class GrpcCall implements RequestView {
  readonly method = 'POST'
  readonly query = ''
  readonly body = NO_BODY
  headers: IncomingHttpHeaders
  readonly decision: Decision = newDecision()
  route: RouteRuntime | undefined
  arm: Arm | undefined
  #state = READING
  #scanner: FrameScanner
  #pending: Buffer[] | null = null
  #pendingBytes = 0
  #clientEnded = false
  #upstream: ClientHttp2Stream | null = null
  #trailers: OutgoingHttpHeaders | null = null
  #responded = false
  #timer: NodeJS.Timeout | undefined
  #start = 0
  #upstreamError: Error | null = null
  #compressedSeen = 0
  #upstreamEnded = false
  /** Shadows on the route: the pairing of this call's answer with its mirrors'. */
  #obs: Observation | undefined
  /** This call's trace; null unless tracing is on. */
  #trace: RequestTrace | null = null
  #traceEnded = false
  #released = false
  #observed = false
  /** The request's bytes as the client sent them, for mirrors (null: not kept, or past max_mirror_body_bytes). */
  #mirror: Buffer[] | null = null
  #mirrorBytes = 0
  #mirrorTooLarge = false
  /** The answer's bytes, for comparison (null: not kept, or past max_capture_bytes). */
  #answer: Buffer[] | null = null
  #answerBytes = 0

  constructor(
    readonly ctx: GrpcContext,
    readonly stream: ServerHttp2Stream,
    readonly incoming: IncomingHttpHeaders,
    readonly runtime: Runtime,
    /** The routes of this method: one without model_name, or several told apart by it. */
    readonly candidates: readonly RouteRuntime[],
    readonly path: string,
    readonly requestId: string,
  ) {
    this.headers = incoming
    this.#scanner = new FrameScanner(runtime.plan.maxBodyBytes)
  }

  /** Starts the call: decides at once, or after the first message when a name must be read from it. */
  begin(): void {
    const stream = this.stream as ServerHttp2Stream & Tagged
    stream[kCall] = this
    stream.on('data', onClientData)
    stream.on('end', onClientEnd)
    stream.on('close', onClientClose)
    stream.on('wantTrailers', onWantTrailers)
    const only = this.candidates.length === 1 ? this.candidates[0] as RouteRuntime : undefined
    if (only !== undefined && only.plan.config.grpc?.model_name == null && !rewrites(only)) {
      this.#decide(only, null)
      return
    }
    this.#pending = []
  }

  // --- the client's side -------------------------------------------------------------------------

  /** @internal */ onClientData(chunk: Buffer): void {
    if (this.#state === DONE) return
    const problem = this.#scanner.scan(chunk)
    if (problem !== null) return this.#refuse(problem)
    if (this.#scanner.compressed > this.#compressedSeen) {
      this.ctx.metrics.grpcAnomalies.labels({ kind: 'compressed' }).inc(this.#scanner.compressed - this.#compressedSeen)
      this.#compressedSeen = this.#scanner.compressed
    }
    if (this.#state === DISPATCHED) {
      if (this.#mirror !== null) this.#keepRequest(chunk)
      const up = this.#upstream as ClientHttp2Stream
      if (!up.write(chunk)) {
        this.stream.pause()
        up.once('drain', onUpstreamDrain)
      }
      return
    }
    const pending = this.#pending as Buffer[]
    pending.push(chunk)
    this.#pendingBytes += chunk.length
    if (this.#pendingBytes < 5) return
    const buf = pending.length === 1 ? pending[0] as Buffer : Buffer.concat(pending, this.#pendingBytes)
    const end = 5 + buf.readUInt32BE(1)
    if (buf.length < end) {
      pending.length = 0
      pending.push(buf)
      return
    }
    this.#pending = null
    this.#first(buf.subarray(0, end), buf.subarray(end))
  }

  /** @internal */ onClientEnd(): void {
    this.#clientEnded = true
    if (this.#state === DONE) return
    if (!this.#scanner.atBoundary) return this.#refuse('bad_frame')
    if (this.#state === DISPATCHED) {
      this.#upstream?.end()
      this.#sendShadows()
      return
    }
    // No message at all: no name to read, so the route without model_name (if any) takes it.
    this.#pending = null
    this.#first(null, null)
  }

  /** @internal The client reset the call or went away before its answer ended. */
  onClientClose(): void {
    if (this.#state === DONE) return
    const wasDispatched = this.#state === DISPATCHED
    this.#state = DONE
    clearTimeout(this.#timer)
    // RST_STREAM onward: the model stops work nobody will read.
    this.#upstream?.close(NGHTTP2_CANCEL)
    this.route?.clientAborts.inc()
    if (wasDispatched && this.arm !== undefined) this.#countCall(this.arm, CANCELLED, false)
  }

  /** @internal */ onWantTrailers(): void {
    this.stream.sendTrailers(this.#trailers ?? { 'grpc-status': String(INTERNAL) })
  }

  /** @internal */ onUpstreamDrain(): void {
    if (this.#state === DISPATCHED) this.stream.resume()
  }

  // --- deciding ------------------------------------------------------------------------------------

  /** The first message is in (or the call has none): read the name, pick the route, decide. */
  #first(message: Buffer | null, rest: Buffer | null): void {
    const namePath = namePathOf(this.path)
    let payload: Buffer | null = null
    if (message !== null) {
      payload = message.subarray(5)
      if (message[0] === 1) {
        // A compressed message must be opened to read the name in it: gzip only (the one every
        // gRPC implementation has); it goes on uncompressed (flag 0), which any server accepts.
        if (this.incoming['grpc-encoding'] !== 'gzip') return this.#refuse('unsupported_encoding')
        try {
          payload = gunzipSync(payload, { maxOutputLength: this.runtime.plan.maxBodyBytes })
        } catch {
          return this.#refuse('too_large')
        }
      }
    }
    const name = payload === null ? '' : readNameAt(payload, namePath)
    if (name === null) return this.#status(INVALID_ARGUMENT, 'the request message is not valid protobuf', 'bad_frame')
    let route: RouteRuntime | undefined
    let fallback: RouteRuntime | undefined
    for (const r of this.candidates) {
      const wanted = r.plan.config.grpc?.model_name ?? null
      if (wanted === name) route = r
      else if (wanted === null) fallback = r
    }
    route ??= fallback
    if (route === undefined) {
      const known = this.candidates.map((r) => r.plan.config.grpc?.model_name).join(', ')
      return this.#status(UNIMPLEMENTED, `no route for ${this.path} with model name "${name}" (routes take: ${known})`, 'unimplemented')
    }
    this.#decide(route, { message, payload, rest, name, namePath })
  }

  #decide(route: RouteRuntime, first: First | null): void {
    this.route = route
    const d = this.decision
    if (hasBinarySource(route)) this.headers = decodeBinary(this.incoming, route)
    decide(route.plan, this, d)
    const tracing = this.ctx.tracing
    if (tracing !== null) {
      this.#trace = tracing.request(route.name, 'POST', this.incoming)
      this.#trace.decided(d.target < 0 ? undefined : (route.targets[d.target] as Arm).model, d.source, d.missing)
    }
    if (d.unknownOverride) route.missingCounters.unknown_override.inc()
    if (d.missing !== null) route.missingCounters[d.missing].inc()
    if (d.target < 0) {
      this.ctx.metrics.requestErrors.inc({ route: route.name, code: 'MS_USER_ID_REQUIRED' })
      return this.#status(INVALID_ARGUMENT, `route "${route.name}" needs a user id (${route.plan.sourceList}) and rejects calls without one`, null)
    }
    const arm = route.targets[d.target] as Arm
    this.arm = arm
    if (d.source === 'hash') {
      arm.assignedByHash.inc()
      arm.assigned.count++
      const users = arm.users.sample
      if (users !== null) users.see(unitHash(d.userId as string), d.target)
    } else if (d.source === 'override') arm.assignedByOverride.inc()
    else arm.assignedByMissing.inc()
    if (route.plan.remembers) this.ctx.memory.remember(this.requestId, route.name, arm.model, d.userId, arm.registry?.version)
    if (route.plan.observes) {
      this.#obs = this.ctx.observer.begin(route, this.requestId, d.userId, d.source, undefined, false)
      // Open until the mirrors are sent (at the request's end) or the call ends without them.
      this.#obs.hold()
      this.#mirror = []
      this.#answer = []
      if (first !== null && first.message !== null) {
        this.#keepRequest(first.message)
        if (first.rest !== null && first.rest.length > 0) this.#keepRequest(first.rest)
      }
    }
    let initial: Buffer | null = null
    if (first !== null && first.message !== null) {
      // The arm's server knows the model by another name: the message is rewritten on its bytes.
      if (arm.modelName !== null && arm.modelName !== first.name) {
        const rewritten = rewriteNameAt(first.payload as Buffer, first.namePath, arm.modelName)
        if (rewritten === null) return this.#status(INVALID_ARGUMENT, 'the request message is not valid protobuf', 'bad_frame')
        initial = frame(rewritten)
      } else initial = first.payload === first.message.subarray(5) ? first.message : frame(first.payload as Buffer)
      if (first.rest !== null && first.rest.length > 0) initial = Buffer.concat([initial, first.rest])
    }
    this.#dispatch(arm, initial)
  }

  // --- forwarding ----------------------------------------------------------------------------------

  #dispatch(arm: Arm, initial: Buffer | null): void {
    const asked = parseTimeout(this.incoming['grpc-timeout'])
    const timeoutMs = asked < 0 ? arm.timeoutMs : Math.min(asked, arm.timeoutMs)
    const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': arm.basePath + this.path }
    const incoming = this.incoming
    for (const key in incoming) {
      if (key.charCodeAt(0) === 58 /* : */ || NOT_FORWARDED.has(key)) continue
      headers[key] = incoming[key]
    }
    headers['grpc-timeout'] = formatTimeout(timeoutMs)
    headers['x-request-id'] = this.requestId
    // The model is told the trace, naming the upstream call's span (the client's traceparent is replaced).
    if (this.#trace !== null) {
      const tp = this.#trace.upstream([], arm.model)
      for (let i = 0; i + 1 < tp.length; i += 2) headers[tp[i] as string] = tp[i + 1]
    }
    this.#start = performance.now()
    this.#state = DISPATCHED
    let up: ClientHttp2Stream
    try {
      up = this.ctx.sessions.get(arm.origin).request(headers, { endStream: false })
    } catch (err) {
      this.#upstreamError = err as Error
      return this.#modelFailed(UNAVAILABLE, `cannot reach model "${arm.model}": ${(err as Error).message}`, 'refused')
    }
    const tagged = up as ClientHttp2Stream & Tagged
    tagged[kCall] = this
    this.#upstream = up
    up.on('response', onUpstreamResponse)
    up.on('data', onUpstreamData)
    up.on('trailers', onUpstreamTrailers)
    up.on('end', onUpstreamEnd)
    up.on('close', onUpstreamClose)
    up.on('error', onUpstreamError)
    this.#timer = setTimeout(onDeadline, timeoutMs, this)
    if (initial !== null) up.write(initial)
    if (this.#clientEnded) {
      up.end()
      this.#sendShadows()
    }
  }

  // --- mirrors (unary calls) ---------------------------------------------------------------------

  #keepRequest(chunk: Buffer): void {
    this.#mirrorBytes += chunk.length
    if (this.#mirrorBytes > this.runtime.plan.maxMirrorBytes) {
      this.#mirror = null
      this.#mirrorTooLarge = true
      return
    }
    this.#mirror?.push(chunk)
  }

  /**
   * The client's request is all in: a unary call (one message) is mirrored to the route's shadows
   * under the same gates as HTTP's (sampling by user, max_in_flight, breaker, capture budget).
   * A streaming call (any other number of messages) is not mirrored.
   */
  #sendShadows(): void {
    const obs = this.#obs
    if (obs === undefined || this.#released) return
    const route = this.route as RouteRuntime
    const arm = this.arm as Arm
    const userId = this.decision.userId
    const body = this.#mirror === null ? null : Buffer.concat(this.#mirror, this.#mirrorBytes)
    this.#mirror = null
    if (this.#scanner.messages === 1 || this.#mirrorTooLarge) {
      let headers: string[] | undefined
      for (const target of route.shadows) {
        if (target.model === arm.model || !isShadowed(target, userId)) continue
        if (body === null) {
          target.dropped.body_too_large.inc()
          obs.shadowSkipped(target, 'body_too_large')
          continue
        }
        // The gate (in flight, breaker, shutting down) is asked before anything is built for the mirror.
        const refused = this.ctx.shadows.refuse(target)
        if (refused !== null && this.#trace === null) {
          obs.shadowSkipped(target, refused)
          continue
        }
        headers ??= this.#shadowHeaders()
        const mirror = withTimeout(headers, target.timeoutMs)
        const trace = this.#trace === null ? null : this.#trace.shadow(mirror, target.model)
        if (refused !== null) {
          // Traced: the dropped mirror still gets its span, saying why.
          obs.shadowSkipped(target, refused)
          trace?.span?.dropped(refused)
          continue
        }
        if (trace !== null && trace.span !== null) obs.traceShadow(target, trace.span)
        this.ctx.shadows.send(target, 'POST', this.path, '', trace === null ? mirror : trace.headers, shadowBody(body, target.modelName, this.path, this.incoming['grpc-encoding']), obs)
      }
    }
    this.#releaseObs()
  }

  #shadowHeaders(): string[] {
    const out = ['content-type', 'application/grpc', 'te', 'trailers', 'x-request-id', this.requestId, 'x-modelsplit-shadow', '1']
    const incoming = this.incoming
    for (const key in incoming) {
      if (key.charCodeAt(0) === 58 || NOT_FORWARDED.has(key) || key === 'content-type' || key === 'te') continue
      const v = incoming[key]
      if (typeof v === 'string') out.push(key, v)
    }
    return out
  }

  #releaseObs(): void {
    if (this.#obs === undefined || this.#released) return
    this.#released = true
    this.#obs.release()
  }

  /** Hands the primary's outcome to the observation (once): its answer if kept, else why not. */
  #observe(status: number, error: string | null): void {
    const obs = this.#obs
    if (obs === undefined || this.#observed) return
    this.#observed = true
    const answer = this.#answer
    this.#answer = null
    const body = error === null && answer !== null ? Buffer.concat(answer, this.#answerBytes) : undefined
    const why = error ?? (answer === null ? `response over limits.max_capture_bytes (${this.runtime.plan.maxCaptureBytes} bytes)` : null)
    obs.primaryDone((this.arm as Arm).model, status, performance.now() - this.#start, body, why, null)
    this.#releaseObs()
  }

  /** @internal */ onUpstreamResponse(headers: IncomingHttpHeaders): void {
    if (this.#state !== DISPATCHED) return
    const status = Number(headers[':status'])
    if (status !== 200) {
      this.ctx.metrics.grpcAnomalies.labels({ kind: 'upstream_bad_status' }).inc()
      this.#upstream?.close(NGHTTP2_CANCEL)
      return this.#modelFailed(statusOfHttp(status), `model "${(this.arm as Arm).model}" answered HTTP ${status}, not a gRPC response`, 'other')
    }
    const out = this.#answerHeaders(headers)
    const trailersOnly = headers['grpc-status'] !== undefined
    this.#responded = true
    if (this.stream.destroyed || this.stream.closed) return
    this.stream.respond(out, trailersOnly ? { endStream: true } : { waitForTrailers: true })
    if (trailersOnly) this.#finish(parseStatus(headers['grpc-status']))
  }

  /** @internal */ onUpstreamData(chunk: Buffer): void {
    if (this.#state !== DISPATCHED) return
    if (this.#answer !== null) {
      this.#answerBytes += chunk.length
      if (this.#answerBytes <= this.runtime.plan.maxCaptureBytes) this.#answer.push(chunk)
      else this.#answer = null
    }
    if (!this.stream.write(chunk)) {
      const up = this.#upstream as ClientHttp2Stream
      up.pause()
      this.stream.once('drain', onClientDrain)
    }
  }

  /** @internal */ onClientDrain(): void {
    if (this.#state === DISPATCHED) this.#upstream?.resume()
  }

  /** @internal */ onUpstreamTrailers(trailers: IncomingHttpHeaders): void {
    const out: OutgoingHttpHeaders = {}
    for (const key in trailers) if (key.charCodeAt(0) !== 58) out[key] = trailers[key]
    this.#trailers = out
  }

  /** @internal The model's stream ended cleanly (a reset also ends it: see onUpstreamClose). */
  onUpstreamEnd(): void {
    this.#upstreamEnded = true
  }

  /** The model's answer is over, trailers and all: they go to the client, its status to the metrics. */
  #upstreamDone(): void {
    if (!this.#responded) return this.#modelFailed(INTERNAL, `model "${(this.arm as Arm).model}" ended the call without an answer`, 'other')
    if (this.#trailers === null || this.#trailers['grpc-status'] === undefined) {
      // A response with no grpc-status has no outcome; clients read it as INTERNAL, so do we.
      this.ctx.metrics.grpcAnomalies.labels({ kind: 'upstream_no_trailers' }).inc()
      this.#trailers = { 'grpc-status': String(INTERNAL), 'grpc-message': encodeMessage(`model "${(this.arm as Arm).model}" ended the call without trailers`) }
    }
    const status = parseStatus(this.#trailers['grpc-status'])
    this.#finish(status)
    this.stream.end()
  }

  /** @internal */ onUpstreamError(err: Error): void {
    this.#upstreamError = err
  }

  /** @internal The model's stream closed: after its end (nothing to do), or reset before it. */
  onUpstreamClose(): void {
    if (this.#state !== DISPATCHED) return
    const up = this.#upstream as ClientHttp2Stream
    const code = up.rstCode ?? NGHTTP2_INTERNAL_ERROR
    if (code === NGHTTP2_NO_ERROR && this.#upstreamEnded) return this.#upstreamDone()
    const err = this.#upstreamError as (Error & { code?: string; cause?: { code?: string } }) | null
    const refused = err?.code === 'ECONNREFUSED' || err?.cause?.code === 'ECONNREFUSED'
    if (!refused) this.ctx.metrics.grpcAnomalies.labels({ kind: 'upstream_reset' }).inc()
    const arm = this.arm as Arm
    if (this.#responded) {
      // The answer had started: the reset goes on to the client, as the model sent it.
      this.#state = DONE
      clearTimeout(this.#timer)
      arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason: 'reset' })
      this.#countCall(arm, UNAVAILABLE, true)
      if (!this.stream.destroyed) this.stream.close(code === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code)
      return
    }
    const why = refused ? `cannot reach model "${arm.model}" (connection refused)`
      : err !== null ? `model "${arm.model}" failed the call: ${err.message}` : `model "${arm.model}" reset the call (RST_STREAM ${code})`
    this.#modelFailed(UNAVAILABLE, why, refused ? 'refused' : 'reset')
  }

  /** @internal The call's deadline: the client's grpc-timeout, bounded by the model's timeout_ms. */
  onDeadline(): void {
    if (this.#state !== DISPATCHED) return
    this.#upstream?.close(NGHTTP2_CANCEL)
    const arm = this.arm as Arm
    this.#modelFailed(DEADLINE_EXCEEDED, `model "${arm.model}" did not answer within the deadline`, 'timeout')
  }

  // --- ending ----------------------------------------------------------------------------------------

  #answerHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = { ':status': 200 }
    for (const key in headers) if (key.charCodeAt(0) !== 58) out[key] = headers[key]
    out['x-request-id'] = this.requestId
    out['x-modelsplit-model'] = modelHeader(this.arm as Arm)
    return out
  }

  /** The model's call ended with a status the client gets as it came (counted by its status). */
  #finish(status: number): void {
    this.#state = DONE
    clearTimeout(this.#timer)
    this.#countCall(this.arm as Arm, status, true)
  }

  /** The model failed (unreachable, reset, deadline, not gRPC): the client gets `status`, the model the error. */
  #modelFailed(status: number, message: string, reason: 'refused' | 'reset' | 'timeout' | 'other'): void {
    const arm = this.arm as Arm
    arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason })
    this.#state = DONE
    clearTimeout(this.#timer)
    this.#countCall(arm, status, true)
    this.#send(status, message)
  }

  #countCall(arm: Arm, status: number, answered: boolean): void {
    let children = callChildren.get(arm)
    if (children === undefined) callChildren.set(arm, children = [])
    let child = children[status]
    if (child === undefined) children[status] = child = arm.metrics.grpcCalls.labels({ route: arm.route, model: arm.model, grpc_status: statusName(status) })
    child.inc()
    // A client's cancel is not the model's outcome (modelsplit_client_aborts_total has it).
    if (answered) countResponse(arm, httpCodeOf(status), (performance.now() - this.#start) / 1000)
    this.#endTrace(answered ? httpCodeOf(status) : 0, status, answered ? null : 'the client cancelled the call')
    this.#observe(answered ? httpCodeOf(status) : 0, answered ? null : 'the client cancelled the call')
  }

  /** The router refuses the client's bytes: a bad prefix, a message over the limit, a coding it cannot open. */
  #refuse(problem: NonNullable<FrameProblem> | 'unsupported_encoding'): void {
    const max = this.runtime.plan.maxBodyBytes
    if (problem === 'too_large') return this.#status(RESOURCE_EXHAUSTED, `a request message is larger than limits.max_body_bytes (${max} bytes)`, 'too_large')
    if (problem === 'bad_frame') return this.#status(INTERNAL, 'malformed gRPC message framing (a length prefix is bad or the stream ended inside a message)', 'bad_frame')
    this.#status(UNIMPLEMENTED, `grpc-encoding ${String(this.incoming['grpc-encoding'])} cannot be read by the router (a route reads the model's name): send identity or gzip`, 'unsupported_encoding')
  }

  /** The router ends the call itself with a status: the model's call (if any) is cancelled. */
  #status(status: number, message: string, anomaly: GrpcAnomaly | null): void {
    if (anomaly !== null) this.#anomaly(anomaly)
    this.#endTrace(httpCodeOf(status), status, message)
    if (this.#state === DISPATCHED) this.#observe(0, message)
    this.#state = DONE
    clearTimeout(this.#timer)
    this.#upstream?.close(NGHTTP2_CANCEL)
    this.#send(status, message)
  }

  /** Ends the call's span once: the HTTP code of its grpc-status, and an error unless it is OK. */
  #endTrace(httpStatus: number, status: number, message: string | null): void {
    const trace = this.#trace
    if (trace === null || this.#traceEnded) return
    this.#traceEnded = true
    trace.end(httpStatus, status === OK && message === null ? null : message ?? `grpc-status ${statusName(status)}`)
  }

  #anomaly(kind: GrpcAnomaly): void {
    this.ctx.metrics.grpcAnomalies.labels({ kind }).inc()
  }

  #send(status: number, message: string): void {
    const stream = this.stream
    if (stream.destroyed || stream.closed) return
    const trailers: OutgoingHttpHeaders = { 'grpc-status': String(status), 'grpc-message': encodeMessage(message) }
    if (!stream.headersSent) {
      const head: OutgoingHttpHeaders = { ':status': 200, 'content-type': 'application/grpc', ...trailers, 'x-request-id': this.requestId }
      if (this.arm !== undefined) head['x-modelsplit-model'] = modelHeader(this.arm)
      stream.respond(head, { endStream: true })
      return
    }
    if (this.#responded) {
      this.#trailers = trailers
      stream.end()
      return
    }
    stream.close(NGHTTP2_INTERNAL_ERROR)
  }
}

interface First {
  /** The first message with its prefix as the client sent it; null: the call had none. */
  message: Buffer | null
  /** Its protobuf bytes, gunzipped if they came compressed. */
  payload: Buffer | null
  /** Bytes the client sent after it (the next messages of a stream). */
  rest: Buffer | null
  name: string
  namePath: readonly number[]
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

/** The mirror's headers with its own deadline (the shadow model's timeout_ms). */
function withTimeout(headers: string[], ms: number): string[] {
  return [...headers, 'grpc-timeout', formatTimeout(ms)]
}

/** The request for one shadow: its one message with the model's name rewritten where the shadow goes by another. */
function shadowBody(body: Buffer, modelName: string | null, method: string, encoding: unknown): Buffer {
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

function hasBinarySource(route: RouteRuntime): boolean {
  for (const s of route.plan.sources) if (s.kind === 'header' && s.name.endsWith('-bin')) return true
  return false
}

/** A route whose arms go by other names on their servers must read (and rewrite) the first message. */
function rewrites(route: RouteRuntime): boolean {
  for (const t of route.targets) if (t.modelName !== null) return true
  return false
}

/**
 * Metadata with the route's `-bin` sources base64-decoded, as Latin-1 text of their bytes, which
 * is how node:http hands a header's bytes to the decision: the same bytes hash alike on both.
 */
function decodeBinary(incoming: IncomingHttpHeaders, route: RouteRuntime): IncomingHttpHeaders {
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

// Module-level listeners: `this` is the stream, and the call hangs off it.
function onClientData(this: ServerHttp2Stream & Tagged, chunk: Buffer): void {
  this[kCall]?.onClientData(chunk)
}
function onClientEnd(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientEnd()
}
function onClientClose(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientClose()
}
function onWantTrailers(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onWantTrailers()
}
function onClientDrain(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientDrain()
}
function onUpstreamDrain(this: ClientHttp2Stream & Tagged): void {
  this[kCall]?.onUpstreamDrain()
}
function onUpstreamResponse(this: ClientHttp2Stream & Tagged, headers: IncomingHttpHeaders): void {
  this[kCall]?.onUpstreamResponse(headers)
}
function onUpstreamData(this: ClientHttp2Stream & Tagged, chunk: Buffer): void {
  this[kCall]?.onUpstreamData(chunk)
}
function onUpstreamTrailers(this: ClientHttp2Stream & Tagged, trailers: IncomingHttpHeaders): void {
  this[kCall]?.onUpstreamTrailers(trailers)
}
function onUpstreamEnd(this: ClientHttp2Stream & Tagged): void {
  this[kCall]?.onUpstreamEnd()
}
function onUpstreamClose(this: ClientHttp2Stream & Tagged): void {
  this[kCall]?.onUpstreamClose()
}
function onUpstreamError(this: ClientHttp2Stream & Tagged, err: Error): void {
  this[kCall]?.onUpstreamError(err)
}
function onDeadline(call: GrpcCall): void {
  call.onDeadline()
}
