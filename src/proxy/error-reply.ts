// The errors an HTTP exchange answers with: what a model's failure becomes (ours, in the catalogue's
// shape) and the JSON reply that carries one to the client, with the headers that go with it.
import { STATUS_CODES, type ServerResponse } from 'node:http'
import { UpstreamError, UpstreamTimeoutError, errorBody } from '../errors.js'
import { translateUpstreamError, type UpstreamReason } from '../upstream/errors.js'
import type { ProxyContext } from './context.js'
import type { Arm } from './runtime.js'

/** Retry-After on 503 MS_OVERLOADED: a short back-off, long enough for a burst to drain. */
const RETRY_AFTER_SECONDS = '1'

/**
 * RFC 9110 §15: status codes run 100–599, and a client cannot tell what 999 means (node would
 * relay it as is). The model answered badly: a 502 of its own.
 */
export function badStatusError(arm: Arm, statusCode: number): Error {
  const why = `it answered HTTP status ${statusCode}, outside 100–599 (RFC 9110 §15)`
  return new UpstreamError(arm.model, arm.route, why)
}

/** What the model's failure becomes for the client and the upstream-error counter's `reason`. */
export function upstreamFailure(
  err: Error,
  arm: Arm,
  timedOut: boolean,
): { error: Error & { statusCode: number }; reason: UpstreamReason } {
  return timedOut
    ? {
        error: new UpstreamTimeoutError(arm.model, arm.route, arm.timeoutMs, { cause: err }),
        reason: 'timeout' as const,
      }
    : translateUpstreamError(err, arm.route, arm.model, arm.timeoutMs)
}

/** Answers with `err` as JSON in fastify's shape; `retryAfter` for the router's own saturation. */
export function sendError(
  ctx: ProxyContext,
  res: ServerResponse,
  err: Error & { statusCode?: number; code?: string },
  route: string,
  requestId: string,
  model: string | undefined,
  retryAfter: boolean,
): void {
  const body = errorBody(err, route, model)
  const status = err.statusCode ?? 500
  res.writeHead(status, STATUS_CODES[status] ?? 'Error', {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...(model !== undefined ? { 'x-modelsplit-model': model } : {}),
    // RFC 9110 §10.2.3: how long a client should wait before trying again.
    ...(retryAfter ? { 'retry-after': RETRY_AFTER_SECONDS } : {}),
    ...(ctx.isShuttingDown() || !res.shouldKeepAlive ? { connection: 'close' } : {}),
  })
  res.end(body)
}
