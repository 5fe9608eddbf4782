import type { BanditConfig, EvaluationConfig, PromoteWhen, RolloutConfig } from './decisions.js'
import type { MlflowConfig, ModelRegistryRef } from './mlflow.js'
export type { MlflowConfig, ModelRegistryRef } from './mlflow.js'
// The validated, defaulted config: the same keys users write in YAML (snake_case), so
// `GET /admin/config` shows them exactly what they configured plus the defaults.

export interface Endpoint {
  readonly host: string
  readonly port: number
}

/** The prediction listener, and the gRPC one beside it when `listen.grpc` is set. */
export interface ListenConfig extends Endpoint {
  /** The gRPC listener (`listen.grpc: { host, port, tls }`); absent: none. */
  readonly grpc?: GrpcEndpoint
}

/** The gRPC listener: HTTP/2 cleartext, or TLS (ALPN h2) with `tls`. */
export interface GrpcEndpoint extends Endpoint {
  /** The server's certificate chain and key (PEM files, absolute once loaded); absent: cleartext. */
  readonly tls?: GrpcTlsConfig
}

/** Who may connect to the gRPC listener over TLS: `none`, or client certificates checked against `ca_file`. */
export type ClientAuth = 'none' | 'request' | 'require'

/** `listen.grpc.tls`: the files are absolute once loaded, and read again by every reload. */
export interface GrpcTlsConfig {
  readonly cert_file: string
  readonly key_file: string
  /** PEM CA bundle client certificates must chain to; set exactly when client_auth is not `none`. */
  readonly ca_file?: string
  readonly client_auth: ClientAuth
}

/**
 * The bytes of `listen.grpc.tls`'s files as the compile read and checked them: the listener is
 * given these (at start, and on the reload that commits them), never a second read of the paths.
 */
export interface GrpcTlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca?: Buffer
  /** Of the three files' bytes: a reload whose file text is unchanged still commits new certificates. */
  readonly sha256: string
}

/** The admin listener: where, and who may use it. */
export interface AdminEndpoint extends Endpoint {
  /** A file holding the bearer token the admin API asks for; null: none. */
  readonly token_file: string | null
  /** Allows an admin listener off loopback without a token (say so explicitly). */
  readonly insecure: boolean
  /** /metrics needs the token too (health endpoints never do). */
  readonly protect_metrics: boolean
}

export interface ModelConfig {
  readonly url: string
  readonly timeout_ms: number
  /** Keep-alive connections the router may open to this model. */
  readonly connections: number
  /** The MLflow registered version behind this URL (pinned or by alias); null: none. */
  readonly mlflow: ModelRegistryRef | null
  /** OpenAI routes: the `model` sent to this server in place of the client's; null: unchanged. */
  readonly upstream_model: string | null
  /** OpenAI routes: what this model's tokens cost; null: no cost counted. */
  readonly price: ModelPrice | null
  /**
   * The name this server knows the model by: a gRPC ModelInferRequest's `model_name` is rewritten
   * to it when the call goes to this model (arms that are different models on one server); absent: as sent.
   */
  readonly model_name?: string
}

/** Currency units (the same for every model) per million tokens. */
export interface ModelPrice {
  readonly input_per_million_tokens: number
  readonly output_per_million_tokens: number
}

/** What a route's clients speak: any HTTP JSON API, or the OpenAI API (streamed answers, tokens). */
export type RouteApi = 'http' | 'openai'

export type UserIdSource =
  | { readonly kind: 'header' | 'query' | 'cookie'; readonly name: string; readonly spec: string }
  | { readonly kind: 'body'; readonly pointer: string; readonly tokens: readonly string[]; readonly spec: string }

/** A gRPC route: calls to one full method, and (Open Inference Protocol) one `model_name`. */
export interface GrpcRouteConfig {
  /** The full method path, `/package.Service/Method`. */
  readonly method: string
  /** Only ModelInferRequests naming this model (field 1); null: every call to the method. */
  readonly model_name: string | null
}

export type HashAlgorithm = 'rendezvous' | 'nginx'

export interface SplitEntry {
  readonly model: string
  readonly weight: number
}

export interface ShadowConfig {
  readonly model: string
  /** Share of users (0..100) whose requests are mirrored, chosen by hash of the user id. */
  readonly percent: number
  /** Mirrored requests to this model on this route in flight at once; more are dropped. */
  readonly max_in_flight: number
  /** When this shadow becomes the route's rollout candidate; null: never. */
  readonly promote_when: PromoteWhen | null
  /** api: openai routes: `as_requested` streams the shadow when the client streams; `off` never streams it. */
  readonly stream: ShadowStream
}

export type ShadowStream = 'as_requested' | 'off'

/** api: openai routes: a model asked which of two answers is better, for pairs the cascade left undecided. */
export interface JudgeConfig {
  readonly model: string
  /** Share of users (0..100, by hash: sticky) whose undecided pairs are judged. */
  readonly percent: number
  /** Judge cost (models.JUDGE.price) allowed per clock hour; null: no cap. */
  readonly max_cost_per_hour: number | null
  readonly max_in_flight: number
  /** With {{question}}, {{answer_a}} and {{answer_b}}; the judge answers A, B or TIE. */
  readonly prompt: string
}

export interface CompareConfig {
  /** `auto` or a JSON Pointer to the prediction in each model's response. */
  readonly prediction: string
  readonly tolerance: number
  readonly mode: 'exact' | 'argmax'
  /** Tensor comparisons (gRPC routes): elements agree within tolerance + rtol·|primary|; absent: 0. */
  readonly rtol?: number
}

export interface MetricConfig {
  readonly name: string
  /** `ratio`: Σ numerator / Σ denominator (two other metrics of the route), by the delta method. */
  readonly type: 'binary' | 'continuous' | 'ratio'
  /** Minimum detectable effect (absolute); null: 0.01 for binary, 5% of the control mean otherwise. */
  readonly mde: number | null
  readonly higher_is_better: boolean
  /** `covariate`: a pre-period value fed back like an outcome, used by CUPED, not tested on its own. */
  readonly role: 'outcome' | 'covariate'
  readonly numerator: string | null
  readonly denominator: string | null
  /** CUPED: the covariate metric whose per-user value adjusts this one; null: none. */
  readonly cuped: string | null
  /** Non-inferiority guardrail: the candidate may not be worse by more than `margin`; null: none. */
  readonly guardrail: { readonly margin: number } | null
}

/** How a route's outcomes are analysed (the `analysis` key). */
export interface AnalysisConfig {
  /** `user`: users hashed into buckets, the delta method over buckets; `request`: every outcome independent. */
  readonly unit: 'user' | 'request'
  readonly buckets: number
  /** Across the route's metrics × candidates. */
  readonly correction: 'holm' | 'bh' | 'none'
  readonly alpha: number
}

export interface RouteConfig {
  readonly name: string
  /** The URL path prefix; for a gRPC route, its method path (informational: HTTP never matches it). */
  readonly path: string
  /** `openai`: model names rewritten, SSE read for first-token time, tokens and cost. */
  readonly api: RouteApi
  /** Set: the route serves the gRPC listener, not the HTTP one. */
  readonly grpc: GrpcRouteConfig | null
  readonly user_id: readonly UserIdSource[]
  readonly salt: string
  readonly hash: HashAlgorithm
  /** `random`, `reject`, or a model name. */
  readonly missing_user_id: string
  readonly allow_override: boolean
  readonly split: readonly SplitEntry[]
  readonly shadow: readonly ShadowConfig[]
  readonly compare: CompareConfig
  /** Write one record per request on this route. */
  readonly record: boolean
  /** The router's own time per response: off, the histogram, or the histogram and a Server-Timing header. */
  readonly overhead: OverheadMode
  /** Outcomes fed back for this route (POST /feedback). */
  readonly metrics: readonly MetricConfig[]
  /** How the metrics are analysed: unit, buckets, correction, alpha. */
  readonly analysis: AnalysisConfig
  /** The model candidates are compared against; defaults to the split's first model. */
  readonly control: string
  /** A progressive canary of one candidate against the control, or null. */
  readonly rollout: RolloutConfig | null
  /** A Thompson-sampling bandit over the split, or null (never with a rollout). */
  readonly bandit: BanditConfig | null
  /** api: openai routes: the judge of undecided answer pairs, or null. */
  readonly judge: JudgeConfig | null
}

export interface FeedbackConfig {
  /** Recent request ids remembered (with their model) so outcomes can be attributed by request id. */
  readonly request_memory: number
  readonly request_ttl_ms: number
  readonly max_body_bytes: number
}

export interface RecordingConfig {
  /** Where records go: the JSONL file (`path`, `max_bytes`, `keep`), a Kafka topic or an HTTP collector. */
  readonly sink: SinkKind
  readonly path: string
  readonly max_bytes: number
  readonly keep: number
  readonly include_inputs: boolean
  /** Set when `sink` is kafka. */
  readonly kafka?: KafkaSinkConfig
  /** Set when `sink` is http. */
  readonly http?: HttpSinkConfig
  /** Where kafka and http sinks keep records the sink has not acknowledged. */
  readonly spool: SpoolConfig
}

export type SinkKind = 'file' | 'kafka' | 'http'

export type KafkaCompression = 'none' | 'gzip' | 'lz4'

export interface KafkaSinkConfig {
  /** `host:port` of each bootstrap broker, as written. */
  readonly brokers: readonly string[]
  readonly topic: string
  readonly acks: 'all' | 1
  readonly compression: KafkaCompression
  readonly linger_ms: number
  readonly max_batch_bytes: number
  readonly client_id: string
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password_file: string }
  /** TLS to the brokers; files resolved against the config file's directory. */
  readonly tls?: { readonly ca_file?: string; readonly cert_file?: string; readonly key_file?: string }
}

export interface HttpSinkConfig {
  readonly url: string
  readonly format: 'cloudevents-batch'
  /** `Name: value` lines sent with every batch (an auth header); resolved against the config file's directory. */
  readonly headers_file?: string
  readonly timeout_ms: number
}

export interface SpoolConfig {
  readonly path: string
  readonly max_bytes: number
}

export interface Limits {
  readonly max_body_bytes: number
  /** Bodies up to this size are mirrored to shadows and recorded; larger ones are only forwarded. */
  readonly max_mirror_body_bytes: number
  /** Model answers kept for comparison and records up to this size; larger ones are not parsed. */
  readonly max_capture_bytes: number
  /** Bytes of model answers held for comparison across all requests at once; past it, answers stream uncaptured. */
  readonly max_capture_total_bytes: number
  /** Request bodies up to this size are read whole before the model sees them (a slow client holds no model connection). */
  readonly max_buffered_body_bytes: number
  /** A request body that pauses longer than this gets 408 and its connection is closed. */
  readonly body_timeout_ms: number
  /** OpenAI routes: the largest SSE event held to rewrite and read; a larger one passes through as is. */
  readonly max_sse_event_bytes: number
}

/** OpenTelemetry traces: off unless configured. */
export interface TracingConfig {
  /** The OTLP/HTTP collector: a base URL (`/v1/traces` is appended) or the full traces URL. */
  readonly otlp_endpoint: string
  /** Share (0..1) of new traces kept; an incoming sampled `traceparent` is always honoured. */
  readonly sample_ratio: number
  readonly service_name: string
}

/**
 * `overhead:` the router's own time per response. `metric`: modelsplit_overhead_seconds{route,model};
 * `header`: that and a `server-timing` response header; `off`: neither (nothing measured).
 */
export type OverheadMode = 'off' | 'metric' | 'header'

export interface Config {
  readonly listen: ListenConfig
  readonly admin: AdminEndpoint
  readonly limits: Limits
  readonly shutdown_timeout_ms: number
  readonly models: Readonly<Record<string, ModelConfig>>
  readonly routes: readonly RouteConfig[]
  readonly recording: RecordingConfig
  readonly feedback: FeedbackConfig
  readonly evaluation: EvaluationConfig
  /** null: no traces. */
  readonly tracing: TracingConfig | null
  /** The default of routes[].overhead. */
  readonly overhead: OverheadMode
  /** The MLflow tracking server and Model Registry; null: none. */
  readonly mlflow: MlflowConfig | null
}

/** A loaded config with where it came from: what reloads and `/admin/config` report. */
export interface LoadedConfig {
  readonly config: Config
  readonly file: string
  readonly sha256: string
  /** The gRPC listener's certificate, key and CA as read by this compile; absent without listen.grpc.tls. */
  readonly grpcTls?: GrpcTlsMaterial
}
