import type { Dispatcher } from 'undici'
import type { Metrics, ShadowDropReason } from '../metrics/index.js'
import type { ShadowTarget } from '../proxy/runtime.js'
import { Capture, type CaptureBudget } from '../upstream/capture.js'
import { translateUpstreamError } from '../upstream/errors.js'
import { UpstreamTimeoutError } from '../errors.js'

/** How one shadow call ended; failures are data, never exceptions. */
export interface ShadowOutcome {
  readonly target: ShadowTarget
  readonly status: number
  readonly latencyMs: number
  readonly body: Buffer | undefined
  readonly error: string | null
  /** The captured answer's hold on the capture budget, given back once the record is written. */
  readonly capture: Capture | null
}

/** Where a shadow's outcome goes (the request's observation). */
export interface ShadowSink {
  shadowDone(outcome: ShadowOutcome): void
  expectShadow(): void
}

/** Per (route, shadow model): what is in flight, and the breaker for a shadow that refuses connections. */
interface Gate {
  inFlight: number
  /** Connection failures (refused, host not found) since the last answer. */
  failures: number
  /** Times the breaker opened in a row; each doubles the backoff. */
  trips: number
  /** performance.now() until which mirrors are skipped; 0 when closed. */
  openUntil: number
  /** After a backoff, the one mirror let through to see whether the shadow is back; null when none. */
  probe: ShadowCall | null
}

/** Consecutive connection failures that open the breaker, and its first and longest backoff. */
const BREAK_AFTER = 5
const BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 30_000

/**
 * Sends mirrored requests on pools of their own, never awaited by the user path: at most
 * `max_in_flight` per (route, shadow model), each bounded by the model's timeout_ms (the router's
 * own timer) and the capture limits; excess is dropped and counted rather than queued.
 */
export class ShadowDispatcher {
  readonly #gates = new Map<string, Gate>()
  readonly #active = new Set<ShadowCall>()
  readonly #requests: Metrics['shadowRequests']
  readonly budget: CaptureBudget
  #closed = false
  #idle: (() => void)[] = []

  constructor(opts: { budget: CaptureBudget; requests: Metrics['shadowRequests'] }) {
    this.budget = opts.budget
    this.#requests = opts.requests
  }

  /** Mirrored requests under way. */
  get active(): number {
    return this.#active.size
  }

  /**
   * Whether a mirror to `target` would be dropped now, and why (counted here); null: send() it.
   * Asked first, so a mirror that is refused (an open breaker, a full cap) costs no headers.
   */
  refuse(target: ShadowTarget): ShadowDropReason | null {
    if (this.#closed) {
      target.dropped.shutting_down.inc()
      return 'shutting_down'
    }
    let gate = this.#gates.get(target.gateKey)
    if (gate === undefined) {
      gate = { inFlight: 0, failures: 0, trips: 0, openUntil: 0, probe: null }
      this.#gates.set(target.gateKey, gate)
    }
    if (gate.inFlight >= target.maxInFlight) {
      target.dropped.max_in_flight.inc()
      return 'max_in_flight'
    }
    // A shadow that refuses connections is not tried on every request: failing fast costs
    // the primary path as much as succeeding, so it is skipped (and counted) for a backoff.
    // After the backoff one mirror goes to see whether the shadow is back; the others wait for
    // its answer rather than each paying a refused connection.
    if (gate.openUntil > 0 && (gate.probe !== null || performance.now() < gate.openUntil)) {
      target.dropped.unavailable.inc()
      return 'unavailable'
    }
    // With no room left to hold its answer, a mirror could only be compared as an error.
    if (this.budget.used >= this.budget.limit) {
      target.dropped.capture_budget.inc()
      return 'capture_budget'
    }
    return null
  }

  /** Sends one mirrored request refuse() let through; the sink then gets exactly one outcome. */
  send(target: ShadowTarget, method: string, rest: string, query: string, headers: string[], body: Buffer | undefined, sink: ShadowSink): void {
    const gate = this.#gates.get(target.gateKey) as Gate
    gate.inFlight++
    sink.expectShadow()
    const call = new ShadowCall(this, target, gate, sink)
    if (gate.openUntil > 0) gate.probe = call
    this.#active.add(call)
    const path = target.basePath + (rest === '' && target.basePath === '' ? '/' : rest)
    call.timer = setTimeout(onShadowTimeout, target.timeoutMs, call)
    target.pool.dispatch({ path: query === '' ? path : `${path}?${query}`, method: method as Dispatcher.HttpMethod, headers, body: body ?? null }, call)
  }

  /** @internal Called once per call when it ends. */
  settle(call: ShadowCall, status: number, body: Buffer | undefined, error: string | null, connectFailed: boolean): void {
    this.#active.delete(call)
    const { target, gate } = call
    gate.inFlight--
    if (gate.probe === call) {
      gate.probe = null
      // The probe was not refused (an answer, or a timeout): the breaker closes, its backoff kept
      // for the next trip unless the answer came (below); refused, it opens again for longer.
      if (!connectFailed) {
        gate.failures = 0
        gate.openUntil = 0
      }
    }
    if (connectFailed) {
      if (++gate.failures >= BREAK_AFTER) {
        gate.trips++
        gate.openUntil = performance.now() + Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (gate.trips - 1))
      }
    } else if (error === null) {
      gate.failures = 0
      gate.trips = 0
      gate.openUntil = 0
    }
    const latencyMs = performance.now() - call.start
    let child = target.byCode[status]
    if (child === undefined) {
      child = this.#requests.labels({ route: target.route, model: target.model, code: String(status) })
      target.byCode[status] = child
    }
    child.inc()
    target.duration.observe(latencyMs / 1000)
    try {
      call.sink.shadowDone({ target, status, latencyMs, body, error, capture: body === undefined ? null : call.capture })
    } catch {
      // The pairing code must never take the shadow path down with it.
    }
    if (this.#active.size === 0 && this.#idle.length > 0) {
      const waiters = this.#idle
      this.#idle = []
      for (const w of waiters) w()
    }
  }

  /** Stops new mirrors; in-flight ones go on until they finish or abortAll(). */
  stop(): void {
    this.#closed = true
  }

  /** Resolves when no mirror is in flight. */
  idle(): Promise<void> {
    if (this.#active.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** Aborts every mirrored request still running (at the shutdown deadline); each still reports. */
  abortAll(): void {
    for (const c of [...this.#active]) c.cancel('aborted at shutdown')
  }

  close(): void {
    this.#closed = true
    this.abortAll()
  }
}

/** One mirrored request: undici's dispatch handler, its timer and its capture. */
class ShadowCall implements Dispatcher.DispatchHandler {
  readonly start = performance.now()
  /**
   * performance.now() at the answer's last sign of life (head, a chunk). timeout_ms is a limit on
   * silence, but the timer is armed once, not moved on every event: when it fires it looks at
   * this and, if the answer moved since, waits out the rest of the silence.
   */
  last = this.start
  readonly capture = new Capture()
  timer: NodeJS.Timeout | undefined
  #abort: ((err?: Error) => void) | null = null
  #status = 0
  #done = false
  #why: string | null = null

  constructor(readonly owner: ShadowDispatcher, readonly target: ShadowTarget, readonly gate: Gate, readonly sink: ShadowSink) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.#done) return abort(new Error(this.#why ?? 'cancelled'))
    this.#abort = abort
  }

  onHeaders(statusCode: number): boolean {
    if (statusCode >= 200) this.#status = statusCode
    this.last = performance.now()
    return true
  }

  onData(chunk: Buffer): boolean {
    if (this.#done) return false
    this.last = performance.now()
    this.capture.add(chunk, this.target.maxCaptureBytes, this.owner.budget)
    if (this.capture.chunks === null) {
      // Nothing more of this answer will be read: stop it rather than download what is not kept.
      const why = this.capture.skipped === 'capture_budget'
        ? 'response not captured: limits.max_capture_total_bytes in use'
        : `response over limits.max_capture_bytes (${this.target.maxCaptureBytes} bytes)`
      this.#end(this.#status, undefined, why, false)
      this.#abort?.(new Error(why))
      return false
    }
    return true
  }

  onComplete(): void {
    this.#end(this.#status, this.capture.body(), null, false)
  }

  onError(err: Error): void {
    if (this.#done) return
    if (this.#why !== null) return this.#end(this.#why === 'timeout' ? 504 : 502, undefined, this.#why === 'timeout' ? timeoutMessage(this.target) : this.#why, false)
    const { error, reason } = translateUpstreamError(err, this.target.route, this.target.model, this.target.timeoutMs)
    this.#end(error.statusCode, undefined, error.message, reason === 'refused' || reason === 'dns')
  }

  /** Ends the call now (timeout, shutdown); it reports once as failed. */
  cancel(why: string): void {
    if (this.#done) return
    this.#why = why
    if (this.#abort !== null) this.#abort(new Error(why))
    else this.onError(new Error(why))
  }

  #end(status: number, body: Buffer | undefined, error: string | null, connectFailed: boolean): void {
    if (this.#done) return
    this.#done = true
    clearTimeout(this.timer)
    if (body === undefined) this.capture.release(this.owner.budget)
    this.owner.settle(this, status, body, error, connectFailed)
  }
}

function timeoutMessage(target: ShadowTarget): string {
  return new UpstreamTimeoutError(target.model, target.route, target.timeoutMs).message
}

function onShadowTimeout(call: ShadowCall): void {
  // Timers count whole milliseconds: within one of the limit is the limit.
  const left = call.target.timeoutMs - (performance.now() - call.last)
  if (left > 1) call.timer = setTimeout(onShadowTimeout, left, call)
  else call.cancel('timeout')
}
