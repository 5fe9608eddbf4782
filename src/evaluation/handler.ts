import type { Runtime, RouteRuntime } from '../proxy/runtime.js'
import type { RecordSink } from '../shadow/index.js'
import { parseFeedbackBody, validateOutcomes, type FeedbackProblem } from './feedback.js'
import type { AssignmentMemory } from './memory.js'
import type { Tally } from './tally.js'

export interface FeedbackDeps {
  readonly memory: AssignmentMemory
  readonly tally: Tally
  sink(): RecordSink | undefined
}

export interface FeedbackAnswer {
  readonly status: number
  readonly body: Record<string, unknown>
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 422: 'Unprocessable Entity' }

/** Handles one POST /feedback body: validates every outcome, then applies all of them or none. */
export function handleFeedback(raw: Buffer | undefined, runtime: Runtime, scoped: RouteRuntime | undefined, deps: FeedbackDeps): FeedbackAnswer {
  const items = parseFeedbackBody(raw === undefined ? '' : raw.toString('utf8'))
  const result = Array.isArray(items) ? validateOutcomes(items, runtime, deps.memory, scoped) : [items]
  if (result.length > 0 && 'at' in (result[0] as object)) return reject(result as FeedbackProblem[])
  if (result.length === 0) return reject([{ status: 400, at: 'body', message: 'no outcomes in the batch' }])
  const outcomes = result as Exclude<typeof result, FeedbackProblem[]>
  const sink = deps.sink()
  const ts = new Date().toISOString()
  const by = { model: 0, request_id: 0, user_id: 0 }
  for (const o of outcomes) {
    deps.tally.addOutcome(o.route.name, o.model, o.metric, o.value)
    by[o.attributedBy]++
    sink?.write({ type: 'outcome', ts, route: o.route.name, request_id: o.requestId, user_id: o.userId, model: o.model, metric: o.metric, value: o.value, attributed_by: o.attributedBy })
  }
  return {
    status: 200,
    body: {
      accepted: outcomes.length,
      attributed_by: by,
      outcomes: outcomes.map((o) => ({ route: o.route.name, model: o.model, metric: o.metric, attributed_by: o.attributedBy })),
    },
  }
}

function reject(problems: readonly FeedbackProblem[]): FeedbackAnswer {
  // The most basic failure decides the status: a malformed body before an unknown route before a semantic error.
  const status = problems.some((p) => p.status === 400) ? 400 : problems.some((p) => p.status === 404) ? 404 : 422
  const shown = problems.slice(0, 20).map((p) => `${p.at}: ${p.message}`).join('; ')
  return {
    status,
    body: {
      statusCode: status, code: 'MS_FEEDBACK_INVALID', error: STATUS_TEXT[status],
      message: `no outcome applied (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${shown}${problems.length > 20 ? '; …' : ''}`,
      problems: problems.map((p) => ({ at: p.at, message: p.message })),
    },
  }
}
