import type { RouteRuntime, Runtime } from '../proxy/runtime.js'
import type { AssignmentMemory } from './memory.js'

/** One validated outcome, attributed to a model. */
export interface Outcome {
  readonly route: RouteRuntime
  readonly model: string
  readonly metric: string
  readonly value: number
  readonly requestId: string | null
  readonly userId: string | null
  readonly attributedBy: 'model' | 'request_id' | 'user_id'
}

/** A problem with one field of one outcome, and the HTTP status it maps to. */
export interface FeedbackProblem {
  readonly status: 400 | 404 | 422
  readonly at: string
  readonly message: string
}

const KEYS = new Set(['route', 'request_id', 'user_id', 'model', 'metric', 'value', 'ts'])

/**
 * Splits a feedback body into items: a JSON object, a JSON array of objects, or NDJSON (one
 * object per line, as high-volume producers stream them). Returns a problem if it is neither.
 */
export function parseFeedbackBody(text: string): unknown[] | FeedbackProblem {
  const trimmed = text.trim()
  if (trimmed === '') return { status: 400, at: 'body', message: 'empty body: send a JSON object, a JSON array of objects, or NDJSON' }
  try {
    const v = JSON.parse(trimmed) as unknown
    return Array.isArray(v) ? v : [v]
  } catch (err) {
    if (!trimmed.includes('\n')) return { status: 400, at: 'body', message: `not JSON: ${(err as Error).message}` }
  }
  const items: unknown[] = []
  const lines = trimmed.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim()
    if (line === '') continue
    try {
      items.push(JSON.parse(line))
    } catch (err) {
      return { status: 400, at: `line ${i + 1}`, message: `not JSON: ${(err as Error).message}` }
    }
  }
  return items
}

/**
 * Validates every item and attributes it to a model: the `model` given (what the application
 * read from x-modelsplit-model), else the request id's remembered assignment, else the user id
 * hashed with the route's current split. All items are checked before any is applied.
 */
export function validateOutcomes(items: readonly unknown[], runtime: Runtime, memory: AssignmentMemory, scopedRoute: RouteRuntime | undefined): Outcome[] | FeedbackProblem[] {
  const problems: FeedbackProblem[] = []
  const out: Outcome[] = []
  const single = items.length === 1
  items.forEach((item, i) => {
    const at = (field: string) => (single ? field : `[${i}].${field}`)
    const fail = (status: FeedbackProblem['status'], field: string, message: string) => void problems.push({ status, at: at(field), message })
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return fail(400, 'body', 'must be an object such as {"route":"churn","request_id":"…","metric":"converted","value":1}')
    const o = item as Record<string, unknown>
    for (const k of Object.keys(o)) if (!KEYS.has(k)) return fail(400, k, `unknown field; allowed: ${[...KEYS].join(', ')}`)
    const str = (k: string): string | undefined | null => (o[k] === undefined || o[k] === null ? undefined : typeof o[k] === 'string' && o[k] !== '' ? o[k] : null)
    const routeName = str('route')
    const requestId = str('request_id')
    const userIdRaw = typeof o.user_id === 'number' && Number.isFinite(o.user_id) ? String(o.user_id) : str('user_id')
    const modelName = str('model')
    const metricName = str('metric')
    for (const [k, v] of [['route', routeName], ['request_id', requestId], ['user_id', userIdRaw], ['model', modelName], ['metric', metricName]] as const) {
      if (v === null) return fail(400, k, 'must be a non-empty string')
    }
    return accept(routeName ?? undefined, requestId ?? undefined, userIdRaw ?? undefined, modelName ?? undefined, metricName ?? undefined, o, fail)
  })
  return problems.length > 0 ? problems : out

  function accept(routeName: string | undefined, requestId: string | undefined, userIdRaw: string | undefined, modelName: string | undefined, metricName: string | undefined,
    o: Record<string, unknown>, fail: (status: FeedbackProblem['status'], field: string, message: string) => void): void {
    let route = scopedRoute
    if (route === undefined) {
      if (routeName === undefined) return fail(400, 'route', 'is required (or post to <route path>/feedback)')
      route = runtime.routes.find((r) => r.name === routeName)
      if (route === undefined) return fail(404, 'route', `no route named "${routeName}"; routes: ${runtime.routes.map((r) => r.name).join(', ')}`)
    } else if (routeName !== undefined && routeName !== route.name) {
      return fail(400, 'route', `is "${routeName}" but this endpoint is route "${route.name}"'s`)
    }
    if (metricName === undefined) return fail(400, 'metric', 'is required')
    const metric = route.metrics.find((m) => m.name === metricName)
    if (metric === undefined) {
      const declared = route.metrics.map((m) => m.name).join(', ')
      return fail(422, 'metric', `route "${route.name}" declares no metric "${metricName}"; declared: ${declared || '(none: add metrics: [{ name, type }] to the route)'}`)
    }
    let value: number
    if (typeof o.value === 'boolean') value = o.value ? 1 : 0
    else if (typeof o.value === 'number' && Number.isFinite(o.value)) value = o.value
    else return fail(400, 'value', `must be a number${metric.type === 'binary' ? ' (0 or 1) or a boolean' : ''}, got ${JSON.stringify(o.value) ?? 'nothing'}`)
    if (metric.type === 'binary' && value !== 0 && value !== 1) return fail(422, 'value', `metric "${metric.name}" is binary: value must be 0 or 1, got ${value}`)
    if (value < 0) return fail(422, 'value', `must be >= 0, got ${value}: outcome sums are Prometheus counters, which cannot decrease; shift the metric so it is non-negative`)

    let model: string | undefined
    let by: Outcome['attributedBy']
    let userId = userIdRaw ?? null
    if (modelName !== undefined) {
      if (!route.arms.some((a) => a.model === modelName)) return fail(422, 'model', `"${modelName}" is not in route "${route.name}"'s split (${route.arms.map((a) => a.model).join(', ')})`)
      model = modelName
      by = 'model'
    } else if (requestId !== undefined && memory.recall(requestId)?.route === route.name) {
      const r = memory.recall(requestId)
      model = r?.model
      userId ??= r?.userId ?? null
      by = 'request_id'
    } else if (userIdRaw !== undefined) {
      model = route.arms[route.assigner.pick(userIdRaw)]?.model
      by = 'user_id'
    } else {
      return fail(422, requestId !== undefined ? 'request_id' : 'model', requestId !== undefined
        ? `request id "${requestId}" is not remembered (older than feedback.request_ttl_ms, evicted, or served by another replica): send model or user_id too`
        : 'cannot attribute the outcome: give model (from x-modelsplit-model), request_id (from x-request-id) or user_id')
    }
    if (model === undefined) return fail(422, 'model', 'could not be determined')
    out.push({ route, model, metric: metric.name, value, requestId: requestId ?? null, userId, attributedBy: by })
  }
}
