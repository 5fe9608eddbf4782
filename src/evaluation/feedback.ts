import type { RouteRuntime, Runtime } from '../proxy/runtime.js'
import { MAX_OUTCOME_VALUE } from '../record/index.js'
import type { AssignmentMemory } from './memory.js'
import { Slicer } from './parse.js'

export { MAX_NESTING, MAX_OUTCOME_CHARS, Slicer, forEachItem, parseFeedbackBody } from './parse.js'

/** One validated outcome, attributed to a model. */
export interface Outcome {
  readonly route: RouteRuntime
  readonly model: string
  readonly metric: string
  readonly value: number
  readonly requestId: string | null
  readonly userId: string | null
  readonly attributedBy: 'model' | 'request_id' | 'user_id'
  /** The MLflow version of the model the outcome is for (that request's, or the one serving now); undefined without one. */
  readonly modelVersion: string | null | undefined
  /**
   * Whether it counts in the route's experiment: not when its request was answered by another
   * registered version than the one the experiment is about (versions never mix); it is recorded either way.
   */
  readonly counted: boolean
}

/** A problem with one field of one outcome, and the HTTP status it maps to. */
export interface FeedbackProblem {
  readonly status: 400 | 404 | 422
  readonly at: string
  readonly message: string
}

/** Why a batch was refused: the first problems found, how many there were, and which statuses occurred. */
export interface FeedbackProblems {
  readonly problems: readonly FeedbackProblem[]
  readonly total: number
  readonly statuses: ReadonlySet<FeedbackProblem['status']>
}

/** Problems listed in an answer at most; the rest are counted. */
export const MAX_PROBLEMS = 100

const KEYS = new Set(['route', 'request_id', 'user_id', 'model', 'metric', 'value', 'ts'])

/** A short, safe rendering of what a client sent, for messages (never a whole hostile value). */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'string') return quote(v)
  return String(v)
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s)
}

type Fail = (status: FeedbackProblem['status'], field: string, message: string) => void

/**
 * Validates items one at a time and attributes each to a model: the `model` given (what the
 * application read from x-modelsplit-model), else the request id's remembered assignment, else the
 * user id hashed with the route's current split. Checks everything that could fail later: types,
 * ranges (0 ≤ value ≤ MAX_OUTCOME_VALUE, so sums and squares stay finite), routes, metrics, models.
 * Keeps the valid outcomes and the first MAX_PROBLEMS problems; nothing is applied here.
 */
export class OutcomeValidator {
  readonly outcomes: Outcome[] = []
  readonly #problems: FeedbackProblem[] = []
  readonly #statuses = new Set<FeedbackProblem['status']>()
  #total = 0
  #index = 0
  readonly #isSingle: boolean
  readonly #runtime: Runtime
  readonly #memory: AssignmentMemory
  readonly #scoped: RouteRuntime | undefined
  readonly #fail: Fail = (status, field, message) => {
    this.#total++
    this.#statuses.add(status)
    if (this.#problems.length < MAX_PROBLEMS) this.#problems.push({ status, at: this.#isSingle ? field : `[${this.#index}].${field}`, message })
  }

  /** `count`: how many items the batch has (a batch of one names fields without an index). */
  constructor(runtime: Runtime, memory: AssignmentMemory, scopedRoute: RouteRuntime | undefined, count: number) {
    this.#runtime = runtime
    this.#memory = memory
    this.#scoped = scopedRoute
    this.#isSingle = count === 1
  }

  /** Validates the item at `index` of the batch. */
  add(item: unknown, index: number): void {
    this.#index = index
    const outcome = validateOne(item, this.#runtime, this.#memory, this.#scoped, this.#fail)
    if (outcome !== undefined && this.#total === 0) this.outcomes.push(outcome)
  }

  /** The outcomes if every item was valid, else the problems. */
  result(): { readonly outcomes: Outcome[] } | FeedbackProblems {
    return this.#total > 0 ? { problems: this.#problems, total: this.#total, statuses: this.#statuses } : { outcomes: this.outcomes }
  }
}

/** Validates every item (see OutcomeValidator), in slices that yield to the event loop. */
export async function validateOutcomes(items: readonly unknown[], runtime: Runtime, memory: AssignmentMemory, scopedRoute: RouteRuntime | undefined,
  slicer: Slicer = new Slicer()): Promise<{ readonly outcomes: Outcome[] } | FeedbackProblems> {
  const validator = new OutcomeValidator(runtime, memory, scopedRoute, items.length)
  for (let i = 0; i < items.length; i++) {
    validator.add(items[i], i)
    if ((i & 127) === 127) await slicer.pause()
  }
  return validator.result()
}

function validateOne(item: unknown, runtime: Runtime, memory: AssignmentMemory, scopedRoute: RouteRuntime | undefined, fail: Fail): Outcome | undefined {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    fail(400, 'body', 'must be an object such as {"route":"churn","request_id":"…","metric":"converted","value":1}')
    return undefined
  }
  const o = item as Record<string, unknown>
  for (const k in o) {
    if (!KEYS.has(k)) {
      fail(400, k.length > 40 ? `${k.slice(0, 40)}…` : k, `unknown field; allowed: ${[...KEYS].join(', ')}`)
      return undefined
    }
  }
  // The first field that is present but not a non-empty string.
  let bad: string | undefined
  const str = (k: string): string | undefined => {
    const v = o[k]
    if (v === undefined || v === null) return undefined
    if (typeof v === 'string' && v !== '') return v
    bad ??= k
    return undefined
  }
  const routeName = str('route')
  const requestId = str('request_id')
  const userIdRaw = typeof o.user_id === 'number' && Number.isFinite(o.user_id) ? String(o.user_id) : str('user_id')
  const modelName = str('model')
  const metricName = str('metric')
  if (bad !== undefined) {
    fail(400, bad, `must be a non-empty string, got ${describe(o[bad])}`)
    return undefined
  }
  if (o.ts !== undefined && o.ts !== null && typeof o.ts !== 'string' && typeof o.ts !== 'number') {
    fail(400, 'ts', `must be a string or a number if given, got ${describe(o.ts)}`)
    return undefined
  }

  let route = scopedRoute
  if (route === undefined) {
    if (routeName === undefined) return void fail(400, 'route', 'is required (or post to <route path>/feedback)')
    route = runtime.routes.find((r) => r.name === routeName)
    if (route === undefined) return void fail(404, 'route', `no route named ${quote(routeName)}; routes: ${runtime.routes.map((r) => r.name).join(', ')}`)
  } else if (routeName !== undefined && routeName !== route.name) {
    return void fail(400, 'route', `is ${quote(routeName)} but this endpoint is route "${route.name}"'s`)
  }
  if (metricName === undefined) return void fail(400, 'metric', 'is required')
  const metric = route.metrics.find((m) => m.name === metricName)
  if (metric === undefined) {
    const declared = route.metrics.map((m) => m.name).join(', ')
    return void fail(422, 'metric', `route "${route.name}" declares no metric ${quote(metricName)}; declared: ${declared || '(none: add metrics: [{ name, type }] to the route)'}`)
  }
  if (metric.type === 'ratio') return void fail(422, 'metric', `metric "${metric.name}" is the ratio ${metric.numerator}/${metric.denominator}: feed back ${metric.numerator} and ${metric.denominator}, and the router divides their totals`)
  let value: number
  if (typeof o.value === 'boolean') value = o.value ? 1 : 0
  else if (typeof o.value === 'number' && Number.isFinite(o.value)) value = o.value
  else return void fail(400, 'value', `must be a number${metric.type === 'binary' ? ' (0 or 1) or a boolean' : ''}, got ${describe(o.value)}`)
  if (metric.type === 'binary' && value !== 0 && value !== 1) return void fail(422, 'value', `metric "${metric.name}" is binary: value must be 0 or 1, got ${value}`)
  if (value < 0) return void fail(422, 'value', `must be >= 0, got ${value}: outcome sums are Prometheus counters, which cannot decrease; shift the metric so it is non-negative`)
  // Bounded so that no sum, sum of squares or variance built from it can overflow to Infinity.
  if (value > MAX_OUTCOME_VALUE || !Number.isFinite(value * value)) {
    return void fail(422, 'value', `must be at most ${MAX_OUTCOME_VALUE}, got ${value}: larger values would overflow the sums of squares; rescale the metric`)
  }

  let model: string | undefined
  let by: Outcome['attributedBy']
  let version: string | null | undefined
  let userId = userIdRaw ?? null
  const remembered = requestId === undefined ? undefined : memory.recall(requestId)
  if (modelName !== undefined) {
    if (!route.arms.some((a) => a.model === modelName)) return void fail(422, 'model', `${quote(modelName)} is not in route "${route.name}"'s split (${route.arms.map((a) => a.model).join(', ')})`)
    model = modelName
    by = 'model'
  } else if (remembered !== undefined && remembered.route === route.name) {
    model = remembered.model
    userId ??= remembered.userId ?? null
    version = remembered.version
    by = 'request_id'
  } else if (userIdRaw !== undefined) {
    model = route.arms[route.assigner.pick(userIdRaw)]?.model
    by = 'user_id'
  } else {
    return void fail(422, requestId !== undefined ? 'request_id' : 'model', requestId !== undefined
      ? `request id ${quote(requestId)} is not remembered (older than feedback.request_ttl_ms, evicted, or served by another replica): send model or user_id too`
      : 'cannot attribute the outcome: give model (from x-modelsplit-model), request_id (from x-request-id) or user_id')
  }
  if (model === undefined) return void fail(422, 'model', 'could not be determined')
  const serving = route.arms.find((a) => a.model === model)?.registry
  if (by !== 'request_id') version = serving?.version
  const counted = by !== 'request_id' || serving == null || version === undefined || version === serving.version
  return { route, model, metric: metric.name, value, requestId: requestId ?? null, userId, attributedBy: by, modelVersion: version, counted }
}
