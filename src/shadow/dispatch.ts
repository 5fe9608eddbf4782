import type { IncomingHttpHeaders } from 'node:http'
import { Agent, Pool } from 'undici'
import type { Metrics } from '../metrics/index.js'
import type { ShadowTarget } from '../proxy/runtime.js'
import { translateUpstreamError } from '../proxy/upstream-error.js'

/** What a mirrored request carries: the primary's method, path remainder + query, headers and body. */
export interface MirrorRequest {
  readonly method: string
  readonly pathAndQuery: string
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer | undefined
}

/** How one shadow call ended; failures are data, never exceptions. */
export interface ShadowOutcome {
  readonly target: ShadowTarget
  readonly status: number
  readonly latencyMs: number
  readonly body: Buffer | undefined
  readonly error: string | null
}

// Hop-by-hop (RFC 9110 §7.6.1) and per-connection headers never go to the shadow; undici sets
// content-length from the buffered body and host from the origin.
const SKIP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length', 'expect'])

/** The headers a shadow receives: the client's, minus hop-by-hop, plus `x-modelsplit-shadow: 1`. */
export function mirrorHeaders(headers: IncomingHttpHeaders, requestId: string): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  const listed = typeof headers.connection === 'string' ? headers.connection.toLowerCase().split(',').map((s) => s.trim()) : []
  for (const name in headers) {
    if (!SKIP.has(name) && !listed.includes(name)) out[name] = headers[name]
  }
  out['x-modelsplit-shadow'] = '1'
  out['x-request-id'] = requestId
  return out
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
}

/** Consecutive connection failures that open the breaker, and its first and longest backoff. */
const BREAK_AFTER = 5
const BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 30_000

/**
 * Sends mirrored requests on pools of their own, never awaited by the user path: at most
 * `max_in_flight` per (route, shadow model), each bounded by the model's timeout_ms and a
 * response size cap; excess is dropped and counted rather than queued.
 */
export class ShadowDispatcher {
  readonly #agent: Agent
  readonly #gates = new Map<string, Gate>()
  readonly #active = new Set<AbortController>()
  readonly #maxCaptureBytes: () => number
  readonly #requests: Metrics['shadowRequests']
  #closed = false

  constructor(opts: { maxCaptureBytes: () => number; requests: Metrics['shadowRequests'] }) {
    this.#maxCaptureBytes = opts.maxCaptureBytes
    this.#requests = opts.requests
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      factory: (origin, options) => new Pool(origin, { ...options, connections: 256, pipelining: 1 }),
    })
  }

  /** Mirrored requests under way. */
  get active(): number {
    return this.#active.size
  }

  /** Sends one mirrored request unless its gate is full; `done` is called exactly once if it returns true. */
  send(target: ShadowTarget, req: MirrorRequest, done: (o: ShadowOutcome) => void): boolean {
    if (this.#closed) {
      target.dropped.shutting_down.inc()
      return false
    }
    let gate = this.#gates.get(target.gateKey)
    if (gate === undefined) {
      gate = { inFlight: 0, failures: 0, trips: 0, openUntil: 0 }
      this.#gates.set(target.gateKey, gate)
    }
    if (gate.inFlight >= target.maxInFlight) {
      target.dropped.max_in_flight.inc()
      return false
    }
    // A shadow that refuses connections is not tried on every request: failing fast costs
    // the primary path as much as succeeding, so it is skipped (and counted) for a backoff.
    if (gate.openUntil > 0 && performance.now() < gate.openUntil) {
      target.dropped.unavailable.inc()
      return false
    }
    gate.inFlight++
    const g = gate
    const controller = new AbortController()
    this.#active.add(controller)
    const start = performance.now()
    const finish = (status: number, body: Buffer | undefined, error: string | null): void => {
      this.#active.delete(controller)
      g.inFlight--
      const latencyMs = performance.now() - start
      let child = target.byCode[status]
      if (child === undefined) {
        child = this.#requests.labels({ route: target.route, model: target.model, code: String(status) })
        target.byCode[status] = child
      }
      child.inc()
      target.duration.observe(latencyMs / 1000)
      try {
        done({ target, status, latencyMs, body, error })
      } catch {
        // The pairing code must never take the shadow path down with it.
      }
    }
    this.#run(target, req, controller.signal).then(
      (r) => {
        g.failures = 0
        g.trips = 0
        g.openUntil = 0
        finish(r.status, r.body, r.error)
      },
      (err: unknown) => {
        const { error, reason } = translateUpstreamError(err, target.route, target.model, target.timeoutMs)
        if ((reason === 'refused' || reason === 'dns') && ++g.failures >= BREAK_AFTER) {
          g.trips++
          g.openUntil = performance.now() + Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (g.trips - 1))
        }
        finish(error.statusCode, undefined, controller.signal.aborted ? 'aborted at shutdown' : error.message)
      },
    )
    return true
  }

  async #run(target: ShadowTarget, req: MirrorRequest, signal: AbortSignal): Promise<{ status: number; body: Buffer | undefined; error: string | null }> {
    const res = await this.#agent.request({
      origin: target.origin,
      path: target.basePath === '' && !req.pathAndQuery.startsWith('/') ? '/' + req.pathAndQuery : target.basePath + req.pathAndQuery,
      method: req.method as 'POST',
      headers: req.headers as Record<string, string>,
      body: req.body,
      headersTimeout: target.timeoutMs,
      bodyTimeout: target.timeoutMs,
      signal,
    })
    const cap = this.#maxCaptureBytes()
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > cap) {
        res.body.destroy()
        return { status: res.statusCode, body: undefined, error: `response over limits.max_capture_bytes (${cap} bytes)` }
      }
      chunks.push(chunk as Buffer)
    }
    return { status: res.statusCode, body: Buffer.concat(chunks, size), error: null }
  }

  /** Stops new mirrors; in-flight ones go on until they finish or abortAll(). */
  stop(): void {
    this.#closed = true
  }

  /** Aborts every mirrored request still running (at the shutdown deadline); each still reports. */
  abortAll(): void {
    for (const c of this.#active) c.abort()
  }

  async close(): Promise<void> {
    this.#closed = true
    this.abortAll()
    await this.#agent.close()
  }
}
