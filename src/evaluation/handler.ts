import type { RouteRuntime, Runtime } from '../proxy/runtime.js'
import { SCHEMA_VERSION, type OutcomeRecord, type RecordSink } from '../record/index.js'
import { OutcomeValidator, forEachItem, type FeedbackProblem, type FeedbackProblems, type Outcome } from './feedback.js'
import type { AssignmentMemory } from './memory.js'
import { Slicer } from './parse.js'
import { OutcomeBatch, type Tally } from './tally.js'
import { FeedbackInvalidError, FeedbackUnavailableError } from '../errors.js'

export interface FeedbackDeps {
  readonly memory: AssignmentMemory
  readonly tally: Tally
  /** Where outcome records go; undefined when nothing is recorded (outcomes are then only counted). */
  sink(): RecordSink | undefined
  /** How long a batch waits for room in the sink before the answer is 503. Default 2000 ms. */
  readonly sinkWaitMs?: number
}

/** The HTTP answer: status, headers (always content-type; retry-after with 503) and the JSON body, already serialized and encoded. */
export interface FeedbackAnswer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
}

const DEFAULT_SINK_WAIT_MS = 2000
const RETRY_AFTER_SECONDS = 2
// Outcomes listed per slice of the answer.
const ANSWER_SLICE = 2048
const JSON_TYPE = 'application/json; charset=utf-8'
const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 422: 'Unprocessable Entity', 503: 'Service Unavailable' }

/**
 * Handles one POST /feedback body, all or nothing: parses it (bounded nesting), validates every
 * outcome, has the sink accept every outcome record at once (waiting up to `sinkWaitMs` for room,
 * else 503 with Retry-After), and only then counts them, in one step that cannot throw. Each
 * stage runs in slices that yield to the event loop, so a 10 MB batch does not stall predictions.
 */
export async function handleFeedback(raw: Buffer | undefined, runtime: Runtime, scoped: RouteRuntime | undefined, deps: FeedbackDeps): Promise<FeedbackAnswer> {
  const slicer = new Slicer()
  const outcomes = await parseAndValidate(raw, runtime, scoped, deps, slicer)
  if (!Array.isArray(outcomes)) return reject(outcomes)

  const batch = new OutcomeBatch()
  const by = { model: 0, request_id: 0, user_id: 0 }
  // Each outcome's unit bucket (its user's, else its request's), recorded so the report uses the same.
  const buckets: number[] = []
  for (let i = 0; i < outcomes.length; i++) {
    const o = outcomes[i] as Outcome
    const bucket = deps.tally.bucketOf(o.route.name, o.userId ?? o.requestId)
    buckets.push(bucket)
    if (o.counted) batch.add(o.route.name, o.model, o.metric, o.value, bucket)
    by[o.attributedBy]++
    if ((i & 255) === 255) await slicer.pause()
  }
  // Acknowledged means recorded: the sink takes every record or none, before anything is counted.
  const sink = deps.sink()
  if (sink !== undefined && !await sink.writeBatch(outcomeRecords(outcomes, buckets, new Date().toISOString()), { timeoutMs: deps.sinkWaitMs ?? DEFAULT_SINK_WAIT_MS })) {
    return unavailable(outcomes.length)
  }
  // Nothing is awaited between the sink taking the records and this: the two cannot drift apart.
  deps.tally.apply(batch)
  slicer.restart()
  return accept(outcomes, by, slicer)
}

/** The outcome records of a batch, made one at a time as the sink serializes them. */
function * outcomeRecords(outcomes: readonly Outcome[], buckets: readonly number[], ts: string): Generator<OutcomeRecord> {
  for (let i = 0; i < outcomes.length; i++) {
    const o = outcomes[i] as Outcome
    const record: OutcomeRecord = { type: 'outcome', schema: SCHEMA_VERSION, ts, route: o.route.name, request_id: o.requestId, user_id: o.userId, model: o.model, metric: o.metric, value: o.value, attributed_by: o.attributedBy, bucket: buckets[i] as number }
    yield o.modelVersion === undefined ? record : { ...record, model_version: o.modelVersion, ...(o.counted ? {} : { counted: false }) }
  }
}

/** The batch's outcomes, or why it was refused. Items are validated as they are parsed, so they die young. */
async function parseAndValidate(raw: Buffer | undefined, runtime: Runtime, scoped: RouteRuntime | undefined, deps: FeedbackDeps, slicer: Slicer): Promise<Outcome[] | FeedbackProblems> {
  let validator: OutcomeValidator | undefined
  const found = await forEachItem(raw, slicer, (item, index, count) => {
    validator ??= new OutcomeValidator(runtime, deps.memory, scoped, count)
    validator.add(item, index)
  })
  if (found !== undefined) return { problems: [found], total: 1, statuses: new Set([found.status]) }
  if (validator === undefined) return { problems: [{ status: 400, at: 'body', message: 'no outcomes in the batch' }], total: 1, statuses: new Set([400]) }
  const result = validator.result()
  return 'outcomes' in result ? result.outcomes : result
}

async function accept(outcomes: readonly Outcome[], by: Record<Outcome['attributedBy'], number>, slicer: Slicer): Promise<FeedbackAnswer> {
  // Serialized and encoded here, a slice at a time: one JSON.stringify (or one 15 MB string handed
  // to the socket) for 200 000 entries would stall the event loop.
  const uncounted = outcomes.reduce((n, o) => n + (o.counted ? 0 : 1), 0)
  const parts: Buffer[] = [Buffer.from(`{"accepted":${outcomes.length},"attributed_by":${JSON.stringify(by)},${uncounted > 0 ? `"not_counted":${uncounted},` : ''}"outcomes":[`)]
  for (let i = 0; i < outcomes.length; i += ANSWER_SLICE) {
    const slice = outcomes.slice(i, i + ANSWER_SLICE).map((o) => ({
      route: o.route.name, model: o.model, metric: o.metric, attributed_by: o.attributedBy,
      ...(o.modelVersion !== undefined ? { model_version: o.modelVersion } : {}), ...(o.counted ? {} : { counted: false }),
    }))
    parts.push(Buffer.from((i === 0 ? '' : ',') + JSON.stringify(slice).slice(1, -1)))
    await slicer.pause()
  }
  parts.push(Buffer.from(']}'))
  return { status: 200, headers: { 'content-type': JSON_TYPE }, body: Buffer.concat(parts) }
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value))
}

// The codes come from the one catalogue; the bodies are built here because they carry `problems`.
const FEEDBACK_INVALID = new FeedbackInvalidError('').code
const FEEDBACK_UNAVAILABLE = new FeedbackUnavailableError('').code

function unavailable(count: number): FeedbackAnswer {
  return {
    status: 503,
    headers: { 'content-type': JSON_TYPE, 'retry-after': String(RETRY_AFTER_SECONDS) },
    body: json({
      statusCode: 503, code: FEEDBACK_UNAVAILABLE, error: STATUS_TEXT[503],
      message: `no outcome applied: the record file cannot take ${count} outcome record${count === 1 ? '' : 's'} now (buffer full or the file cannot be written); retry after ${RETRY_AFTER_SECONDS} s`,
    }),
  }
}

function reject({ problems, total, statuses }: FeedbackProblems): FeedbackAnswer {
  // The most basic failure decides the status: a malformed body before an unknown route before a semantic error.
  const status = statuses.has(400) ? 400 : statuses.has(404) ? 404 : 422
  const shown = problems.slice(0, 20).map((p: FeedbackProblem) => `${p.at}: ${p.message}`).join('; ')
  const listed = total > problems.length ? ` (the first ${problems.length} are listed)` : ''
  return {
    status,
    headers: { 'content-type': JSON_TYPE },
    body: json({
      statusCode: status, code: FEEDBACK_INVALID, error: STATUS_TEXT[status],
      message: `no outcome applied (${total} problem${total === 1 ? '' : 's'}${listed}): ${shown}${total > 20 ? '; …' : ''}`,
      problems: problems.map((p) => ({ at: p.at, message: p.message })),
    }),
  }
}
