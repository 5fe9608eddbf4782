import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { formatProblem, type ConfigProblem } from '../errors.js'
import type { Metrics } from '../metrics/index.js'
import type { Runtime, RouteRuntime } from '../proxy/runtime.js'
import type { ReloadResult } from '../config/store.js'
import { analyseRoute, type RouteExperiment, type Tally } from '../evaluation/index.js'

export type { ReloadResult }

export interface AdminDeps {
  readonly metrics: Metrics
  readonly tally: Tally
  current(): Runtime
  isReady(): boolean
  reload(): Promise<ReloadResult>
}

/** The admin listener: health, readiness, metrics, the effective config, assignment look-ups, reloads. */
export function buildAdmin(deps: AdminDeps, logger: boolean | object): FastifyInstance {
  const admin = Fastify({ logger: logger as boolean, logController: new LogController({ disableRequestLogging: true }) })

  admin.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _request, reply) => {
    const statusCode = err.statusCode ?? 500
    reply.code(statusCode).send({ statusCode, code: err.code ?? 'MS_INTERNAL', error: statusName(statusCode), message: err.message })
  })

  admin.get('/healthz', async () => ({ status: 'ok' }))

  admin.get('/readyz', async (_request, reply) => {
    if (deps.isReady()) return { status: 'ready', sha256: deps.current().loaded.sha256 }
    return reply.code(503).send({ status: 'not ready' })
  })

  admin.get('/metrics', async (_request, reply) => {
    const body = await deps.metrics.registry.metrics()
    return reply.type(deps.metrics.registry.contentType).send(body)
  })

  admin.get('/admin/config', async () => {
    const { loaded } = deps.current()
    return { file: loaded.file, sha256: loaded.sha256, config: loaded.config }
  })

  admin.get('/admin/assign', async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const runtime = deps.current()
    const routeName = typeof q.route === 'string' ? q.route : undefined
    const userId = typeof q.user_id === 'string' ? q.user_id : undefined
    if (routeName === undefined || userId === undefined || userId === '') {
      return reply.code(400).send({ statusCode: 400, code: 'MS_BAD_QUERY', error: 'Bad Request', message: 'query needs route=NAME and user_id=ID, e.g. /admin/assign?route=churn&user_id=42' })
    }
    const route = runtime.routes.find((r) => r.name === routeName)
    if (route === undefined) {
      return reply.code(404).send({ statusCode: 404, code: 'MS_ROUTE_UNKNOWN', error: 'Not Found', message: `no route named "${routeName}"; routes: ${runtime.routes.map((r) => r.name).join(', ')}` })
    }
    return { route: route.name, user_id: userId, salt: route.assigner.salt, ...route.assigner.explain(userId) }
  })

  const experiment = (route: RouteRuntime): RouteExperiment & { scope: string } => ({
    ...analyseRoute({
      route: route.name,
      control: route.control,
      weights: Object.fromEntries(route.assigner.models.map((m, i) => [m, route.assigner.weights[i] ?? 0])),
      metrics: route.metrics,
      assignments: (model) => deps.tally.assignments(route.name, model),
      outcomes: (model, metric) => deps.tally.outcomes(route.name, model, metric),
    }),
    scope: 'this replica since it started; PromQL over modelsplit_outcome_* sums all replicas',
  })

  admin.get('/admin/experiments', async () => {
    const routes = deps.current().routes.filter((r) => r.metrics.length > 0)
    return { routes: routes.map(experiment) }
  })

  admin.get('/admin/experiments/:route', async (request, reply) => {
    const name = (request.params as { route: string }).route
    const routes = deps.current().routes
    const route = routes.find((r) => r.name === name)
    if (route === undefined) {
      return reply.code(404).send({ statusCode: 404, code: 'MS_ROUTE_UNKNOWN', error: 'Not Found', message: `no route named "${name}"; routes: ${routes.map((r) => r.name).join(', ')}` })
    }
    return experiment(route)
  })

  admin.post('/admin/reload', async (_request, reply) => {
    const r = await deps.reload()
    if (r.result === 'failure') {
      return reply.code(422).send({
        statusCode: 422, code: 'MS_CONFIG_INVALID', error: 'Unprocessable Entity',
        message: `config not applied; still serving sha256 ${r.sha256}:\n` + (r.problems ?? []).map(formatProblem).join('\n'),
        problems: r.problems, sha256: r.sha256,
      })
    }
    return r
  })

  return admin
}

function statusName(code: number): string {
  return code === 404 ? 'Not Found' : code === 400 ? 'Bad Request' : code >= 500 ? 'Internal Server Error' : 'Error'
}
