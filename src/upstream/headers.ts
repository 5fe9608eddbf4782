// Header rules for both directions, one set for the primary and the shadows.

/**
 * Whether a request header (any case) stays with this hop rather than going to the model:
 * hop-by-hop headers (RFC 9110 §7.6.1), Host (the model's origin gives its own), Expect (the
 * router answers 100-continue itself, RFC 9110 §10.1.1), Content-Length (recomputed for the
 * body we send), and the two headers the router sets itself.
 * and `x-modelsplit-shadow`, which only the router's mirrors carry.
 * Lower-cases only names whose length matches one of those, so most headers cost one switch.
 */
export function isRouterRequestHeader(name: string): boolean {
  switch (name.length) {
    case 2: return name.toLowerCase() === 'te'
    case 4: return name.toLowerCase() === 'host'
    case 6: return name.toLowerCase() === 'expect'
    case 7: {
      const n = name.toLowerCase()
      return n === 'trailer' || n === 'upgrade'
    }
    case 10: {
      const n = name.toLowerCase()
      return n === 'connection' || n === 'keep-alive'
    }
    case 12: return name.toLowerCase() === 'x-request-id'
    case 14: return name.toLowerCase() === 'content-length'
    case 15: return name.toLowerCase() === 'x-forwarded-for'
    case 16: return name.toLowerCase() === 'proxy-connection'
    case 17: return name.toLowerCase() === 'transfer-encoding'
    case 19: {
      // x-modelsplit-shadow marks the router's mirrors: a client must not be able to set it, or a
      // model that skips side effects for mirrors would skip them for a real request.
      const n = name.toLowerCase()
      return n === 'proxy-authorization' || n === 'x-modelsplit-shadow'
    }
    default: return false
  }
}

/**
 * Whether a model's response header is dropped on the way to the client: hop-by-hop headers
 * (RFC 9110 §7.6.1) and the router's own `x-request-id` and `x-modelsplit-model`, which always
 * win over a model's (a model must not change which request or model an answer is attributed to).
 */
export function isRouterResponseHeader(name: string): boolean {
  switch (name.length) {
    case 2: return name.toLowerCase() === 'te'
    case 7: {
      const n = name.toLowerCase()
      return n === 'trailer' || n === 'upgrade'
    }
    case 10: {
      const n = name.toLowerCase()
      return n === 'connection' || n === 'keep-alive'
    }
    case 12: return name.toLowerCase() === 'x-request-id'
    case 16: return name.toLowerCase() === 'proxy-connection'
    case 17: return name.toLowerCase() === 'transfer-encoding'
    case 18: {
      const n = name.toLowerCase()
      return n === 'x-modelsplit-model' || n === 'proxy-authenticate'
    }
    default: return false
  }
}

/**
 * Names listed in a Connection header value, lower-cased (RFC 9110 §7.6.1: they are hop-by-hop
 * too). The common `keep-alive` and `close` list nothing else, so they cost no split.
 */
export function connectionListed(value: string | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined
  const v = value.toLowerCase()
  if (v === 'keep-alive' || v === 'close') return undefined
  const out: string[] = []
  for (const part of v.split(',')) {
    const name = part.trim()
    if (name !== '' && name !== 'keep-alive' && name !== 'close') out.push(name)
  }
  return out.length === 0 ? undefined : out
}

/**
 * The headers a model receives, as undici's flat [name, value, …] list: the client's, minus the
 * router's (above) and those its Connection header lists, plus x-request-id and the peer appended
 * to X-Forwarded-For (the de-facto form of RFC 7239's `for=`), and the body's length if known.
 */
export function upstreamRequestHeaders(raw: readonly string[], requestId: string, peer: string | undefined, contentLength: number, extra?: string): string[] {
  const out: string[] = []
  let forwarded: string | undefined
  let listed: readonly string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === 10 && name.toLowerCase() === 'connection') listed = connectionListed(raw[i + 1])
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (isRouterRequestHeader(name)) {
      if (name.length === 15) forwarded = forwarded === undefined ? raw[i + 1] : `${forwarded}, ${raw[i + 1]}`
      continue
    }
    if (listed !== undefined && listed.includes(name.toLowerCase())) continue
    out.push(name, raw[i + 1] as string)
  }
  out.push('x-request-id', requestId)
  if (peer !== undefined) out.push('x-forwarded-for', forwarded === undefined ? peer : `${forwarded}, ${peer}`)
  else if (forwarded !== undefined) out.push('x-forwarded-for', forwarded)
  if (contentLength >= 0) out.push('content-length', String(contentLength))
  if (extra !== undefined) out.push(extra, '1')
  return out
}

/**
 * A model's response headers for the client, as node:http's flat [name, value, …] list: hop-by-hop
 * and Connection-listed ones dropped, then the router's own appended last.
 */
export function clientResponseHeaders(raw: readonly Buffer[], requestId: string, model: string, closing: boolean): string[] {
  const out: string[] = []
  let listed: readonly string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1')
    const value = (raw[i + 1] as Buffer).toString('latin1')
    if (isRouterResponseHeader(name)) {
      if (name.length === 10 && name.toLowerCase() === 'connection') listed = connectionListed(value)
      continue
    }
    out.push(name, value)
  }
  if (listed !== undefined) {
    for (let i = out.length - 2; i >= 0; i -= 2) {
      if (listed.includes((out[i] as string).toLowerCase())) out.splice(i, 2)
    }
  }
  out.push('x-request-id', requestId, 'x-modelsplit-model', model)
  if (closing) out.push('connection', 'close')
  return out
}
