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

/**
 * Sends mirrored requests on pools of their own, never awaited by the user path: at most
 * `max_in_flight` per (route, shadow model), each bounded by the model's timeout_ms and a
 * response size cap; excess is dropped and counted rather than queued.
 */
export class ShadowDispatcher {
  readonly #agent: Agent
  readonly #inFlight = new Map<string, number>()
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
    const n = this.#inFlight.get(target.gateKey) ?? 0
    if (n >= target.maxInFlight) {
      target.dropped.max_in_flight.inc()
      return false
    }
    this.#inFlight.set(target.gateKey, n + 1)
    const controller = new AbortController()
    this.#active.add(controller)
    const start = performance.now()
    const finish = (status: number, body: Buffer | undefined, error: string | null): void => {
      this.#active.delete(controller)
      this.#inFlight.set(target.gateKey, (this.#inFlight.get(target.gateKey) ?? 1) - 1)
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
      (r) => finish(r.status, r.body, r.error),
      (err: unknown) => {
        const { error } = translateUpstreamError(err, target.route, target.model, target.timeoutMs)
        finish(error.statusCode, undefined, controller.signal.aborted ? 'aborted at shutdown' : error.message)
      },
    )
    return true
  }

  async #run(target: ShadowTarget, req: MirrorRequest, signal: AbortSignal): Promise<{ status: number; body: Buffer | undefined; error: string | null }> {
    const url = new URL(target.base + req.pathAndQuery)
    const res = await this.#agent.request({
      origin: url.origin,
      path: url.pathname + url.search,
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
