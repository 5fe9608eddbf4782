// The Observer: keeps count of open observations (shutdown waits for them), and turns each finished
// one into comparison metrics and one prediction record. Pairing a request's outcomes is pairing.ts;
// reading an answer's prediction, prediction.ts; the record's fields taken from the route, record-fields.ts.
import { compareTensors, comparePredictions, parseModelJson, type Tensor } from '../compare/index.js'
import type { AssignmentSource, Metrics } from '../metrics/index.js'
import type { RouteRuntime, ShadowTarget } from '../proxy/runtime.js'
import type { RecordSink as FullSink } from '../record/sink.js'
import { isJsonLine } from '../record/raw-json.js'
import type { NoPrediction } from '../record/raw-prediction.js'
import { SCHEMA_VERSION, isoTime, kRawInput, kRawPrediction, kShaped, type JudgementRecord, type PredictionRecord, type RawPrediction, type ShadowDrop, type ShadowResult } from '../record/schema.js'
import type { CaptureBudget } from '../upstream/capture.js'
import type { ShadowOutcome } from './dispatch.js'
import { compareAnswers, readAnswer, usageOf, type RecordUsage } from '../llm/observe.js'
import { Judge, type JudgeOutcome } from '../llm/judge.js'
import { Observation, type PrimaryOutcome } from './pairing.js'
import { RAW_OK, answerOf, isNoPrediction, predictionOf, rawPredictionOf, recordTensors, requestTensorsOf } from './prediction.js'
import { priceOf, primaryUsage, round, sharesOf, versionOf } from './record-fields.js'

export { Observation }

/** What the observer needs of a record sink: prediction records never wait, so only write(). */
export type RecordSink = Pick<FullSink, 'write' | 'flush'>

/** Answers whose buffers cost this much together stay counted in the budget until their record is written. */
const HOLD_MIN_BYTES = 64 * 1024

/**
 * Tracks every open observation so a graceful shutdown can wait for them, and turns each
 * finished one into comparison metrics and a record.
 */
export class Observer {
  readonly #metrics: Metrics
  readonly #sink: () => RecordSink | undefined
  readonly #budget: CaptureBudget
  /** api: openai routes with a judge: asks it about undecided pairs, off the request path. */
  readonly judge: Judge
  /** The judge calls under way (tests await them; nothing on the request path does). */
  readonly judging = new Set<Promise<void>>()
  #open = 0
  #idle: (() => void)[] = []

  constructor(opts: { metrics: Metrics; sink: () => RecordSink | undefined; budget: CaptureBudget }) {
    this.#metrics = opts.metrics
    this.#budget = opts.budget
    this.#sink = opts.sink
    this.judge = new Judge(opts.metrics)
    opts.metrics.judgeSource = () => this.judge.winRates()
  }

  /** Observations whose primary or shadows are still running. */
  get open(): number {
    return this.#open
  }

  begin(route: RouteRuntime, requestId: string, userId: string | undefined, source: AssignmentSource, input: Buffer | undefined, inputTruncated: boolean): Observation {
    this.#open++
    return new Observation(this, route, requestId, userId, source, input, inputTruncated)
  }

  /** Resolves when no observation is open. */
  idle(): Promise<void> {
    if (this.#open === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** @internal Called by an Observation once the primary and all its shadows are in. */
  finish(obs: Observation, primary: PrimaryOutcome, shadows: readonly ShadowOutcome[], skipped: ShadowDrop[] | undefined): void {
    let queuedIn: RecordSink | undefined
    try {
      queuedIn = this.#complete(obs, primary, shadows, skipped)
    } finally {
      let cost = primary.capture?.cost ?? 0
      for (const s of shadows) cost += s.capture?.cost ?? 0
      if (queuedIn === undefined || cost < HOLD_MIN_BYTES) {
        // No record holds them, or they are small (the sink's own queue bounds small records, and
        // a wait per record would cost every request): give the bytes back to the budget now.
        primary.capture?.release(this.#budget)
        for (const s of shadows) s.capture?.release(this.#budget)
      } else {
        // The record (the answers, serialised) waits in the sink's queue: their bytes stay taken
        // until the sink has written or dropped it, so limits.max_capture_total_bytes bounds the
        // captures and the records made of them together, not only the captures.
        let held = primary.capture?.detach() ?? 0
        for (const s of shadows) held += s.capture?.detach() ?? 0
        if (held > 0) {
          const budget = this.#budget
          void queuedIn.flush().then(() => budget.give(held))
        }
      }
      if (--this.#open === 0) {
        const waiters = this.#idle
        this.#idle = []
        for (const w of waiters) w()
      }
    }
  }

  /** Compares and counts; returns the sink when it took a record of the request. */
  #complete(obs: Observation, primary: PrimaryOutcome, shadows: readonly ShadowOutcome[], skipped: ShadowDrop[] | undefined): RecordSink | undefined {
    const route = obs.route
    // Every mirror refused (a dead shadow's open breaker) and no record: nothing to compare or write.
    if (shadows.length === 0 && !route.plan.record) return undefined
    const llm = route.plan.isOpenAi
    // An answer on a route that only records it (nothing to compare it with) is not parsed when a
    // scan finds its prediction (or that it has none): it goes into the record as its own text
    // (issue 18, item 20: a capture costs its buffer; issue 22: a record costs no parse).
    const isGrpc = route.plan.config.grpc != null
    const scanned = !llm && !isGrpc && shadows.length === 0 ? rawPredictionOf(route, primary) : undefined
    const rawPrediction = scanned === undefined || isNoPrediction(scanned) ? undefined : scanned
    const p = scanned !== undefined ? (rawPrediction !== undefined ? RAW_OK : scanned as NoPrediction) : llm ? readAnswer(primary.status, primary.body, primary.error) : predictionOf(route, primary.status, primary.body, primary.error)
    // A route without records only counts the comparisons: no record objects are built for it.
    const records = route.plan.record
    const shadowRecords: (ShadowResult | ShadowDrop)[] = []
    for (const s of shadows) {
      const sp = llm ? readAnswer(s.status, s.body, s.error) : predictionOf(route, s.status, s.body, s.error)
      let comparison: ShadowResult['comparison']
      let usage: RecordUsage | undefined
      const sa = answerOf(sp)
      const pa = answerOf(p)
      if (sa !== undefined) usage = this.#countShadowUsage(s.target, usageOf(sa, s.target.price))
      if (!p.ok) comparison = { error: `primary: ${p.reason}` }
      else if (!sp.ok) comparison = { error: `shadow: ${sp.reason}` }
      else if (pa !== undefined && sa !== undefined) {
        comparison = compareAnswers(pa, sa)
        const judge = route.plan.judge
        if (judge !== null && comparison.layer === 'undecided') {
          const sink = route.plan.record ? this.#sink() : undefined
          const shadowModel = s.target.model
          const write = sink === undefined ? null : (o: JudgeOutcome): void => {
            const record: JudgementRecord = {
              type: 'judgement', schema: SCHEMA_VERSION, ts: new Date().toISOString(), request_id: obs.requestId, route: route.name,
              user_id: obs.userId ?? null, primary: primary.model, shadow: shadowModel, ...o,
            }
            sink.write(record)
          }
          const call = this.judge.consider(judge, route.name, obs.userId, obs.input, primary.model, shadowModel, pa, sa, write)
          this.judging.add(call)
          void call.finally(() => this.judging.delete(call))
        }
        this.#metrics.llmComparisons.inc({ route: route.name, primary: primary.model, shadow: s.target.model, layer: comparison.layer, result: comparison.layer === 'undecided' ? 'undecided' : comparison.agree ? 'agree' : 'disagree' })
      } else if (isGrpc) {
        const c = compareTensors(p.value as Tensor[], sp.value as Tensor[], { atol: route.plan.compare.tolerance, rtol: route.plan.config.compare.rtol ?? 0 })
        comparison = {
          agree: c.agree, abs_diff_max: c.abs_diff_max, abs_diff_mean: c.abs_diff_mean, fraction_agree: c.fraction_agree,
          outputs: c.outputs.map((o) => ({ name: o.name, problem: o.problem, instances: o.instances, agreeing: o.agreeing, argmax_agreeing: o.argmaxAgreeing, abs_diff_max: o.absDiffMax })),
        }
      } else {
        const c = comparePredictions(p.value, sp.value, route.plan.compare)
        comparison = 'error' in c ? c : { agree: c.agree, abs_diff_max: c.abs_diff_max, abs_diff_mean: c.abs_diff_mean, fraction_agree: c.fraction_agree }
      }
      this.#count(s.target, primary.model, comparison)
      obs.traceOf(s.target)?.compared(comparison)
      if (!records) continue
      shadowRecords.push({
        model: s.target.model, ...(s.target.registry === null ? {} : { model_version: s.target.registry.version }), status: s.status, latency_ms: round(s.latencyMs),
        prediction: sp.ok ? (isGrpc ? recordTensors(sp.value as Tensor[]) : sp.value) : null, error: s.error,
        ...(sp.ok || sp.transport ? {} : { prediction_error: sp.reason }),
        comparison,
        ...(usage === undefined ? {} : { usage }),
      })
    }
    if (!records) return undefined
    if (skipped !== undefined) shadowRecords.push(...skipped)
    const sink = this.#sink()
    if (sink === undefined) return undefined
    const record: PredictionRecord = {
      type: 'prediction',
      schema: SCHEMA_VERSION,
      ts: isoTime(obs.ts),
      request_id: obs.requestId,
      route: route.name,
      ...(isGrpc ? { transport: 'grpc' as const } : {}),
      user_id: obs.userId ?? null,
      assignment: obs.source,
      shares: sharesOf(route),
      // `error` is a failure to get an answer (the same for both sides); `prediction_error` says
      // why an answer that came had no prediction to read (a 4xx, not JSON, no such field).
      primary: {
        model: primary.model, ...versionOf(route, primary.model), status: primary.status, latency_ms: round(primary.latencyMs), prediction: p.ok ? (isGrpc ? recordTensors(p.value as Tensor[]) : p.value) : null, error: primary.error,
        ...(p.ok || p.transport ? {} : { prediction_error: p.reason }),
        ...(llm ? primaryUsage(obs.llmFacts, answerOf(p), priceOf(route, primary.model)) : {}),
      },
      shadows: shadowRecords,
    }
    // Its keys are the serialiser's, in this order (record/serialise.ts): written key by key, not by JSON.stringify.
    ;(record as { [kShaped]?: true })[kShaped] = true
    if (rawPrediction !== undefined) (record as { [kRawPrediction]?: RawPrediction })[kRawPrediction] = rawPrediction
    if (route.plan.includeInputs) {
      if (obs.inputTruncated) record.input_omitted = 'body_too_large'
      else if (isGrpc) {
        if (obs.inputOmitted !== undefined) record.input_omitted = obs.inputOmitted
        else if (obs.input !== undefined) {
          const t = requestTensorsOf((route.plan.config.grpc as { method: string }).method, obs.input)
          if (t.ok) record.input = recordTensors(t.value)
          else record.input_omitted = 'not_decodable'
        }
      } else if (obs.input !== undefined && obs.input.length > 0) {
        const text = obs.input.toString('utf8')
        // A JSON body goes in as its own text, serialised once (see kRawInput); anything else as
        // before: parsed leniently (NaN), or kept as a string.
        if (isJsonLine(text)) (record as { [kRawInput]?: string })[kRawInput] = text
        else {
          const parsed = parseModelJson(text)
          record.input = parsed.ok ? parsed.value : text
        }
      }
    }
    return sink.write(record) ? sink : undefined
  }

  /** A shadow's tokens and cost, counted apart from the primaries'. */
  #countShadowUsage(target: ShadowTarget, usage: RecordUsage): RecordUsage {
    const labels = { route: target.route, model: target.model }
    const m = this.#metrics
    if (usage.input_tokens !== null) m.llmShadowTokens.inc({ ...labels, token_type: 'input' }, usage.input_tokens)
    if (usage.output_tokens !== null) m.llmShadowTokens.inc({ ...labels, token_type: 'output' }, usage.output_tokens)
    if (usage.cost !== null) m.llmShadowCost.inc(labels, usage.cost)
    return usage
  }

  #count(target: ShadowTarget, primaryModel: string, comparison: ShadowResult['comparison']): void {
    let c = target.comparisons.get(primaryModel)
    if (c === undefined) {
      const labels = { route: target.route, primary: primaryModel, shadow: target.model }
      const m = this.#metrics
      c = {
        agree: m.shadowComparisons.labels({ ...labels, result: 'agree' }),
        disagree: m.shadowComparisons.labels({ ...labels, result: 'disagree' }),
        error: m.shadowComparisons.labels({ ...labels, result: 'error' }),
        absDiff: m.shadowAbsDiff.labels(labels),
      }
      target.comparisons.set(primaryModel, c)
    }
    if ('error' in comparison) {
      c.error.inc()
      return
    }
    ;(comparison.agree ? c.agree : c.disagree).inc()
    if (comparison.abs_diff_max !== null) c.absDiff.observe(comparison.abs_diff_max)
  }
}
