import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { BadRequestPathError, BodyTooLargeError, HostRequiredError, RouteNotFoundError, ShuttingDownError, TransferCodingError, errorBody } from '../errors.js'
import { matchRoute } from '../plan/index.js'
import { badPath } from '../upstream/path.js'
import { Exchange, type ProxyContext } from './exchange.js'
import type { Runtime } from './runtime.js'

export interface ListenerDeps {
  /** The runtime in force; read once per request and kept to its end. */
  current(): Runtime
  readonly ctx: ProxyContext
  /** Requests the prediction path does not own (POST /feedback): fastify's handler. */
  other(req: IncomingMessage, res: ServerResponse): void
}

/**
 * The prediction listener for node:http: thin glue from a request to the plan and the upstream.
 * Everything policy-shaped is decided by the plan (plan/decide.ts); this only adapts the transport.
 */
export function predictionHandler(deps: ListenerDeps): { onRequest(req: IncomingMessage, res: ServerResponse): void; onCheckContinue(req: IncomingMessage, res: ServerResponse): void } {
  const ctx = deps.ctx
  return { onRequest, onCheckContinue }

  /**
   * `Expect: 100-continue` (RFC 9110 §10.1.1): a body the router would refuse by its declared
   * length is refused before the client sends it; otherwise 100 Continue, then the usual path.
   */
  function onCheckContinue(req: IncomingMessage, res: ServerResponse): void {
    const declared = Number(req.headers['content-length'] ?? 0)
    const url = req.url ?? '/'
    const pathname = url.indexOf('?') < 0 ? url : url.slice(0, url.indexOf('?'))
    const isFeedback = req.method === 'POST' && (pathname === '/feedback' || pathname.endsWith('/feedback'))
    const plan = deps.current().plan
    const limit = isFeedback ? Math.max(plan.maxBodyBytes, plan.config.feedback.max_body_bytes) : plan.maxBodyBytes
    if (declared > limit) {
      const route = matchRoute(deps.current().httpRoutes, pathname)
      return reject(ctx, req, res, requestIdOf(req.headers['x-request-id']), new BodyTooLargeError(route?.name ?? 'feedback', limit), route?.name ?? '')
    }
    res.writeContinue()
    onRequest(req, res)
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const runtime = deps.current()
    // The router's clock starts as the request arrives, read only where some route wants it.
    const arrived = runtime.plan.measuresOverhead ? performance.now() : 0
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const pathname = q < 0 ? url : url.slice(0, q)
    const method = req.method
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host (1.0 has none).
    if (req.headers.host === undefined && req.httpVersionMinor === 1) return reject(ctx, req, res, requestIdOf(req.headers['x-request-id']), new HostRequiredError(), '')
    // POST /feedback has a handler of its own, answered before any prediction route.
    if (method === 'POST' && pathname === '/feedback') return deps.other(req, res)
    const requestId = requestIdOf(req.headers['x-request-id'])
    if (ctx.isShuttingDown()) return reject(ctx, req, res, requestId, new ShuttingDownError(), '')
    const route = matchRoute(runtime.httpRoutes, pathname)
    if (route === undefined) return reject(ctx, req, res, requestId, new RouteNotFoundError(pathname, runtime.plan.routePaths), '')
    const rest = pathname.slice(route.path === '/' ? 0 : route.path.length)
    if (route.plan.remembers && method === 'POST' && rest === '/feedback') return deps.other(req, res)
    const why = badPath(rest)
    if (why !== null) return reject(ctx, req, res, requestId, new BadRequestPathError(why), route.name)
    const headers = req.headers
    const declared = headers['content-length']
    let length = -1
    if (declared !== undefined) {
      length = Number(declared)
      if (length > runtime.plan.maxBodyBytes) return reject(ctx, req, res, requestId, new BodyTooLargeError(route.name, runtime.plan.maxBodyBytes), route.name)
    }
    const coding = headers['transfer-encoding']
    // Node has undone `chunked`; any other coding would reach the model still encoded, unmarked.
    if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') return reject(ctx, req, res, requestId, new TransferCodingError(coding), route.name)
    const hasBody = length > 0 || (declared === undefined && coding !== undefined)
    const ex = new Exchange(ctx, req, res, runtime, route, rest, q < 0 ? '' : url.slice(q + 1), requestId)
    ex.begin(length, hasBody, arrived)
  }
}

/**
 * The client's x-request-id when it is a sane token (printable ASCII but `"` and `\`, at most 200
 * bytes: safe in JSON, logs and headers as it is), else a new UUID.
 */
export function requestIdOf(given: string | string[] | undefined): string {
  if (typeof given !== 'string' || given.length === 0 || given.length > 200) return randomUUID()
  for (let i = 0; i < given.length; i++) {
    const c = given.charCodeAt(i)
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x5c) return randomUUID()
  }
  return given
}

/** Answers a request the router refuses before any model sees it; the connection closes if a body may follow. */
function reject(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, requestId: string, err: Error & { statusCode: number; code: string }, route: string): void {
  ctx.metrics.requestErrors.inc({ route, code: err.code })
  const body = errorBody(err, route === '' ? undefined : route)
  // An unread body would be parsed as the next request: close instead of draining it.
  const closing = ctx.isShuttingDown() || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  if (closing) res.shouldKeepAlive = false
  res.writeHead(err.statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...(closing ? { connection: 'close' } : {}),
  })
  res.end(body)
}
