import type { ClientHttp2Stream, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import { decide, type BodyView, type RequestView } from '../../plan/index.js'
import { INVALID_ARGUMENT, UNIMPLEMENTED, type FrameProblem } from '../../upstream/grpc-wire.js'
import { countDecision } from '../assignment.js'
import type { Arm, RouteRuntime, Runtime } from '../runtime.js'
import { kCall, onClientClose, onClientData, onClientEnd, onUpstreamDrain, onWantTrailers, type Tagged } from './events.js'
import { DISPATCHED, DONE, GrpcForward, type GrpcContext } from './forward.js'
import { GrpcMirror } from './mirror.js'
import { refusal } from './outcome.js'
import {
  decodeBinary, firstBytesFor, hasBinarySource, noRouteMessage, readFirst, routeBeforeMessage, routeForName, type FirstMessage,
} from './route.js'

export type { GrpcContext } from './forward.js'
export type { GrpcAnomaly } from './outcome.js'
export { namePathOf } from './route.js'

/** No gRPC route reads a body for its user id: the view's body is always this (never written). */
const NO_BODY: BodyView = Object.freeze({ raw: undefined, parsed: undefined, state: 'empty', truncated: false }) as BodyView

/**
 * One gRPC call, the client's side: waits for the first message when the route needs the model's
 * name from it, decides through the same plan as HTTP (it is the RequestView the decision reads),
 * then forwards each chunk as it comes; the model's side and the outcome are GrpcForward's.
 */
export class GrpcCall extends GrpcForward implements RequestView {
  readonly method = 'POST'
  readonly query = ''
  readonly body = NO_BODY
  headers: IncomingHttpHeaders
  /** Chunks before the first message is whole, on calls whose route is told by it; else null. */
  #pending: Buffer[] | null = null
  #pendingBytes = 0
  #compressedSeen = 0

  constructor(
    ctx: GrpcContext,
    stream: ServerHttp2Stream,
    incoming: IncomingHttpHeaders,
    runtime: Runtime,
    /** The routes of this method: one without model_name, or several told apart by it. */
    readonly candidates: readonly RouteRuntime[],
    path: string,
    requestId: string,
  ) {
    super(ctx, stream, incoming, runtime, path, requestId)
    this.headers = incoming
  }

  /** Starts the call: decides at once, or after the first message when a name must be read from it. */
  begin(): void {
    const stream = this.stream as ServerHttp2Stream & Tagged
    stream[kCall] = this
    stream.on('data', onClientData)
    stream.on('end', onClientEnd)
    stream.on('close', onClientClose)
    stream.on('wantTrailers', onWantTrailers)
    const route = routeBeforeMessage(this.candidates)
    if (route !== undefined) return this.#decide(route, null)
    this.#pending = []
  }

  // --- the client's side -------------------------------------------------------------------------

  /** @internal */ override onClientData(chunk: Buffer): void {
    if (this.state === DONE) return
    const problem = this.scanner.scan(chunk)
    if (problem !== null) return this.#refuse(problem)
    if (this.scanner.compressed > this.#compressedSeen) {
      this.ctx.metrics.grpcAnomalies.labels({ kind: 'compressed' }).inc(this.scanner.compressed - this.#compressedSeen)
      this.#compressedSeen = this.scanner.compressed
    }
    if (this.state === DISPATCHED) {
      this.mirror?.keepRequest(chunk)
      const up = this.upstream as ClientHttp2Stream
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

  /** @internal */ override onClientEnd(): void {
    this.clientEnded = true
    if (this.state === DONE) return
    if (!this.scanner.atBoundary) return this.#refuse('bad_frame')
    if (this.state === DISPATCHED) {
      this.upstream?.end()
      this.sendShadows()
      return
    }
    // No message at all: no name to read, so the route without model_name (if any) takes it.
    this.#pending = null
    this.#first(null, null)
  }

  /** @internal */ override onUpstreamDrain(): void {
    if (this.state === DISPATCHED) this.stream.resume()
  }

  // --- deciding ------------------------------------------------------------------------------------

  /** The first message is in (or the call has none): read the name, pick the route, decide. */
  #first(message: Buffer | null, rest: Buffer | null): void {
    const first = readFirst(message, rest, this.path, this.incoming['grpc-encoding'], this.runtime.plan.maxBodyBytes)
    if (first === 'not_protobuf') return this.status(INVALID_ARGUMENT, 'the request message is not valid protobuf', 'bad_frame')
    if (typeof first === 'string') return this.#refuse(first)
    const route = routeForName(this.candidates, first.name)
    if (route === undefined) return this.status(UNIMPLEMENTED, noRouteMessage(this.candidates, this.path, first.name), 'unimplemented')
    this.#decide(route, first)
  }

  #decide(route: RouteRuntime, first: FirstMessage | null): void {
    this.route = route
    const d = this.decision
    if (hasBinarySource(route)) this.headers = decodeBinary(this.incoming, route)
    decide(route.plan, this, d)
    const tracing = this.ctx.tracing
    if (tracing !== null) {
      this.trace = tracing.request(route.name, 'POST', this.incoming)
      this.trace.decided(d.target < 0 ? undefined : (route.targets[d.target] as Arm).model, d.source, d.missing)
    }
    const arm = countDecision(route, d, this.ctx.memory, this.requestId)
    if (arm === undefined) {
      this.ctx.metrics.requestErrors.inc({ route: route.name, code: 'MS_USER_ID_REQUIRED' })
      return this.status(INVALID_ARGUMENT, `route "${route.name}" needs a user id (${route.plan.sourceList}) and rejects calls without one`, null)
    }
    this.arm = arm
    let initial: Buffer | null = null
    if (first !== null && first.message !== null) {
      initial = firstBytesFor(first, arm)
      if (initial === null) return this.status(INVALID_ARGUMENT, 'the request message is not valid protobuf', 'bad_frame')
    }
    if (route.plan.observes) {
      const plan = this.runtime.plan
      const mirror = new GrpcMirror(this.ctx.observer.begin(route, this.requestId, d.userId, d.source, undefined, false), plan.maxMirrorBytes, plan.maxCaptureBytes)
      this.mirror = mirror
      // The mirrors get the client's bytes as they came (each shadow's name is rewritten on its own).
      if (first !== null && first.message !== null) {
        mirror.keepRequest(first.message)
        if (first.rest !== null && first.rest.length > 0) mirror.keepRequest(first.rest)
      }
    }
    this.dispatch(arm, initial)
  }

  /** The router refuses the client's bytes: a bad prefix, a message over the limit, a coding it cannot open. */
  #refuse(problem: NonNullable<FrameProblem> | 'unsupported_encoding'): void {
    const [status, message, anomaly] = refusal(problem, this.runtime.plan.maxBodyBytes, this.incoming['grpc-encoding'])
    this.status(status, message, anomaly)
  }
}
