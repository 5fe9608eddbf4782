import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { PassThrough, type Readable } from 'node:stream'
import { BadRequestPathError, BodyTooLargeError, RouteNotFoundError, ShuttingDownError, UserIdRequiredError } from '../errors.js'
import type { AssignmentSource, MissingReason } from '../metrics/index.js'
import { mirrorHeaders, type Observation, type Observer, type ShadowDispatcher } from '../shadow/index.js'
import { handleFeedback, type FeedbackDeps } from '../evaluation/index.js'
import { countResponse, isShadowed, matchRoute, type Arm, type RouteRuntime, type Runtime } from './runtime.js'
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
  /** Set on observed routes (shadows or records): what the record and comparisons need. */
  userId: string | undefined
  source: AssignmentSource
  obs: Observation | undefined
  start: number
  /** The primary's answer as it streams to the client, up to max_capture_bytes (null past it). */
  captured: Buffer[] | null
  upstreamError: string | null
  /** POST <route path>/feedback on a route that declares metrics: an outcome, not a prediction. */
  feedback: boolean
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
  readonly observer: Observer
  readonly shadows: ShadowDispatcher
  readonly feedback: FeedbackDeps
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
    const url = request.url
    const q = url.indexOf('?')
    const pathname = q < 0 ? url : url.slice(0, q)
    // POST /feedback has a route of its own (registered below), answered before any prediction route.
    if (pathname === '/feedback' && request.method === 'POST') return done()
    const runtime = deps.current()
    const route = matchRoute(runtime, pathname)
    if (route === undefined) return done(new RouteNotFoundError(pathname, runtime.routePaths))
    request.ms = {
      runtime, route, rest: pathname.slice(route.path === '/' ? 0 : route.path.length),
      body: { raw: undefined, parsed: undefined, state: 'unparsed', truncated: false },
      arm: undefined, userId: undefined, source: 'hash', obs: undefined, start: 0, captured: [], upstreamError: null,
      feedback: false,
    }
    if (route.remembers && request.method === 'POST' && request.ms.rest === '/feedback') request.ms.feedback = true
    done()
  })

  // Bodies stream straight through unless the route needs to read them.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request: FastifyRequest, payload: Readable, done: (err: Error | null, body?: unknown) => void) => {
    const st = request.ms
    const declared = request.headers['content-length']
    if (st === null || st.feedback) {
      const limit = deps.current().config.feedback.max_body_bytes
      if (declared !== undefined && Number(declared) > limit) return done(new BodyTooLargeError(st?.route.name ?? 'feedback', limit))
      return bufferBody(payload, limit, () => new BodyTooLargeError(st?.route.name ?? 'feedback', limit), done)
    }
    const route = st.route
    if (declared !== undefined && Number(declared) > st.runtime.maxBodyBytes) return done(new BodyTooLargeError(route.name, st.runtime.maxBodyBytes))
    if (!route.needsBody && !route.mirrorsBody) return done(null, payload)
    // A user id in the body needs all of it (up to max_body_bytes). Mirroring only needs it
    // up to max_mirror_body_bytes: past that the request streams on, unmirrored.
    if (route.needsBody) {
      return bufferBody(payload, st.runtime.maxBodyBytes, () => new BodyTooLargeError(route.name, st.runtime.maxBodyBytes), (err, body) => {
        if (Buffer.isBuffer(body)) st.body.raw = body
        done(err, body)
      })
    }
    bufferBody(payload, st.runtime.maxMirrorBytes, (rest) => {
      st.body.truncated = true
      return rest
    }, (err, body) => {
      if (Buffer.isBuffer(body)) st.body.raw = body
      done(err, body)
    })
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

  const feedback = (request: FastifyRequest, reply: FastifyReply, route: RouteRuntime | undefined): FastifyReply => {
    const answer = handleFeedback(request.body as Buffer | undefined, deps.current(), route, deps.feedback)
    return reply.code(answer.status).send(answer.body)
  }
  app.post('/feedback', (request, reply) => feedback(request, reply, undefined))

  const handler = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const st = request.ms as RequestState
    if (st.feedback) return feedback(request, reply, st.route)
    const arm = assign(request, st)
    st.arm = arm
    if (st.route.remembers) deps.feedback.memory.remember(request.id, st.route.name, arm.model, st.userId)
    reply.header('x-modelsplit-model', arm.model)
    const options = arm.fromOptions ?? (arm.fromOptions = fromOptions(arm))
    if (st.route.observes) observe(request, reply, st, arm, deps)
    try {
      if (st.body.raw === undefined) reply.from(arm.base + st.rest, options)
      else reply.from(arm.base + st.rest, { ...options, body: st.body.raw, contentType: request.headers['content-type'] ?? 'application/octet-stream' })
    } catch (err) {
      // reply-from refuses paths that climb out of the model's base path ('..' segments).
      throw new BadRequestPathError((err as Error).message, { cause: err })
    }
    // Shadows go out after the primary is dispatched, and nothing here waits for them.
    if (st.route.shadows.length > 0) sendShadows(request, st, arm, deps)
    return reply
  }
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/*', handler })
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], url: '/', handler })
}

/**
 * Reads a body into one Buffer up to `limit` bytes. Past it, `over` decides: return an error
 * (413), or take the stream of the whole body (what was read, then the rest) to forward unread.
 */
function bufferBody(payload: Readable, limit: number, over: ((rest: Readable) => Error | Readable), done: (err: Error | null, body?: Buffer | Readable) => void): void {
  const chunks: Buffer[] = []
  let size = 0
  let settled = false
  const onData = (chunk: Buffer): void => {
    if (settled) return
    size += chunk.length
    if (size <= limit) {
      chunks.push(chunk)
      return
    }
    settled = true
    payload.removeListener('data', onData)
    const rest = new PassThrough()
    const outcome = over(rest)
    if (outcome instanceof Error) return done(outcome)
    for (const c of chunks) rest.write(c)
    rest.write(chunk)
    payload.pipe(rest)
    done(null, outcome)
  }
  payload.on('data', onData)
  payload.on('end', () => {
    if (settled) return
    settled = true
    done(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size))
  })
  payload.on('error', (err) => { if (!settled) { settled = true; done(err) } })
}

/** Opens the request's observation and closes its primary side when the response ends. */
function observe(request: FastifyRequest, reply: FastifyReply, st: RequestState, arm: Arm, deps: ForwardDeps): void {
  st.start = performance.now()
  const obs = deps.observer.begin(st.route, request.id, st.userId, st.source, st.body.raw, st.body.truncated)
  st.obs = obs
  // 'close' fires once whether the response ended, failed or the client went away.
  reply.raw.once('close', () => {
    const captured = st.captured
    const error = st.upstreamError ?? (reply.raw.writableFinished ? null : 'the client closed the connection before the response ended')
    obs.primaryDone(arm.model, reply.raw.statusCode, performance.now() - st.start, captured === null ? undefined : Buffer.concat(captured), captured === null && error === null ? `response over limits.max_capture_bytes (${st.runtime.maxCaptureBytes} bytes)` : error)
  })
}

function sendShadows(request: FastifyRequest, st: RequestState, arm: Arm, deps: ForwardDeps): void {
  const obs = st.obs as Observation
  const shadows = st.route.shadows
  let mirror: Parameters<ShadowDispatcher['send']>[1] | undefined
  for (let i = 0; i < shadows.length; i++) {
    const target = shadows[i] as RouteRuntime['shadows'][number]
    // Mirroring a request to the model that answers it would only double its load.
    if (target.model === arm.model || !isShadowed(target, st.userId)) continue
    if (st.body.truncated) {
      target.dropped.body_too_large.inc()
      continue
    }
    if (mirror === undefined) {
      const q = request.url.indexOf('?')
      mirror = { method: request.method, pathAndQuery: q < 0 ? st.rest : st.rest + request.url.slice(q), headers: mirrorHeaders(request.headers, request.id), body: st.body.raw }
    }
    if (deps.shadows.send(target, mirror, obs.shadowDone)) obs.expectShadow()
  }
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
        st.source = 'override'
        return arm
      }
      route.missingCounters.unknown_override.inc()
    }
  }
  const id = readUserId(route.sources, request, st.body)
  if (id !== 'absent' && id !== 'body_not_json') {
    st.userId = id
    const arm = route.arms[route.assigner.pick(id)] as Arm
    arm.assignedByHash.inc()
    arm.assigned.count++
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
  st.source = 'missing_user_id'
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
      // The common `keep-alive` / `close` lists nothing else, so only other values are split.
      if (typeof listed === 'string' && !/^(keep-alive|close)$/i.test(listed)) {
        for (const name of listed.split(',')) delete headers[name.trim().toLowerCase()]
      }
      for (let i = 0; i < HOP_BY_HOP_RESPONSE.length; i++) {
        const h = HOP_BY_HOP_RESPONSE[i] as string
        if (headers[h] !== undefined) delete headers[h]
      }
      return headers
    },
    onResponse(request: FastifyRequest, reply: FastifyReply, res: { stream: Readable }) {
      const st = request.ms as RequestState
      reply.send(res.stream)
      if (st.obs === undefined) return reply
      // Keep a copy of the answer as it streams by, for the comparison and the record. A second
      // 'data' listener sees the same chunks as the pipe to the client, at no extra stream.
      const cap = st.runtime.maxCaptureBytes
      let size = 0
      res.stream.on('data', (chunk: Buffer) => {
        if (st.captured === null) return
        size += chunk.length
        if (size > cap) st.captured = null
        else st.captured.push(chunk)
      })
      return reply
    },
    onError(reply: FastifyReply, { error }: { error: Error }) {
      const st = reply.request.ms as RequestState
      const { error: translated, reason } = translateUpstreamError(error, arm.route, arm.model, arm.timeoutMs)
      st.upstreamError = translated.message
      arm.metrics.upstreamErrors.inc({ route: arm.route, model: arm.model, reason })
      reply.send(translated)
    },
  }
}
