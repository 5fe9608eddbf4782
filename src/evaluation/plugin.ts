import { Transform } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { BodyTooLargeError } from '../errors.js'
import { matchRoute } from '../plan/index.js'
import type { Runtime } from '../proxy/runtime.js'
import { handleFeedback, type FeedbackDeps } from './handler.js'

/** A request another process of this replica remembers (serve --workers). */
export interface PeerRecall {
  readonly requestId: string
  readonly route: string
  readonly model: string
  readonly userId: string | undefined
  readonly at: number
  readonly version?: string | null
}

export interface FeedbackPluginOptions {
  current(): Runtime
  readonly deps: FeedbackDeps
  /**
   * Under serve --workers a prediction and its outcome may reach different workers: ask the
   * others for request ids this one does not remember, before the batch is validated.
   */
  readonly peers?: (requestIds: string[]) => Promise<readonly PeerRecall[]>
}

// Request ids named in a body, found without parsing it (the batch is parsed and validated after):
// only a hint of which ids to ask the other workers for.
const REQUEST_ID = /"request_id"\s*:\s*"([\x21\x23-\x5b\x5d-\x7e]{1,200})"/g
const MAX_PEER_LOOKUPS = 10_000

/**
 * POST /feedback and POST <route path>/feedback as a fastify plugin of their own: the prediction
 * listener hands these requests to fastify and knows nothing else about outcomes.
 */
export async function feedbackPlugin(app: FastifyInstance, opts: FeedbackPluginOptions): Promise<void> {
  app.removeAllContentTypeParsers()
  // feedback.max_body_bytes can change on reload, so the limit is checked here rather than fixed
  // in fastify's bodyLimit: a declared length over it is refused before reading, and a body that
  // grows past it stops being read.
  app.addHook('preParsing', (_request, _reply, payload, done) => {
    const limit = opts.current().config.feedback.max_body_bytes
    const declared = Number(_request.headers['content-length'] ?? 0)
    if (declared > limit) return done(new BodyTooLargeError('feedback', limit))
    let seen = 0
    const counted = new Transform({
      transform(chunk: Buffer, _enc, next) {
        seen += chunk.length
        next(seen > limit ? new BodyTooLargeError('feedback', limit) : null, chunk)
      },
    })
    done(null, payload.pipe(counted))
  })
  // Outcomes come as JSON, an array, or NDJSON under any content type: read the bytes, parse later.
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: Number.MAX_SAFE_INTEGER }, (_request, body, done) => {
    done(null, body)
  })
  const answer = async (request: FastifyRequest, reply: FastifyReply, routeName: string | undefined): Promise<FastifyReply> => {
    const runtime = opts.current()
    const route = routeName === undefined ? undefined : runtime.routes.find((r) => r.name === routeName)
    const body = request.body as Buffer | undefined
    if (opts.peers !== undefined && body !== undefined) await recallFromPeers(body, opts.deps, opts.peers)
    const a = await handleFeedback(body, runtime, route, opts.deps)
    return reply.code(a.status).headers(a.headers).send(a.body)
  }
  app.post('/feedback', (request, reply) => answer(request, reply, undefined))
  // The listener only hands over POST <route path>/feedback on routes with metrics.
  app.post('/*', (request, reply) => {
    const url = request.url
    const q = url.indexOf('?')
    const pathname = (q < 0 ? url : url.slice(0, q)).replace(/\/feedback$/, '')
    const route = matchRoute(opts.current().routes, pathname === '' ? '/' : pathname)
    return answer(request, reply, route?.name ?? '')
  })
}

async function recallFromPeers(body: Buffer, deps: FeedbackDeps, peers: NonNullable<FeedbackPluginOptions['peers']>): Promise<void> {
  const text = body.toString('utf8')
  const re = new RegExp(REQUEST_ID.source, 'g')
  const missing: string[] = []
  let yielded = 0
  for (let m = re.exec(text); m !== null && missing.length < MAX_PEER_LOOKUPS; m = re.exec(text)) {
    const id = m[1] as string
    if (deps.memory.recall(id) === undefined) missing.push(id)
    // A large batch is scanned in slices, so predictions in flight meanwhile are not held up.
    if (re.lastIndex - yielded > 262_144) {
      yielded = re.lastIndex
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  if (missing.length === 0) return
  for (const r of await peers(missing)) deps.memory.remember(r.requestId, r.route, r.model, r.userId, r.version, r.at)
}
