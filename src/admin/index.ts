import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { STATUS_CODES } from 'node:http'
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify'
import type { ReloadResult } from '../config/store.js'
import { LOOPBACK_HOSTS } from '../config/schema.js'
import {
  AdminCrossSiteError,
  AdminHostRefusedError,
  AdminSimpleMutationError,
  BadQueryError,
  ConfigRejectedError,
  RolloutConflictError,
  RouteUnknownError,
  UnauthorizedError,
  errorBody,
  formatProblem,
} from '../errors.js'
import { experimentOf, type RouteExperiment, type TallyView } from '../evaluation/index.js'
import { agreementOf, judgedOf, llmSharesOf, type LlmArmCounts } from '../experiment/index.js'
import type { Plan, RoutePlan } from '../plan/index.js'
import { CONSOLE_PATHS, registerConsole } from './console/index.js'
import { browserRefusal, isHostAllowed } from './guard.js'

export type { ReloadResult }

/** The per-arm numbers the experiments endpoint reads: one Tally, or the merge of every worker's. */
export type { TallyView }

/** Comparison counts per route and (primary, shadow) pair, as /admin/shadows reads them. */
export type ShadowCounts = readonly { readonly route: string; readonly pairs: readonly ShadowPair[] }[]

/** One (primary, shadow) pair's comparison counts, and the judge's verdicts on it where a judge ran. */
export interface ShadowPair {
  primary: string
  shadow: string
  agree: number
  disagree: number
  error: number
  judged?: { wins: number; ties: number; losses: number }
}

/** api: openai routes: what each arm served (requests, tokens, cost), as /admin/llm reads them. */
export type LlmCounts = readonly { readonly route: string; readonly arms: readonly LlmArmCounts[] }[]

export interface AdminDeps {
  /** The Prometheus exposition (one registry, or every cluster worker's aggregated). */
  metricsText(): Promise<{ contentType: string; body: string }>
  tally(): Promise<TallyView>
  /** Which replicas' numbers /admin/experiments speaks for. */
  readonly scope: string
  current(): Plan
  /** Each shadow's comparisons with each primary, per route (this process's counts, or every worker's summed). */
  shadows?(): ShadowCounts | Promise<ShadowCounts>
  /** api: openai routes: each arm's requests, tokens and cost (this process's, or every worker's summed). */
  llm?(): LlmCounts | Promise<LlmCounts>
  /** More for /admin/config to show beside the file's config (the MLflow versions resolved). */
  configExtras?(): Record<string, unknown> | Promise<Record<string, unknown>>
  isReady(): boolean
  /** More for /readyz to say, ready or not (the record sink's state: a broker down does not make the router unready). */
  readiness?(): Record<string, unknown> | Promise<Record<string, unknown>>
  reload(): Promise<ReloadResult>
  /** Rollouts and bandits, where this listener can act on them. */
  readonly rollouts?: {
    list(): Record<string, unknown>[] | Promise<Record<string, unknown>[]>
    get(route: string): Record<string, unknown> | undefined | Promise<Record<string, unknown> | undefined>
    act(route: string, action: 'pause' | 'resume' | 'abort' | 'promote'): Promise<{ ok: true; status: unknown } | { ok: false; status: number; message: string }>
  }
}

/** The admin listener: health, readiness, metrics, the effective config, assignment look-ups, reloads. */
export function buildAdmin(deps: AdminDeps, logger: boolean | object): FastifyInstance {
  const admin = Fastify({ logger: logger as boolean, logController: new LogController({ disableRequestLogging: true }) })

  admin.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _request, reply) => {
    reply.code(err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500).type('application/json; charset=utf-8').send(errorBody(err))
  })

  // The listener's settings as it started: a reload cannot change them (the store refuses it),
  // and the check below reads this copy, so the socket and the check never disagree.
  const cfg = deps.current().config.admin
  const isLoopback = LOOPBACK_HOSTS.includes(cfg.host)
  const refuse = (
    reply: FastifyReply,
    err: { statusCode: number; code: string; message: string },
    headers: Record<string, string> = {},
  ): FastifyReply => reply.code(err.statusCode).headers(headers).type('application/json; charset=utf-8').send(errorBody(err))

  // First what no web page may do, token or not (guard.ts): send a foreign Host (DNS rebinding),
  // come from another origin or site, or mutate with a request it can send without a preflight.
  // Then who may use the admin API (admin.token_file): a bearer token in the Authorization header,
  // never a cookie, so a page elsewhere cannot make a browser act for it. Mutations are POST-only
  // and need the token; off loopback every endpoint does, but health (and /metrics unless
  // admin.protect_metrics) stay open for probes and Prometheus.
  admin.addHook('onRequest', async (request, reply) => {
    const headers = request.headers
    // DNS rebinding: a page whose name now resolves here sends that name as Host. Such a page
    // cannot have the token, so a request with it may use any name (an in-cluster Service's).
    const hasToken = async (): Promise<boolean> => cfg.token_file !== null && await tokenMatches(cfg.token_file, headers.authorization)
    if (!isHostAllowed(headers.host, cfg.host) && !await hasToken()) {
      const host = String(headers.host).slice(0, 100)
      return refuse(reply, new AdminHostRefusedError(
        `Host "${host}" is not this admin listener's: use localhost, an IP address or admin.host (${cfg.host}), or send the bearer token`))
    }
    const refusal = browserRefusal(request.method, headers)
    if (refusal !== undefined) {
      const err = refusal.kind === 'simple-mutation' ? new AdminSimpleMutationError(refusal.message) : new AdminCrossSiteError(refusal.message)
      return refuse(reply, err)
    }
    // The route the router matched (after percent-decoding, without query or fragment), never the
    // raw URL: /%6detrics and /metrics#x are served as /metrics, so they are authorised as it.
    const path = request.routeOptions.url ?? ''
    const mutating = request.method !== 'GET' && request.method !== 'HEAD'
    const open = path === '/healthz' || path === '/readyz' || (path === '/metrics' && !cfg.protect_metrics) || (!mutating && CONSOLE_PATHS.includes(path))
    const needed = cfg.token_file !== null && !open && (mutating || !isLoopback || path === '/metrics')
    if (!needed) return
    if (await tokenMatches(cfg.token_file as string, headers.authorization)) return
    const err = new UnauthorizedError('this admin endpoint needs the bearer token of admin.token_file: send Authorization: Bearer <token>')
    return refuse(reply, err, { 'www-authenticate': 'Bearer realm="modelsplit-admin"' })
  })

  // Mutations carry no body; a client that marks itself with Content-Type: application/json
  // may send an empty one (fastify's own parser refuses that).
  admin.removeContentTypeParser('application/json')
  admin.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body: string | Buffer, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(String(body)))
    } catch (err) {
      done(new BadQueryError(`the body is not JSON: ${(err as Error).message}`), undefined)
    }
  })

  admin.get('/healthz', async () => ({ status: 'ok' }))
  registerConsole(admin)

  admin.get('/readyz', async (_request, reply) => {
    if (deps.isReady()) return { status: 'ready', sha256: deps.current().loaded.sha256, ...await deps.readiness?.() }
    return reply.code(503).send({ status: 'not ready', ...await deps.readiness?.() })
  })

  admin.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await deps.metricsText()
    return reply.type(contentType).send(body)
  })

  admin.get('/admin/config', async () => {
    const { loaded } = deps.current()
    return { file: loaded.file, sha256: loaded.sha256, config: loaded.config, ...await deps.configExtras?.() }
  })

  const routeNamed = (name: string): RoutePlan => {
    const routes = deps.current().routes
    const route = routes.find((r) => r.name === name)
    if (route === undefined) throw new RouteUnknownError(name, routes.map((r) => r.name).join(', '))
    return route
  }

  admin.get('/admin/assign', async (request) => {
    const q = request.query as Record<string, unknown>
    const routeName = typeof q.route === 'string' ? q.route : undefined
    const userId = typeof q.user_id === 'string' ? q.user_id : undefined
    if (routeName === undefined || userId === undefined || userId === '') {
      throw new BadQueryError('query needs route=NAME and user_id=ID, e.g. /admin/assign?route=churn&user_id=42')
    }
    const route = routeNamed(routeName)
    return { route: route.name, user_id: userId, salt: route.assigner.salt, ...route.assigner.explain(userId) }
  })

  const experiment = (route: RoutePlan, tally: TallyView): RouteExperiment & { scope: string } => ({
    ...experimentOf(route, tally),
    scope: tally.scope ?? deps.scope,
  })

  admin.get('/admin/experiments', async () => {
    const routes = deps.current().routes.filter((r) => r.metrics.length > 0)
    const tally = await deps.tally()
    return { routes: routes.map((r) => experiment(r, tally)) }
  })

  // Shadow agreement with its interval, computed by the experiment's owner (the console shows it as is).
  admin.get('/admin/shadows', async () => ({
    routes: ((await deps.shadows?.()) ?? []).map((r) => ({
      route: r.route,
      pairs: r.pairs.map((p) => ({
        ...agreementOf(p.primary, p.shadow, p.agree, p.disagree, p.error),
        ...(p.judged !== undefined ? { judged: judgedOf(p.judged.wins, p.judged.ties, p.judged.losses) } : {}),
      })),
    })),
  }))

  // Request, token and cost shares per arm side by side, computed by the experiment's owner.
  admin.get('/admin/llm', async () => ({
    scope: deps.scope,
    routes: ((await deps.llm?.()) ?? []).map((r) => ({ route: r.route, arms: llmSharesOf(r.arms) })),
  }))

  admin.get('/admin/experiments/:route', async (request) => {
    const route = routeNamed((request.params as { route: string }).route)
    return experiment(route, await deps.tally())
  })

  const rollouts = deps.rollouts
  if (rollouts !== undefined) {
    admin.get('/admin/rollouts', async () => ({ routes: await rollouts.list() }))
    admin.get('/admin/rollouts/:route', async (request) => {
      const name = (request.params as { route: string }).route
      const status = await rollouts.get(name)
      if (status === undefined) {
        routeNamed(name) // a 404 naming the routes when there is no such route at all
        throw new RolloutConflictError(`route "${name}" has no rollout or bandit; routes with one: ${(await rollouts.list()).map((r) => r.route).join(', ') || 'none'}`)
      }
      return status
    })
    admin.post('/admin/rollouts/:route/:action', async (request, reply) => {
      const { route, action } = request.params as { route: string; action: string }
      if (action !== 'pause' && action !== 'resume' && action !== 'abort' && action !== 'promote') {
        throw new BadQueryError(`unknown action "${action}": use pause, resume, abort or promote`)
      }
      const r = await rollouts.act(route, action)
      if (r.ok) return r.status
      const err = r.status === 404 ? new RouteUnknownError(route, deps.current().routes.map((x) => x.name).join(', ')) : new RolloutConflictError(r.message)
      return reply.code(r.status).type('application/json; charset=utf-8').send(errorBody({ statusCode: r.status, code: err.code, message: err.message }))
    })
  }

  admin.post('/admin/reload', async (_request, reply) => {
    const r = await deps.reload()
    if (r.result === 'failure') {
      const err = new ConfigRejectedError(`config not applied; still serving sha256 ${r.sha256}:\n` + (r.problems ?? []).map(formatProblem).join('\n'))
      return reply.code(422).send({ statusCode: 422, code: err.code, error: STATUS_CODES[422], message: err.message, problems: r.problems, sha256: r.sha256 })
    }
    return r
  })

  return admin
}

/** The Authorization header carries the token in the file, compared in constant time. */
async function tokenMatches(file: string, header: string | undefined): Promise<boolean> {
  if (header === undefined || !/^Bearer\s+/i.test(header)) return false
  let expected: string
  try {
    expected = (await readFile(file, 'utf8')).trim()
  } catch {
    return false // a token file gone after compile: nobody gets in rather than everybody
  }
  const given = header.replace(/^Bearer\s+/i, '').trim()
  // Digests of equal length, so neither the comparison nor its length leaks the token.
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return expected.length > 0 && timingSafeEqual(a, b)
}
