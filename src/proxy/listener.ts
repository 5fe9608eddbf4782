import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { BadRequestPathError, BodyTooLargeError, RouteNotFoundError, ShuttingDownError, errorBody } from '../errors.js'
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
export function predictionHandler(deps: ListenerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const ctx = deps.ctx
  return function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const pathname = q < 0 ? url : url.slice(0, q)
    const method = req.method
    // POST /feedback has a handler of its own, answered before any prediction route.
    if (method === 'POST' && pathname === '/feedback') return deps.other(req, res)
    const requestId = requestIdOf(req.headers['x-request-id'])
    if (ctx.isShuttingDown()) return reject(ctx, req, res, requestId, new ShuttingDownError(), '')
    const runtime = deps.current()
    const route = matchRoute(runtime.routes, pathname)
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
    const hasBody = length > 0 || (declared === undefined && headers['transfer-encoding'] !== undefined)
    const ex = new Exchange(ctx, req, res, runtime, route, rest, q < 0 ? '' : url.slice(q + 1), requestId)
    ex.begin(length, hasBody)
  }
}

/** The client's x-request-id when it is a sane token (printable ASCII, at most 200 bytes), else a new UUID. */
function requestIdOf(given: string | string[] | undefined): string {
  if (typeof given !== 'string' || given.length === 0 || given.length > 200) return randomUUID()
  for (let i = 0; i < given.length; i++) {
    const c = given.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return randomUUID()
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
