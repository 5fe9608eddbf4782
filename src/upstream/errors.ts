import { UpstreamError, UpstreamResetError, UpstreamTimeoutError, UpstreamUnreachableError } from '../errors.js'

export type UpstreamReason = 'refused' | 'reset' | 'timeout' | 'dns' | 'other'

/** Walks an error's cause chain for the first system or undici code. */
function rootCode(err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 5 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && !code.startsWith('FST_')) return code
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * Translates what undici and @fastify/reply-from raise into our catalogue, in this one place,
 * so clients see MS_UPSTREAM_* codes and dashboards see a small set of reasons.
 */
export function translateUpstreamError(err: unknown, route: string, model: string, timeoutMs: number): { error: Error & { statusCode: number }; reason: UpstreamReason } {
  const code = rootCode(err)
  // Already ours (the router judged the model's answer itself): passed on as it is.
  if (code === 'MS_UPSTREAM_ERROR' && err instanceof UpstreamError) return { error: err as Error & { statusCode: number }, reason: 'other' }
  const cause = { cause: err }
  // undici reports an answer it cannot parse (an unsolicited 100 Continue, a stray upgrade) as a
  // socket error: that is the model speaking badly, not the connection failing.
  if (code === 'UND_ERR_SOCKET' && /^bad (response|upgrade)$/.test((err as Error).message)) {
    return { error: new UpstreamError(model, route, `its answer is not valid HTTP for this request (${(err as Error).message})`, cause), reason: 'other' }
  }
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return { error: new UpstreamTimeoutError(model, route, timeoutMs, cause), reason: 'timeout' }
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { error: new UpstreamUnreachableError(model, route, `connection refused (${code})`, cause), reason: 'refused' }
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { error: new UpstreamUnreachableError(model, route, `host not found (${code})`, cause), reason: 'dns' }
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return { error: new UpstreamResetError(model, route, `connection reset (${code})`, cause), reason: 'reset' }
    default: {
      // reply-from reports header timeouts as its own FST_REPLY_FROM_* 504 error without a code.
      const status = (err as { statusCode?: number }).statusCode
      if (status === 504) return { error: new UpstreamTimeoutError(model, route, timeoutMs, cause), reason: 'timeout' }
      return { error: new UpstreamError(model, route, (err as Error).message ?? String(err), cause), reason: 'other' }
    }
  }
}
