import type { Assigner, RendezvousTable } from '../assign/index.js'
import type { CompareOptions, PredictionSpec } from '../compare/index.js'
import type { TracingPlan } from '../tracing/types.js'
import type { Config, LoadedConfig, MetricConfig, ModelPrice, OverheadMode, RouteConfig, UserIdSource } from '../config/types.js'

/** A model as a route reaches it: its URL split once, so no request parses a URL. */
export interface ModelTarget {
  readonly model: string
  /** Model url without a trailing slash; the rest of the request path is appended. */
  readonly url: string
  readonly origin: string
  /** The url's path without a trailing slash ('' for the origin's root). */
  readonly basePath: string
  readonly timeoutMs: number
  /**
   * The MLflow registered version behind this model (`models.NAME.mlflow`), or null without one.
   * `version` is null while an alias is not resolved yet; records carry it as `model_version`.
   */
  readonly registry: { readonly model: string; readonly version: string | null } | null
  /** models.NAME.upstream_model: the `model` an OpenAI route sends this server; null: the client's. */
  readonly upstreamModel: string | null
  readonly price: ModelPrice | null
  /** `models.NAME.model_name`: what a gRPC ModelInferRequest's model_name becomes for this model; null: unchanged. */
  readonly modelName: string | null
}

/** A shadow model as a route mirrors to it, with its selection table. */
export interface ShadowPlan extends ModelTarget {
  readonly maxInFlight: number
  /** Users whose hash is below this (of 2^32) are mirrored; raising percent only adds users. */
  readonly threshold: number
  readonly table: RendezvousTable
  /** limits.max_capture_bytes: the largest answer of this shadow kept for comparison. */
  readonly maxCaptureBytes: number
  /** api: openai routes: streamed when the client streams (as_requested), or never (off). */
  readonly stream: 'as_requested' | 'off'
}

/** api: openai routes: the judge of undecided pairs, resolved. */
export interface JudgePlan {
  readonly target: ModelTarget
  /** Users whose hash is below this (of 2^32) have their undecided pairs judged. */
  readonly threshold: number
  readonly table: RendezvousTable
  readonly maxCostPerHour: number | null
  readonly maxInFlight: number
  readonly prompt: string
}

/** Everything a request on one route needs, decided at compile time. */
export interface RoutePlan {
  readonly config: RouteConfig
  readonly name: string
  readonly path: string
  /** api: openai: bodies parsed, model names rewritten, streamed answers read for tokens and timing. */
  readonly isOpenAi: boolean
  readonly sources: readonly UserIdSource[]
  /** The user id may be in the body: buffer and parse it. */
  readonly needsBody: boolean
  readonly assigner: Assigner
  /**
   * Every model a request on this route can reach: the split first, in split order (so
   * `assigner.pick()` indexes it), then models reachable only by override or missing_user_id.
   */
  readonly targets: readonly ModelTarget[]
  /** allow_override: model name → index in targets; otherwise empty. */
  readonly overrides: ReadonlyMap<string, number>
  /** Without a user id: a random split draw, a 400, or the index in targets of a fixed model. */
  readonly missing: 'random' | 'reject' | number
  readonly sourceList: string
  readonly shadows: readonly ShadowPlan[]
  readonly record: boolean
  /** recording.include_inputs: records carry the request body. */
  readonly includeInputs: boolean
  /** Shadows or a record need this request's outcome. */
  readonly observes: boolean
  /** Shadows, or records with inputs, need the body: buffer it up to max_mirror_body_bytes. */
  readonly mirrorsBody: boolean
  readonly prediction: PredictionSpec
  readonly compare: CompareOptions
  readonly metrics: readonly MetricConfig[]
  readonly control: string
  /** The route has metrics: remember each request's model so outcomes can name it by request id. */
  readonly remembers: boolean
  /** routes[].overhead: measure the router's own time per response (and say it in server-timing). */
  readonly overhead: OverheadMode
  readonly judge: JudgePlan | null
}

/**
 * A compiled config: deep-frozen, read by a request once at its start and carried to its end.
 * Nobody writes into it after compile; state that changes lives with the module that owns it.
 */
export interface Plan {
  readonly loaded: LoadedConfig
  readonly config: Config
  /** Longest path first. */
  readonly routes: readonly RoutePlan[]
  readonly routePaths: string
  readonly maxBodyBytes: number
  readonly maxMirrorBytes: number
  /** Bodies up to this size are read whole before the model sees them. */
  readonly maxBufferedBytes: number
  readonly maxCaptureBytes: number
  readonly maxCaptureTotalBytes: number
  readonly bodyTimeoutMs: number
  /** limits.max_sse_event_bytes */
  readonly maxSseEventBytes: number
  readonly includeInputs: boolean
  /** `tracing:`, resolved; null: no traces (the request path then builds nothing for them). */
  readonly tracing: TracingPlan | null
  /** Some route measures its overhead: only then does a request read the clock when it arrives. */
  readonly measuresOverhead: boolean
}
