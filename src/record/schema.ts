/**
 * The one owner of record shapes: writers build these types, readers (the report) go through the
 * guards below. `schema` is bumped when a field changes meaning; a reader skips what it cannot read.
 */

/** The record format this build writes. */
export const SCHEMA_VERSION = 1

/** How a prediction's model was chosen. */
export type RecordAssignment = 'hash' | 'override' | 'missing_user_id'

/** Why a selected shadow was not sent. */
export type RecordShadowDropReason = 'max_in_flight' | 'body_too_large' | 'shutting_down' | 'unavailable' | 'capture_budget'

/** A shadow that was sent: its answer (or failure) and the comparison with the primary. */
export interface ShadowResult {
  model: string
  /** The MLflow registered version behind the model, when `models.NAME.mlflow` names one (null: not resolved yet). */
  model_version?: string | null
  status: number
  latency_ms: number
  prediction: unknown
  error: string | null
  prediction_error?: string
  /**
   * api: openai routes: `layer` is the cascade layer that decided (undecided: none did; agree is then
   * false). gRPC routes: `outputs`, the comparison per output matched by name.
   */
  comparison: { agree: boolean; abs_diff_max: number | null; abs_diff_mean: number | null; fraction_agree: number; layer?: 'exact' | 'normalised' | 'structured' | 'undecided'; outputs?: RecordOutputComparison[] } | { error: string }
  /** api: openai routes: the tokens this shadow reported and their cost (never billed to the user's usage). */
  usage?: RecordUsage
}

/** api: openai routes: tokens as the model reported them, and their cost by models.NAME.price (null: unknown). */
export interface RecordUsage {
  input_tokens: number | null
  output_tokens: number | null
  cost: number | null
}

/** A gRPC route's comparison, per output matched by name (tensor comparison). */
export interface RecordOutputComparison {
  name: string
  problem: 'missing_in_shadow' | 'missing_in_primary' | 'dtype' | 'shape' | null
  instances: number
  agreeing: number
  argmax_agreeing: number | null
  abs_diff_max: number | null
}

/**
 * A tensor as a record holds it: elements flattened row-major; 64-bit integers past 2^53 as
 * decimal strings, BYTES as UTF-8 text (or `base64:…` when not UTF-8).
 */
export interface RecordTensor {
  name: string
  datatype: string
  shape: number[]
  data: (number | string | null)[]
}

/** A shadow selected for the request but not sent, and why. */
export interface ShadowDrop {
  model: string
  model_version?: string | null
  dropped: RecordShadowDropReason
}

/** One line of the record file for a prediction request: the primary and its shadows side by side. */
export interface PredictionRecord {
  readonly type: 'prediction'
  readonly schema: typeof SCHEMA_VERSION
  readonly ts: string
  readonly request_id: string
  readonly route: string
  /** `grpc` for calls on a gRPC route (predictions are then RecordTensor lists); absent: HTTP. */
  readonly transport?: 'grpc'
  readonly user_id: string | null
  /** The shares (0..1) of the split in force when it was assigned: the report's weight periods. */
  readonly shares?: Readonly<Record<string, number>> | null
  readonly assignment: RecordAssignment
  readonly primary: { model: string; model_version?: string | null; status: number; latency_ms: number; prediction: unknown; error: string | null; prediction_error?: string; usage?: RecordUsage; ttft_ms?: number }
  /** Every shadow selected for this request: answered (or failed), or not sent and why. */
  readonly shadows: (ShadowResult | ShadowDrop)[]
  input?: unknown
  input_omitted?: 'body_too_large' | 'streaming' | 'not_decodable'
}

/** How an outcome was tied to a model. */
export type Attribution = 'model' | 'request_id' | 'user_id'

/** One outcome accepted through POST /feedback, attributed to a model. */
export interface OutcomeRecord {
  readonly type: 'outcome'
  readonly schema: typeof SCHEMA_VERSION
  /** When the batch was accepted. */
  readonly ts: string
  readonly route: string
  readonly request_id: string | null
  readonly user_id: string | null
  readonly model: string
  readonly metric: string
  /** Finite, 0 ≤ value ≤ MAX_OUTCOME_VALUE (0 or 1 for binary metrics). */
  readonly value: number
  readonly attributed_by: Attribution
  /** The bucket of its unit (a hash of its user id, else its request id; see analysis.buckets) the router counted it in. */
  readonly bucket?: number
  /** The MLflow version of the model it is for (its request's, else the one serving), when the model has one. */
  readonly model_version?: string | null
  /** false: its request was answered by an earlier version than the route's experiment is about, so it is not counted there. */
  readonly counted?: false
}

/** A traffic decision (rollout step, bandit weight change): the shape is not settled yet. */
export interface DecisionRecord {
  readonly type: 'decision'
  readonly schema: typeof SCHEMA_VERSION
  readonly ts: string
  readonly route: string
  readonly [field: string]: unknown
}

/**
 * api: openai routes with a judge: its verdict on one primary/shadow pair, written when it
 * arrives (after the pair's prediction record, which it names by request_id).
 */
export interface JudgementRecord {
  readonly type: 'judgement'
  readonly schema: typeof SCHEMA_VERSION
  readonly ts: string
  readonly request_id: string
  readonly route: string
  readonly user_id: string | null
  readonly primary: string
  readonly shadow: string
  readonly judge_model: string
  /** From the shadow's side: win (its answer is better), tie, loss; error: no readable verdict. */
  readonly verdict: 'win' | 'tie' | 'loss' | 'error'
  /** Where the shadow's answer stood in the prompt (the order is drawn per pair). */
  readonly shadow_position: 'A' | 'B'
  /** The judge's answer text as it came (first 200 characters), or null when the call failed. */
  readonly judge_answer: string | null
  /** The call's cost by the judge model's price (0 without one). */
  readonly cost: number
}

/** Any record this build writes. */
export type AnyRecord = PredictionRecord | OutcomeRecord | DecisionRecord | JudgementRecord

/**
 * The largest outcome value accepted. Its square (1e30) and any realistic count of them summed stay
 * finite, so no counter, sum of squares or variance can overflow to Infinity.
 */
export const MAX_OUTCOME_VALUE = 1e15

/**
 * Whether a parsed line is in a format this build reads: `schema` absent (files written before the
 * field existed, which have the version 1 shape) or at most SCHEMA_VERSION.
 */
export function isReadableSchema(record: Record<string, unknown>): boolean {
  const v = record.schema
  return v === undefined || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= SCHEMA_VERSION)
}

const ATTRIBUTIONS: ReadonlySet<unknown> = new Set(['model', 'request_id', 'user_id'])

/** The outcome in a parsed line, or undefined when the line is not a well-formed outcome record. */
export function asOutcomeRecord(record: Record<string, unknown>): OutcomeRecord | undefined {
  if (record.type !== 'outcome' || !isReadableSchema(record)) return undefined
  const { route, model, metric, value } = record
  if (typeof route !== 'string' || typeof model !== 'string' || typeof metric !== 'string') return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || Math.abs(value) > MAX_OUTCOME_VALUE) return undefined
  if (record.attributed_by !== undefined && !ATTRIBUTIONS.has(record.attributed_by)) return undefined
  return record as unknown as OutcomeRecord
}

/** The prediction in a parsed line when its route and primary are readable; shadows are checked by the caller. */
export function asPredictionRecord(record: Record<string, unknown>): PredictionRecord | undefined {
  if (record.type !== 'prediction' || !isReadableSchema(record)) return undefined
  const primary = record.primary
  if (typeof record.route !== 'string' || typeof primary !== 'object' || primary === null || typeof (primary as { model?: unknown }).model !== 'string') return undefined
  return record as unknown as PredictionRecord
}

// The JSON line of a record (and the symbols that let a prediction record carry its input and
// prediction as text) live in serialise.ts; re-exported here, where they always were.
export { isoTime, kRawInput, kRawPrediction, kShaped, recordJson, recordLine, type RawPrediction } from './serialise.js'
