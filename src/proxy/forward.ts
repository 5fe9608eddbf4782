import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import { BadRequestPathError, BodyTooLargeError, RouteNotFoundError, ShuttingDownError, UserIdRequiredError } from '../errors.js'
import type { MissingReason } from '../metrics/index.js'
import { countResponse, matchRoute, type Arm, type RouteRuntime, type Runtime } from './runtime.js'
import { translateUpstreamError } from './upstream-error.js'
import { readUserId, type BodyView } from './user-id.js'

/** Per-request state: the config snapshot the request started with, and what it decided. */
export interface RequestState {
  readonly runtime: Runtime
  readonly route: RouteRuntime
  /** The request path after the route prefix, query excluded ('' or '/...'). */
  readonly rest: string
  readonly body: BodyView
  arm: Arm | undefined
  upstreamFailed: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    ms: RequestState | null
  }
}

export interface ForwardDeps {
  /** The config in force; read once per request. */
  current(): Runtime
  isShuttingDown(): boolean
}

// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and must not be forwarded.
// reply-from strips Connection and what it lists from requests; these it leaves in place.
const HOP_BY_HOP_REQUEST = ['keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade']
const HOP_BY_HOP_RESPONSE = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authenticate']

/** Registers the catch-all prediction route: assign a model, forward, count. */
export function registerForwarding(app: FastifyInstance, deps: ForwardDeps): void {
  app.decorateRequest('ms', null)

  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    if (deps.isShuttingDown()) return done(new ShuttingDownError())
    const runtime = deps.current()
    const url = request.url
    const q = url.indexOf('?')
    const pathname = q < 0 ? url : url.slice(0, q)
    const route = matchRoute(runtime, pathname)
    if (route === undefined) return done(new RouteNotFoundError(pathname, runtime.routePaths))
    request.ms = { runtime, route, rest: pathname.slice(route.path === '/' ? 0 : route.path.length), body: { raw: undefined, parsed: undefined, state: 'unparsed' }, arm: undefined, upstreamFailed: false }
    done()
  })

  // Bodies stream straight through unless the route needs to read them.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request: FastifyRequest, payload: Readable, done: (err: Error | null, body?: unknown) => void) => {
    const st = request.ms as RequestState
    const limit = st.runtime.maxBodyBytes
    const declared = request.headers['content-length']
    if (declared !== undefined && Number(declared) > limit) return done(new BodyTooLargeError(st.route.name, limit))
    if (!st.route.needsBody) return done(null, payload)
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    payload.on('data', (chunk: Buffer) => {
      if (failed) return
      size += chunk.length
      if (size > limit) {
        failed = true
        done(new BodyTooLargeError(st.route.name, limit))
        return
      }
      chunks.push(chunk)
    })
    payload.on('end', () => {
      if (failed) return
      st.body.raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
      done(null, st.body.raw)
    })
    payload.on('error', (err) => { if (!failed) { failed = true; done(err) } })
  })

  // While draining, tell keep-alive clients this is the connection's last response, so the
  // server can close as soon as in-flight requests finish rather than at the deadline.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (deps.isShuttingDown()) reply.header('connection', 'close')
    done(null, payload)
  })

  app.addHook('onResponse', (request, reply, done) => {
    const arm = request.ms?.arm
    if (arm !== undefined) countResponse(arm, reply.statusCode, reply.elapsedTime / 1000)
    done()
  })

  const handler = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const st = request.ms as RequestState
    const arm = assign(request, st)
    st.arm = arm
    reply.header('x-modelsplit-model', arm.model)
    const options = arm.fromOptions ?? (arm.fromOptions = fromOptions(arm))
    try {
      if (st.body.raw === undefined) return reply.from(arm.base + st.rest, options)
      return reply.from(arm.base + st.rest, { ...options, body: st.body.raw, contentType: request.headers['content-type'] ?? 'application/octet-stream' })
    } catch (err) {
      // reply-from refuses paths that climb out of the model's base path ('..' segments).
      throw new BadRequestPathError((err as Error).message, { cause: err })
    }
  }
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/*', handler })
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/', handler })
}

/** Chooses the arm: override header, then the user id's hash, then the missing_user_id policy. */
function assign(request: FastifyRequest, st: RequestState): Arm {
  const route = st.route

  if (route.overrides.size > 0) {
    const forced = request.headers['x-modelsplit-model']
    if (typeof forced === 'string' && forced !== '') {
      const arm = route.overrides.get(forced)
      if (arm !== undefined) {
        arm.assignedByOverride.inc()
        return arm
      }
      route.missingCounters.unknown_override.inc()
    }
  }
  const id = readUserId(route.sources, request, st.body)
  if (id !== 'absent' && id !== 'body_not_json') {
    const arm = route.arms[route.assigner.pick(id)] as Arm
    arm.assignedByHash.inc()
    return arm
  }
  const reason: MissingReason = id
  route.missingCounters[reason].inc()
  const policy = route.missing
  if (policy === 'reject') {
    throw new UserIdRequiredError(route.name, route.sourceList, reason === 'body_not_json' ? 'the body is not JSON' : 'none of the sources had one')
  }
  const arm = policy === 'random' ? route.arms[route.assigner.pickRandom()] as Arm : policy
  arm.assignedByMissing.inc()
  return arm
}

function fromOptions(arm: Arm): object {
  return {
    timeout: arm.timeoutMs,
    rewriteRequestHeaders(request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
      for (let i = 0; i < HOP_BY_HOP_REQUEST.length; i++) {
        const h = HOP_BY_HOP_REQUEST[i] as string
        if (headers[h] !== undefined) delete headers[h]
      }
      headers['x-request-id'] = request.id
      // X-Forwarded-For: append the peer this hop received the request from (the de-facto
      // form of RFC 7239's `for=`), so model servers can log the client chain.
      const prior = headers['x-forwarded-for']
      const ip = request.ip
      headers['x-forwarded-for'] = prior === undefined ? ip : `${String(prior)}, ${ip}`
      return headers
    },
    rewriteHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
      // RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too.
      const listed = headers.connection
      if (typeof listed === 'string' && listed.includes(',') || (typeof listed === 'string' && !/^(keep-alive|close)$/i.test(listed))) {
        for (const name of (listed as string).split(',')) delete headers[name.trim().toLowerCase()]
      }
      for (let i = 0; i < HOP_BY_HOP_RESPONSE.length; i++) {
        const h = HOP_BY_HOP_RESPONSE[i] as string
        if (headers[h] !== undefined) delete headers[h]
      }
      return headers
    },
    onError(reply: FastifyReply, { error }: { error: Error }) {
      const st = reply.request.ms as RequestState
      st.upstreamFailed = true
      const { error: translated, reason } = translateUpstreamError(error, arm.route, arm.model, arm.timeoutMs)
      arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason })
      reply.send(translated)
    },
  }
}
