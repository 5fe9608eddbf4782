import type { IncomingMessage, ServerResponse } from 'node:http'
import { PassThrough } from 'node:stream'
import type { Dispatcher } from 'undici'
import { BodyTimeoutError, BodyTooLargeError, OverloadedError, UpstreamTimeoutError, UserIdRequiredError } from '../errors.js'
import { decide, newDecision, type BodyView, type Decision, type RequestView } from '../plan/index.js'
import type { Observation } from '../shadow/index.js'
import { Capture } from '../upstream/capture.js'
import { clientResponseHeaders, upstreamRequestHeaders } from '../upstream/headers.js'
import type { RequestTrace } from '../tracing/types.js'
import { LlmExchange } from '../llm/answer.js'
import { countDecision } from './assignment.js'
import { declaredLength } from './content-length.js'
import type { ProxyContext } from './context.js'
import { badStatusError, sendError, upstreamFailure } from './error-reply.js'
import {
  kExchange,
  onBodyData,
  onBodyEnd,
  onBodyError,
  onBodyTimeout,
  onResponseClose,
  onResponseDrain,
  onStreamData,
  onStreamEnd,
  onUpstreamTimeout,
  type Tagged,
} from './exchange-events.js'
import { gateShadows, sendShadows } from './mirrors.js'
import { countResponse, type Arm, type RouteRuntime, type Runtime } from './runtime.js'

// Kept importable from here: the listeners, the gRPC path and server.ts name it by this path.
export type { ProxyContext } from './context.js'

const READING = 0
const DISPATCHED = 1
const DONE = 2

const CLIENT_GONE = 'the client closed the connection before the response ended'

/**
 * One proxied request from start to end: reads the body if the route needs it, decides, sends
 * to the model through undici's dispatch (this object is the handler), streams the answer back,
 * mirrors to shadows and hands the outcome to the observer. It is also the RequestView the
 * decision reads, so deciding allocates nothing. Listeners are module functions (exchange-events.ts)
 * that find the exchange through a symbol on req/res, so a request builds no closures.
 */
export class Exchange implements RequestView, Dispatcher.DispatchHandler {
  readonly method: string
  readonly headers: IncomingMessage['headers']
  readonly body: BodyView = { raw: undefined, parsed: undefined, state: 'unparsed', truncated: false }
  readonly decision: Decision = newDecision()
  #state = READING
  arm: Arm | undefined
  #start = 0
  #timer: NodeJS.Timeout | undefined
  #abort: ((err?: Error) => void) | null = null
  #resume: (() => void) | null = null
  #status = 0
  #capture: Capture | null = null
  #obs: Observation | undefined
  #timedOut = false
  #streamed: PassThrough | undefined
  /** The body streams to the model as the client sends it: the model's clock waits for its end. */
  #streaming = false
  /** The model's answer head, written with the first byte of its body (or at its end). */
  #head: string[] | null = null
  /** This request's trace; null unless tracing is on. */
  #trace: RequestTrace | null = null
  /** The error answer carries Retry-After (the router's own saturation). */
  #retryAfter = false
  /** The model's request headers, kept for the mirrors (routes with shadows only). */
  #headers: string[] | null = null
  // The router's own time (routes with `overhead` on; never read the clock otherwise): the clock's
  // reading when the request arrived, at the last change of hands between router and model, and the
  // time each side had so far (ms, unrounded).
  #arrived = 0
  #mark = 0
  #routerMs = 0
  #upstreamMs = 0
  /** api: openai routes: the body as the arm gets it, and the answer's reader; null elsewhere. */
  #llm: LlmExchange | null = null

  constructor(
    readonly ctx: ProxyContext,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly runtime: Runtime,
    readonly route: RouteRuntime,
    /** The path after the route prefix ('' or '/...'). */
    readonly rest: string,
    /** The raw query string after '?', or ''. */
    readonly query: string,
    readonly requestId: string,
  ) {
    this.method = req.method ?? 'GET'
    this.headers = req.headers
  }

  /**
   * Starts the exchange: reads the body as the route needs, then decides and dispatches.
   * `arrived`: performance.now() when the request came in, if the plan measures overhead; a
   * listener that does not say (-1) has the router's clock start here.
   */
  begin(contentLength: number, hasBody: boolean, arrived = -1): void {
    this.#arrived = arrived >= 0 || !this.runtime.plan.measuresOverhead ? arrived : performance.now()
    const res = this.res as ServerResponse & Tagged
    res[kExchange] = this
    // The request's span starts with it, so it covers reading the body too.
    const tracing = this.ctx.tracing
    if (tracing !== null) this.#trace = tracing.request(this.route.name, this.method, this.headers)
    res.once('close', onResponseClose)
    if (!hasBody) return this.#dispatch(undefined, -1)
    const plan = this.runtime.plan
    const route = this.route.plan
    const req = this.req as IncomingMessage & Tagged
    req[kExchange] = this
    // A body that pauses too long is cut off: the socket's own timer, refreshed by every read.
    req.setTimeout(plan.bodyTimeoutMs, onBodyTimeout)
    // Bodies the route must read (a user id in them), or small enough to hold, are read whole
    // before the model sees them, so a slow client never holds a model connection (as nginx's
    // proxy_request_buffering). Larger ones stream through as they arrive.
    const limit = route.needsBody ? plan.maxBodyBytes : Math.max(plan.maxBufferedBytes, route.mirrorsBody ? plan.maxMirrorBytes : 0)
    if (route.needsBody || contentLength < 0 || contentLength <= limit) {
      this.#chunks = []
      this.#limit = limit
      req.on('data', onBodyData)
      req.on('end', onBodyEnd)
      req.on('error', onBodyError)
      return
    }
    this.body.truncated = true
    this.#dispatch(this.#streamFrom(undefined), contentLength)
  }

  // --- reading the body -----------------------------------------------------------------------
  #chunks: Buffer[] | null = null
  #size = 0
  #limit = 0

  /** @internal */ onBodyData(chunk: Buffer): void {
    const chunks = this.#chunks
    if (chunks === null) return
    this.#size += chunk.length
    if (this.#size <= this.#limit) {
      chunks.push(chunk)
      return
    }
    const plan = this.runtime.plan
    if (this.route.plan.needsBody || this.#size > plan.maxBodyBytes) {
      this.#stopReading()
      this.#fail(new BodyTooLargeError(this.route.name, plan.maxBodyBytes), true)
      return
    }
    // Past what is held: stream the rest on, after what was read; not mirrored or recorded.
    this.#stopReading()
    this.body.truncated = true
    chunks.push(chunk)
    this.#dispatch(this.#streamFrom(chunks), -1)
  }

  /** @internal */ onBodyEnd(): void {
    const chunks = this.#chunks
    if (chunks === null) return
    this.#stopReading()
    this.req.setTimeout(0)
    const body = chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, this.#size)
    this.body.raw = body
    if (body.length > this.runtime.plan.maxMirrorBytes) this.body.truncated = true
    this.#dispatch(body, body.length)
  }

  /** @internal */ onBodyError(): void {
    this.#stopReading()
    this.#clientGone()
  }

  /** @internal */ onBodyTimeout(): void {
    if (this.#state === DONE) return
    this.#stopReading()
    this.#fail(new BodyTimeoutError(this.route.name, this.runtime.plan.bodyTimeoutMs), true)
  }

  /** @internal A streamed body's bytes, counted against max_body_bytes as they pass. */
  onStreamData(chunk: Buffer): void {
    this.#size += chunk.length
    const max = this.runtime.plan.maxBodyBytes
    if (this.#size > max && this.#state !== DONE) this.#fail(new BodyTooLargeError(this.route.name, max), true)
  }

  /** @internal */ onStreamEnd(): void {
    this.req.setTimeout(0)
  }

  #stopReading(): void {
    const req = this.req
    req.removeListener('data', onBodyData)
    req.removeListener('end', onBodyEnd)
    req.removeListener('error', onBodyError)
    this.#chunks = null
  }

  #streamFrom(read: Buffer[] | undefined): PassThrough {
    const pass = new PassThrough()
    if (read !== undefined) for (const c of read) pass.write(c)
    const req = this.req
    req.on('data', onStreamData)
    req.once('end', onStreamEnd)
    req.pipe(pass)
    this.#streamed = pass
    return pass
  }

  // --- deciding and dispatching ---------------------------------------------------------------
  #dispatch(body: Buffer | PassThrough | undefined, contentLength: number): void {
    const route = this.route
    const d = this.decision
    decide(route.plan, this, d)
    if (this.#trace !== null) this.#trace.decided(d.target < 0 ? undefined : (route.targets[d.target] as Arm).model, d.source, d.missing)
    const arm = countDecision(route, d, this.ctx.memory, this.requestId)
    if (arm === undefined) {
      const why = d.missing === 'body_not_json' ? 'the body is not JSON' : 'none of the sources had one'
      this.#fail(new UserIdRequiredError(route.name, route.plan.sourceList, why), false)
      return
    }
    this.arm = arm
    this.#start = performance.now()
    // A route that only mirrors (no record, not traced) asks its shadows' gates first: a request
    // whose every mirror is refused (a dead shadow's open breaker, a full cap) then has nothing to
    // pair, and builds no observation at all. Up to 31 shadows, as bits of one number.
    let mirrors = -1
    if (route.plan.observes && !route.plan.record && this.#trace === null && route.shadows.length <= 31) {
      mirrors = gateShadows(this, arm)
      if (mirrors !== 0) this.#obs = this.ctx.observer.begin(route, this.requestId, d.userId, d.source, this.body.raw, this.body.truncated)
    } else if (route.plan.observes) this.#obs = this.ctx.observer.begin(route, this.requestId, d.userId, d.source, this.body.raw, this.body.truncated)
    this.#state = DISPATCHED
    if (arm.llm !== null && Buffer.isBuffer(body)) {
      this.#llm = LlmExchange.start(this.body, arm.llm, arm.upstreamModel, this.rest, this.runtime.plan.maxSseEventBytes)
      if (this.#llm !== null) {
        body = this.#llm.body
        contentLength = body.length
      }
    }
    const obs = this.#obs
    obs?.hold()
    const path = this.rest === '' && arm.basePath === '' ? '/' : arm.basePath + this.rest
    this.#timer = setTimeout(onUpstreamTimeout, arm.timeoutMs, this)
    this.#streaming = body !== undefined && !Buffer.isBuffer(body)
    const headers = upstreamRequestHeaders(this.req.rawHeaders, this.requestId, this.req.socket.remoteAddress, contentLength)
    if (route.shadows.length > 0) this.#headers = headers
    const upstreamHeaders = this.#trace === null ? headers : this.#trace.upstream(headers, arm.model)
    // From here the request is the model's (a pooled connection, the wire, its work) until its head.
    if (arm.overhead !== null) this.#routerMs = (this.#mark = performance.now()) - this.#arrived
    arm.pool.dispatch({
      path: this.query === '' ? path : `${path}?${this.query}`,
      method: this.method as Dispatcher.HttpMethod,
      headers: upstreamHeaders,
      body: body ?? null,
    }, this)
    // Shadows go out after the primary is dispatched, and nothing here waits for them. The answer
    // is captured only for a record or a mirror's comparison: with every mirror refused (a dead
    // shadow's open breaker) and no record, nothing would read it. The model cannot have
    // answered yet: its head comes in a later turn of the event loop.
    if (
      obs !== undefined &&
      (sendShadows(this, arm, mirrors, obs, this.#trace, this.#headers) || route.plan.record) &&
      this.#state === DISPATCHED
    ) this.#capture = new Capture()
    obs?.release()
  }

  // --- undici's dispatch handler ----------------------------------------------------------------
  // The core interface undici calls (onConnect/onHeaders/onData/onComplete/onError): the newer
  // onRequestStart/onResponse* names would wrap this object in an adapter that also parses the
  // response headers into an object, per request, which the profile showed for nothing.

  onConnect(abort: (err?: Error) => void): void {
    if (this.#state === DONE) {
      // Answered (overloaded, client gone) while it waited for a pooled connection: never send
      // it. Throwing makes undici drop the request and keep the connection for the next one;
      // abort() would close a healthy keep-alive connection for a request that never used it.
      throw new Error(CLIENT_GONE)
    }
    this.#abort = abort
    // A body that streams in as the client sends it is the client's time, guarded by
    // body_timeout_ms; the model's timeout_ms starts again once the request is sent.
    if (this.#streaming) clearTimeout(this.#timer)
    // The model's clock starts when it gets the request: time spent waiting for a pooled
    // connection was the router's, bounded by the same timeout_ms (then 503 MS_OVERLOADED).
    else this.#timer?.refresh()
  }

  onRequestSent(): void {
    if (this.#streaming && this.#state === DISPATCHED) this.#timer = setTimeout(onUpstreamTimeout, (this.arm as Arm).timeoutMs, this)
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.#state === DONE) return false
    if (statusCode < 100 || statusCode > 599) return this.#badStatus(statusCode)
    if (statusCode < 200) return true // 1xx informational: the final answer follows
    const arm = this.arm as Arm
    const got = arm.overhead === null ? 0 : performance.now()
    if (arm.overhead !== null) this.#upstreamMs += got - this.#mark
    this.#status = statusCode
    this.#resume = resume
    this.#timer?.refresh()
    // An answer that starts before the client's body is all read ends the connection: the rest
    // of that body would otherwise sit unread in front of the next request.
    const closing = this.ctx.isShuttingDown() || !this.req.complete
    if (closing) this.res.shouldKeepAlive = false
    // Held until the first byte of the body, so a model that fails between its head and its body
    // still gets the client a clean 502. The model's reason phrase is not passed on: node writes
    // the standard one (a phrase outside Latin-1 would make writeHead throw).
    this.#head = clientResponseHeaders(rawHeaders, this.requestId, arm.model, closing)
    if (this.#llm !== null) this.#head = this.#llm.head(statusCode, this.#head)
    // A captured answer's buffer is sized once from its declared length.
    if (this.#capture !== null) this.#capture.expect(declaredLength(rawHeaders))
    // Then the model's again, until the first byte of its body (or its end).
    if (arm.overhead !== null) this.#routerMs += (this.#mark = performance.now()) - got
    return true
  }

  /**
   * A status outside 100–599 (RFC 9110 §15): a 502 of the router's own, and the model's connection
   * is dropped since the rest of its answer cannot be trusted either.
   */
  #badStatus(statusCode: number): false {
    const err = badStatusError(this.arm as Arm, statusCode)
    if (this.#abort !== null) this.#abort(err) // undici calls onError with it
    else this.onError(err)
    return false
  }

  /** Writes the held answer head; false if node refused it (the exchange is then failed). */
  #writeHead(): boolean {
    const head = this.#head
    if (head === null) return true
    this.#head = null
    const arm = this.arm as Arm
    const got = arm.overhead === null ? 0 : performance.now()
    if (arm.overhead !== null) {
      this.#upstreamMs += got - this.#mark
      // W3C Server-Timing (https://www.w3.org/TR/server-timing/): the router's time so far and the
      // model's, in milliseconds. Writing the head comes after its value is made: the histogram has it.
      if (arm.serverTiming) head.push('server-timing', `modelsplit;dur=${this.#routerMs.toFixed(3)}, upstream;dur=${this.#upstreamMs.toFixed(3)}`)
    }
    try {
      this.res.writeHead(this.#status, head)
      if (arm.overhead !== null) this.#routerMs += (this.#mark = performance.now()) - got
      return true
    } catch (err) {
      // A header node will not write (an invalid value): the model's answer cannot be relayed.
      this.#abort?.(err as Error)
      this.onError(err as Error)
      return false
    }
  }

  onData(data: Buffer): boolean {
    if (this.#state === DONE) return false
    if (this.#head !== null && !this.#writeHead()) return false
    const chunk = this.#llm === null ? data : this.#llm.data(data)
    if (chunk === null) {
      this.#timer?.refresh()
      return true
    }
    const capture = this.#capture
    if (capture !== null && capture.active) {
      capture.add(chunk, this.runtime.plan.maxCaptureBytes, this.ctx.budget)
      if (capture.skipped === 'capture_budget') this.route.captureBudgetExceeded.inc()
    }
    if (this.res.write(chunk)) {
      this.#timer?.refresh()
      return true
    }
    // The client reads slower than the model sends: the model waits on the client, so its clock
    // stops until the client drains (a slow reader is not the model's timeout).
    clearTimeout(this.#timer)
    this.res.once('drain', onResponseDrain)
    return false
  }

  /** @internal */ onDrain(): void {
    if (this.#state !== DISPATCHED) return
    this.#timer = setTimeout(onUpstreamTimeout, (this.arm as Arm).timeoutMs, this)
    this.#resume?.()
  }

  onComplete(): void {
    if (this.#state === DONE) return
    // The end of the answer is the router's: from here to the last of its bookkeeping.
    if (this.#head === null && (this.arm as Arm).overhead !== null) this.#mark = performance.now()
    if (this.#head !== null && !this.#writeHead()) return
    this.#state = DONE
    clearTimeout(this.#timer)
    this.#release()
    const llm = this.#llm
    const tail = llm === null ? null : llm.end()
    const capture = this.#capture
    if (tail !== null && capture !== null && capture.active) capture.add(tail, this.runtime.plan.maxCaptureBytes, this.ctx.budget)
    if (tail === null) this.res.end()
    else this.res.end(tail)
    const facts = llm === null ? null : llm.finish('complete', this.#start)
    const arm = this.arm as Arm
    const ms = performance.now() - this.#start
    countResponse(arm, this.#status, ms / 1000)
    if (facts !== null) this.#trace?.llm(facts)
    this.#trace?.end(this.#status, null)
    const obs = this.#obs
    if (obs !== undefined) {
      obs.llmFacts = facts
      if (capture === null) obs.primaryDone(arm.model, this.#status, ms, undefined, null, null)
      else {
        const skipped = capture.skipped
        const error = skipped === null ? null
          : skipped === 'capture_budget' ? `response not captured: limits.max_capture_total_bytes (${this.runtime.plan.maxCaptureTotalBytes} bytes) in use`
            : `response over limits.max_capture_bytes (${this.runtime.plan.maxCaptureBytes} bytes)`
        obs.primaryDone(arm.model, this.#status, ms, capture.body(), error, capture)
      }
    }
    if (arm.overhead !== null) arm.overhead.observe((this.#routerMs + performance.now() - this.#mark) / 1000)
  }

  onError(err: Error): void {
    if (this.#state === DONE) return
    const req = this.req
    if (!this.#timedOut && (this.res.destroyed || (!req.complete && req.destroyed))) {
      this.#clientGone()
      return
    }
    const arm = this.arm as Arm
    const { error, reason } = upstreamFailure(err, arm, this.#timedOut)
    arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason })
    this.#state = DONE
    this.#head = null
    clearTimeout(this.#timer)
    this.#streamed?.destroy()
    this.#release()
    const res = this.res
    if (!res.headersSent) {
      this.#status = error.statusCode
      sendError(this.ctx, res, error, this.route.name, this.requestId, arm.model, this.#retryAfter)
    } else {
      // The answer had started: all the client can be told is that it ended early.
      res.destroy()
    }
    this.#llm?.finish(this.#timedOut ? 'stalled' : 'upstream_error', this.#start)
    const ms = performance.now() - this.#start
    countResponse(arm, this.#status, ms / 1000)
    this.#trace?.end(this.#status, error.message)
    this.#observed(ms, error.message)
  }

  /** @internal */ onTimeout(): void {
    if (this.#state !== DISPATCHED) return
    const arm = this.arm as Arm
    if (this.#abort === null) {
      // Still waiting for a connection: answered now; onConnect drops it when its turn comes.
      // Waiting behind busy connections is the router's saturation, not the model's slowness
      // (its clock starts at onConnect); waiting for a connection to open is the model's.
      const stats = arm.pool.stats
      if (stats.connected > 0 && stats.free === 0) {
        arm.overloaded.inc()
        this.#retryAfter = true
        this.#fail(new OverloadedError(arm.model, arm.route, stats.connected, arm.timeoutMs), false)
        return
      }
    }
    this.#timedOut = true
    const err = new UpstreamTimeoutError(arm.model, arm.route, arm.timeoutMs)
    if (this.#abort !== null) {
      this.#abort(err) // undici calls onError with it
      return
    }
    this.onError(err)
  }

  /** @internal */ onClose(): void {
    if (this.#state === DONE) return
    this.#clientGone()
  }

  #clientGone(): void {
    if (this.#state === DONE) return
    const wasDispatched = this.#state === DISPATCHED
    this.#state = DONE
    this.#stopReading()
    clearTimeout(this.#timer)
    this.#abort?.(new Error(CLIENT_GONE))
    this.#streamed?.destroy()
    this.#release()
    this.route.clientAborts.inc()
    this.#llm?.finish('client_gone', this.#start)
    if (!this.res.destroyed) this.res.destroy()
    this.#trace?.end(0, CLIENT_GONE)
    if (wasDispatched) this.#observed(performance.now() - this.#start, CLIENT_GONE)
  }

  /** Answers with a router error before (or instead of) the model; `close` ends the connection. */
  #fail(err: Error & { statusCode?: number; code?: string }, close: boolean): void {
    const wasDispatched = this.#state === DISPATCHED
    this.#state = DONE
    this.#head = null
    clearTimeout(this.#timer)
    this.#abort?.(err)
    this.#streamed?.destroy()
    this.#release()
    this.ctx.metrics.requestErrors.inc({ route: this.route.name, code: err.code ?? 'MS_INTERNAL' })
    this.#trace?.end(this.res.headersSent ? this.#status : err.statusCode ?? 500, err.message)
    if (wasDispatched) this.#observed(performance.now() - this.#start, err.message)
    if (this.res.headersSent) {
      this.res.destroy()
      return
    }
    // A body not read to its end would be parsed as the next request: close instead.
    if (close || !this.req.complete) this.res.shouldKeepAlive = false
    sendError(this.ctx, this.res, err, this.route.name, this.requestId, this.arm?.model, this.#retryAfter)
  }

  /**
   * Lets go of the request once the exchange is decided: the body-timeout listener would
   * otherwise keep node from closing an idle keep-alive socket (it answers the socket's timeout).
   */
  #release(): void {
    const req = this.req
    req.removeListener('timeout', onBodyTimeout)
    req.removeListener('data', onStreamData)
    if (!req.complete) this.res.shouldKeepAlive = false
  }

  /** Closes the primary side of the observation after a failure (nothing captured is kept). */
  #observed(ms: number, error: string): void {
    this.#capture?.release(this.ctx.budget)
    this.#obs?.primaryDone((this.arm as Arm).model, this.#status, ms, undefined, error, null)
  }
}
