import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { FastCounter, FastHistogram } from './fast.js'

/** Model latency spans 1 ms (a cached lookup) to 10 s (a large batch on a cold GPU). */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * The router's own time per response: tens of microseconds on a quiet machine, milliseconds when
 * its CPU is saturated or a large body is buffered.
 */
export const OVERHEAD_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1]

/** Absolute differences between primary and shadow predictions: from float noise to whole units. */
export const ABS_DIFF_BUCKETS = [1e-6, 1e-5, 1e-4, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 10, 100]

/** OpenTelemetry GenAI semantic conventions' advised buckets (gen_ai.server.time_to_first_token). */
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
/** The same conventions' buckets for gen_ai.server.time_per_output_token. */
export const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5]
/** The same conventions' buckets for gen_ai.client.token.usage (powers of 4). */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

/** How a streamed answer of an OpenAI route ended (the `outcome` label of modelsplit_llm_streams_total). */
export type StreamOutcome = 'done' | 'no_done' | 'stalled' | 'upstream_error' | 'client_gone'
/** What was odd in an OpenAI route's answer (the `kind` label of modelsplit_llm_anomalies_total). */
export type AnswerAnomaly = 'malformed_event' | 'oversized_event' | 'error_event' | 'no_usage' | 'undecodable'

export type ShadowDropReason = 'max_in_flight' | 'body_too_large' | 'shutting_down' | 'unavailable' | 'capture_budget'
export type { AssignmentSource, MissingReason } from '../plan/index.js'
export { WorkerMetrics, type MetricsSnapshot } from './cluster.js'

/**
 * The router's Prometheus instruments, created once per server on its own registry (so two
 * routers in one process, as in tests, do not collide). Names are public interface. What the
 * request path counts uses the fast instruments (./fast.ts); the rest stays with prom-client.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests = new FastCounter({
    name: 'modelsplit_requests_total', help: 'Prediction requests answered, by route, model and HTTP status code.',
    labelNames: ['route', 'model', 'code'] as const, registers: [this.registry],
  })
  readonly duration = new FastHistogram({
    name: 'modelsplit_request_duration_seconds', help: 'Time from request start to response end, by route and model.',
    labelNames: ['route', 'model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry],
  })
  readonly overhead = new FastHistogram({
    name: 'modelsplit_overhead_seconds', help: 'The router\'s own time per answer relayed from a model (routes with overhead: metric or header): time to the answer head minus the wait on the model, plus the end of the answer. Router clock.',
    labelNames: ['route', 'model'] as const, buckets: OVERHEAD_BUCKETS, registers: [this.registry],
  })
  readonly grpcCalls = new FastCounter({
    name: 'modelsplit_grpc_calls_total', help: 'gRPC calls answered on gRPC routes, by route, model and grpc-status name (OK, UNAVAILABLE, ...); they also count in modelsplit_requests_total under the HTTP code of that status.',
    labelNames: ['route', 'model', 'grpc_status'] as const, registers: [this.registry],
  })
  readonly grpcAnomalies = new FastCounter({
    name: 'modelsplit_grpc_anomalies_total', help: 'gRPC calls and connections out of the ordinary, by kind (unimplemented, not_grpc, http1_client, bad_frame, too_large, compressed: messages passed on compressed, unsupported_encoding, upstream_reset, upstream_no_trailers, upstream_bad_status, session_error, shutting_down).',
    labelNames: ['kind'] as const, registers: [this.registry],
  })
  readonly clientAborts = new FastCounter({
    name: 'modelsplit_client_aborts_total', help: 'Requests whose client went away before the answer was sent; never counted against the model.',
    labelNames: ['route'] as const, registers: [this.registry],
  })
  readonly requestErrors = new Counter({
    name: 'modelsplit_request_errors_total', help: 'Requests the router answered itself with an error before any model saw them, by route ("" when none matched) and code.',
    labelNames: ['route', 'code'] as const, registers: [this.registry],
  })
  readonly captureBudgetExceeded = new FastCounter({
    name: 'modelsplit_capture_budget_exceeded_total', help: 'Answers streamed to the client uncaptured because limits.max_capture_total_bytes was in use; their comparison is recorded as an error.',
    labelNames: ['route'] as const, registers: [this.registry],
  })
  readonly overloaded = new FastCounter({
    name: 'modelsplit_overloaded_total', help: 'Requests answered 503 MS_OVERLOADED because every pooled connection to the model stayed busy for its timeout_ms: the router\'s saturation (raise connections), never counted as the model\'s error.',
    labelNames: ['route', 'model'] as const, registers: [this.registry],
  })
  readonly upstreamErrors = new FastCounter({
    name: 'modelsplit_upstream_errors_total', help: 'Failed calls to a model server, by reason (refused, reset, timeout, dns, other).',
    labelNames: ['route', 'model', 'reason'] as const, registers: [this.registry],
  })
  readonly assignments = new FastCounter({
    name: 'modelsplit_assignments_total', help: 'Requests assigned to a model, by how: hash of the user id, override header, or the missing_user_id policy.',
    labelNames: ['route', 'model', 'source'] as const, registers: [this.registry],
  })
  readonly userIdMissing = new FastCounter({
    name: 'modelsplit_user_id_missing_total', help: 'Requests whose user id could not be used, by reason.',
    labelNames: ['route', 'reason'] as const, registers: [this.registry],
  })
  readonly splitWeight = new Gauge({
    name: 'modelsplit_split_weight', help: 'Current share of users each model receives on a route, 0..1.',
    // serve --workers: every worker has the same plan, so the cluster reports one worker's value.
    labelNames: ['route', 'model'] as const, registers: [this.registry], aggregator: 'first',
  })
  readonly configReloads = new Counter({
    name: 'modelsplit_config_reloads_total', help: 'Config reloads, by result (success, failure).',
    // Every worker applies each reload: a cluster counts it once.
    labelNames: ['result'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly configInfo = new Gauge({
    name: 'modelsplit_config_info', help: 'The config in force, by the sha256 of its file; value is always 1.',
    labelNames: ['sha256'] as const, registers: [this.registry], aggregator: 'max',
  })

  readonly rolloutStep = new Gauge({
    name: 'modelsplit_rollout_step', help: 'The rollout candidate\'s percent of users in force on a route.',
    labelNames: ['route'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly rolloutState = new Gauge({
    name: 'modelsplit_rollout_state', help: 'A route\'s rollout state: 1 for the current of running, paused, rolled_back, promoted, holding.',
    labelNames: ['route', 'state'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly decisions = new Counter({
    name: 'modelsplit_decisions_total', help: 'Decisions taken, by route, kind (rollout, bandit, promotion, operator) and result.',
    labelNames: ['route', 'kind', 'result'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly rolloutStepStarted = new Gauge({
    name: 'modelsplit_rollout_step_started_seconds', help: 'When the rollout\'s current step began (Unix seconds): a new replica resumes the fleet\'s step from it.',
    labelNames: ['route'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly rolloutInfo = new Gauge({
    name: 'modelsplit_rollout_info', help: 'The rollout in force on a route: its definition hash, candidate and control; value is always 1.',
    labelNames: ['route', 'definition', 'candidate', 'control'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly rolloutOperatorAction = new Gauge({
    name: 'modelsplit_rollout_operator_action_seconds', help: 'When an operator last paused, resumed, aborted or promoted the route\'s rollout on this replica (Unix seconds); the other replicas follow it.',
    labelNames: ['route', 'action'] as const, registers: [this.registry], aggregator: 'max',
  })
  readonly banditProbabilityBest = new Gauge({
    name: 'modelsplit_bandit_probability_best', help: 'A bandit arm\'s posterior probability of being the best, at the last decision.',
    labelNames: ['route', 'model'] as const, registers: [this.registry], aggregator: 'max',
  })

  readonly shadowRequests = new FastCounter({
    name: 'modelsplit_shadow_requests_total', help: 'Mirrored requests to shadow models, by HTTP status (502/504 when the shadow failed or timed out).',
    labelNames: ['route', 'model', 'code'] as const, registers: [this.registry],
  })
  readonly shadowDuration = new FastHistogram({
    name: 'modelsplit_shadow_duration_seconds', help: 'Time for a shadow model to answer a mirrored request.',
    labelNames: ['route', 'model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry],
  })
  readonly shadowDropped = new FastCounter({
    name: 'modelsplit_shadow_dropped_total', help: 'Mirrored requests not sent, by reason (max_in_flight, body_too_large, shutting_down, unavailable: the shadow refuses connections, capture_budget: no room to hold its answer).',
    labelNames: ['route', 'model', 'reason'] as const, registers: [this.registry],
  })
  readonly shadowComparisons = new FastCounter({
    name: 'modelsplit_shadow_comparisons_total', help: 'Primary vs shadow prediction comparisons, by result (agree, disagree, error).',
    labelNames: ['route', 'primary', 'shadow', 'result'] as const, registers: [this.registry],
  })
  readonly shadowAbsDiff = new FastHistogram({
    name: 'modelsplit_shadow_abs_diff', help: 'Largest absolute difference between the primary and shadow predictions of one request.',
    labelNames: ['route', 'primary', 'shadow'] as const, buckets: ABS_DIFF_BUCKETS, registers: [this.registry],
  })
  // OpenAI routes (api: openai): OpenTelemetry GenAI metric names in Prometheus form.
  readonly llmTimeToFirstToken = new FastHistogram({
    name: 'gen_ai_server_time_to_first_token_seconds', help: 'OpenAI routes, streamed answers: time from sending the request to the model to the first event carrying generated text (gen_ai.server.time_to_first_token).',
    labelNames: ['route', 'model'] as const, buckets: TTFT_BUCKETS, registers: [this.registry],
  })
  readonly llmTimePerOutputToken = new FastHistogram({
    name: 'gen_ai_server_time_per_output_token_seconds', help: 'OpenAI routes, streamed answers: (end of the stream - first token) / (output tokens - 1), over the whole stream (gen_ai.server.time_per_output_token).',
    labelNames: ['route', 'model'] as const, buckets: TPOT_BUCKETS, registers: [this.registry],
  })
  readonly llmTokenUsage = new FastHistogram({
    name: 'gen_ai_client_token_usage', help: 'OpenAI routes: tokens per answer as the model reported them in its usage, by token_type (input, output) (gen_ai.client.token.usage).',
    labelNames: ['route', 'model', 'token_type'] as const, buckets: TOKEN_BUCKETS, registers: [this.registry],
  })
  readonly llmTokens = new FastCounter({
    name: 'modelsplit_llm_tokens_total', help: 'OpenAI routes: tokens the model reported in its usage, by token_type (input, output); with modelsplit_requests_total, each arm\'s token share beside its request share.',
    labelNames: ['route', 'model', 'token_type'] as const, registers: [this.registry],
  })
  readonly llmCost = new FastCounter({
    name: 'modelsplit_llm_cost_total', help: 'OpenAI routes: cost of the tokens reported, from models.NAME.price (its currency).',
    labelNames: ['route', 'model'] as const, registers: [this.registry],
  })
  readonly llmStreams = new FastCounter({
    name: 'modelsplit_llm_streams_total', help: 'OpenAI routes: streamed (SSE) answers by how they ended: done ([DONE] seen), no_done (closed without it), stalled (no byte for timeout_ms), upstream_error, client_gone.',
    labelNames: ['route', 'model', 'outcome'] as const, registers: [this.registry],
  })
  readonly llmAnomalies = new FastCounter({
    name: 'modelsplit_llm_anomalies_total', help: 'OpenAI routes: answers passed on unaltered that could not be fully read, by kind: malformed_event (data not JSON), oversized_event (over limits.max_sse_event_bytes), error_event (an error object mid-stream), no_usage (no token counts), undecodable (a compressed answer whose copy was over limits.max_sse_event_bytes, compressed or decoded, or did not decode).',
    labelNames: ['route', 'model', 'kind'] as const, registers: [this.registry],
  })

  readonly llmComparisons = new FastCounter({
    name: 'modelsplit_llm_comparisons_total', help: 'OpenAI routes: primary vs shadow answers compared once both finished, by the cascade layer that decided (exact, normalised, structured) and result (agree, disagree), or layer undecided.',
    labelNames: ['route', 'primary', 'shadow', 'layer', 'result'] as const, registers: [this.registry],
  })
  readonly llmShadowTokens = new FastCounter({
    name: 'modelsplit_llm_shadow_tokens_total', help: 'OpenAI routes: tokens shadows reported, by token_type; apart from the primaries\' (modelsplit_llm_tokens_total), never billed to users.',
    labelNames: ['route', 'model', 'token_type'] as const, registers: [this.registry],
  })
  readonly llmShadowCost = new FastCounter({
    name: 'modelsplit_llm_shadow_cost_total', help: 'OpenAI routes: cost of the tokens shadows reported, from models.NAME.price.',
    labelNames: ['route', 'model'] as const, registers: [this.registry],
  })

  readonly llmJudgeVerdicts = new FastCounter({
    name: 'modelsplit_llm_judge_verdicts_total', help: 'OpenAI routes: the judge\'s verdicts on undecided pairs, from the shadow\'s side (win: the shadow\'s answer is better; tie; loss), or error (the judge failed or answered something other than A, B or TIE).',
    labelNames: ['route', 'primary', 'shadow', 'verdict'] as const, registers: [this.registry],
  })
  readonly llmJudgeSkipped = new FastCounter({
    name: 'modelsplit_llm_judge_skipped_total', help: 'OpenAI routes: undecided pairs not judged, by reason (not_sampled: the user is outside judge.percent; budget: judge.max_cost_per_hour spent this hour; max_in_flight).',
    labelNames: ['route', 'reason'] as const, registers: [this.registry],
  })
  readonly llmJudgeCost = new FastCounter({
    name: 'modelsplit_llm_judge_cost_total', help: 'OpenAI routes: cost of the judge\'s calls, from the judge model\'s price.',
    labelNames: ['route'] as const, registers: [this.registry],
  })
  /** Set by the judge: win rates per route, primary and shadow, read at each scrape. */
  judgeSource: (() => readonly { route: string; primary: string; shadow: string; rate: { share: number; low: number; high: number; signP: number }; sequentialP: number }[]) | undefined
  readonly llmJudgeWinShare = new Gauge({
    name: 'modelsplit_llm_judge_win_share', help: 'OpenAI routes: the shadow\'s share of wins among judged pairs that were not ties, with its 95% Wilson interval (bound: estimate, low, high); this process\'s verdicts.',
    // serve --workers: each worker judges its own pairs; shares and p's do not add, so the cluster leaves them out.
    labelNames: ['route', 'primary', 'shadow', 'bound'] as const, registers: [this.registry], aggregator: 'omit',
    collect: () => this.#collectJudge(),
  })
  readonly llmJudgePValue = new Gauge({
    name: 'modelsplit_llm_judge_p_value', help: 'OpenAI routes: p-value of "the shadow wins half of the decided pairs": test sign (exact sign test at this count) or sequential (always valid: the running minimum of a Beta-mixture likelihood ratio, safe to watch continuously).',
    labelNames: ['route', 'primary', 'shadow', 'test'] as const, registers: [this.registry], aggregator: 'omit',
  })

  #collectJudge(): void {
    const rows = this.judgeSource?.()
    if (rows === undefined) return
    this.llmJudgeWinShare.reset()
    this.llmJudgePValue.reset()
    for (const r of rows) {
      const l = { route: r.route, primary: r.primary, shadow: r.shadow }
      if (Number.isFinite(r.rate.share)) {
        this.llmJudgeWinShare.set({ ...l, bound: 'estimate' }, r.rate.share)
        this.llmJudgeWinShare.set({ ...l, bound: 'low' }, r.rate.low)
        this.llmJudgeWinShare.set({ ...l, bound: 'high' }, r.rate.high)
      }
      this.llmJudgePValue.set({ ...l, test: 'sign' }, r.rate.signP)
      this.llmJudgePValue.set({ ...l, test: 'sequential' }, r.sequentialP)
    }
  }

  readonly records = new Counter({
    name: 'modelsplit_records_total', help: 'Prediction records, by result (written to the file, or dropped because the disk could not keep up).',
    labelNames: ['result'] as const, registers: [this.registry],
  })

  readonly outcomes = new Counter({
    name: 'modelsplit_outcomes_total', help: 'Outcomes fed back through /feedback, by route, model and metric.',
    labelNames: ['route', 'model', 'metric'] as const, registers: [this.registry],
  })
  readonly outcomeSum = new Counter({
    name: 'modelsplit_outcome_value_sum', help: 'Sum of outcome values: with modelsplit_outcomes_total, the mean (or conversion rate) per arm.',
    labelNames: ['route', 'model', 'metric'] as const, registers: [this.registry],
  })
  readonly outcomeSquares = new Counter({
    name: 'modelsplit_outcome_value_squares_sum', help: 'Sum of squared outcome values: with the count and sum, the variance per arm (Welch\'s test in PromQL).',
    labelNames: ['route', 'model', 'metric'] as const, registers: [this.registry],
  })
  // Per bucket of users (analysis.unit: user): totals that add up across replicas, from which the
  // delta method gives a user-level variance (see the README's "Unit of analysis").
  readonly outcomeBucketSum = new Counter({
    name: 'modelsplit_outcome_bucket_value_sum', help: 'Sum of outcome values per bucket of users (a hash of the user id, independent of the split): the user-level analysis reads these.',
    labelNames: ['route', 'model', 'metric', 'bucket'] as const, registers: [this.registry],
  })
  readonly outcomeBucketCount = new Counter({
    name: 'modelsplit_outcome_bucket_count', help: 'Outcomes per bucket of users (a hash of the user id, independent of the split).',
    labelNames: ['route', 'model', 'metric', 'bucket'] as const, registers: [this.registry],
  })
  /** Set by the tally: sampled users per arm and how many were expected, read at each scrape. */
  usersSource: (() => readonly { route: string; model: string; users: number; expected: number }[]) | undefined
  readonly experimentUsers = new Gauge({
    name: 'modelsplit_experiment_users', help: 'Users first exposed to each arm on this replica, in the hashed sample the sample-ratio check reads (analysis.unit: user).',
    labelNames: ['route', 'model'] as const, registers: [this.registry],
    collect: () => this.#collectUsers(),
  })
  readonly experimentUsersExpected = new Gauge({
    name: 'modelsplit_experiment_users_expected', help: 'Users each arm was expected to get on this replica under the weights in force when they first came (same sample).',
    labelNames: ['route', 'model'] as const, registers: [this.registry],
  })
  readonly recordFileReopened = new Counter({
    name: 'modelsplit_record_file_reopened_total', help: 'Times the record file was closed and opened again by name, by reason (missing: deleted or renamed away, replaced: another file at the path, deleted: unlinked during a write, requested: SIGHUP).',
    labelNames: ['reason'] as const, registers: [this.registry],
  })
  readonly recordsSpooledBytes = new Gauge({
    name: 'modelsplit_records_spooled_bytes', help: 'Bytes of records waiting in the spool on disk for the Kafka or HTTP sink to take them (0 with the file sink).',
    registers: [this.registry],
  })
  readonly recordsQuarantined = new Counter({
    name: 'modelsplit_records_quarantined_total', help: 'Records the Kafka or HTTP sink refused for good (a 4xx other than 408/429/413 for a batch, a record too large alone, a damaged spool line), each one written to quarantine.jsonl in its spool directory and not sent again.',
    labelNames: ['sink'] as const, registers: [this.registry],
  })
  /** What modelsplit_records_buffered reports at each scrape: the sink in force sets it. */
  bufferedRecords: () => number = () => 0
  readonly recordsBuffered = new Gauge({
    name: 'modelsplit_records_buffered', help: 'Records accepted and held in memory, not yet in the record file, the sink or its spool (e.g. while the spool directory cannot be opened).',
    registers: [this.registry],
    collect: () => { this.recordsBuffered.set(this.bufferedRecords()) },
  })
  readonly sinkErrors = new Counter({
    name: 'modelsplit_sink_errors_total', help: 'Failed sends to the Kafka or HTTP sink, and failed spool writes, by sink and reason (unreachable, timeout, rejected, too_large, spool, other); the records wait in the spool.',
    labelNames: ['sink', 'reason'] as const, registers: [this.registry],
  })
  readonly sinkLatency = new FastHistogram({
    name: 'modelsplit_sink_latency_seconds', help: 'Time for the Kafka or HTTP sink to acknowledge one batch of records.',
    labelNames: ['sink'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry],
  })

  readonly mlflowRequests = new Counter({
    name: 'modelsplit_mlflow_requests_total', help: 'Calls to the MLflow tracking server and registry, by result (success; error: MLflow answered an error; timeout; unreachable). Never on the request path.',
    labelNames: ['result'] as const, registers: [this.registry],
  })
  readonly modelVersion = new Gauge({
    name: 'modelsplit_model_version_info', help: 'The MLflow registered version behind each model (models.NAME.mlflow), as resolved now; value is always 1.',
    labelNames: ['model', 'registered_model', 'version'] as const, registers: [this.registry], aggregator: 'max',
  })

  #collectUsers(): void {
    const rows = this.usersSource?.()
    if (rows === undefined) return
    this.experimentUsers.reset()
    this.experimentUsersExpected.reset()
    for (const r of rows) {
      this.experimentUsers.set({ route: r.route, model: r.model }, r.users)
      this.experimentUsersExpected.set({ route: r.route, model: r.model }, r.expected)
    }
  }

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    this.records.inc({ result: 'written' }, 0)
    this.records.inc({ result: 'dropped' }, 0)
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
    this.configReloads.inc({ result: 'success' }, 0)
    this.configReloads.inc({ result: 'failure' }, 0)
  }

  /** Publishes the shares and sha of a config that just came into force. */
  setConfig(sha256: string, routes: readonly { name: string; models: readonly string[]; shares: ArrayLike<number> }[]): void {
    this.configInfo.reset()
    this.configInfo.set({ sha256 }, 1)
    // A model taken out of a split must drop from the rollout overlay, not stay at its old share.
    this.splitWeight.reset()
    for (const r of routes) r.models.forEach((model, i) => this.splitWeight.set({ route: r.name, model }, r.shares[i] ?? 0))
  }
}
