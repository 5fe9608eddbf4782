// One request on an OpenAI route, from the body sent to the answer's metrics: what the exchange
// calls at its few hooks, so the hot path of other routes pays one null check.
import type { AnswerAnomaly, Metrics, StreamOutcome } from '../metrics/index.js'
import type { CounterChild, HistogramChild } from '../metrics/fast.js'
import type { ModelPrice } from '../config/types.js'
import type { BodyView } from '../plan/index.js'
import { prepareRequest } from './request.js'
import { AnswerReader } from './sse.js'
import { EncodedCopy, encodingOf } from './encoded.js'

/** An arm's LLM instruments, bound once when the plan is bound. */
export interface LlmInstruments {
  readonly ttft: HistogramChild
  readonly tpot: HistogramChild
  readonly inputUsage: HistogramChild
  readonly outputUsage: HistogramChild
  readonly inputTokens: CounterChild
  readonly outputTokens: CounterChild
  readonly cost: CounterChild
  readonly price: ModelPrice | null
  readonly streams: Readonly<Record<StreamOutcome, CounterChild>>
  readonly anomalies: Readonly<Record<AnswerAnomaly, CounterChild>>
}

const OUTCOMES: readonly StreamOutcome[] = ['done', 'no_done', 'stalled', 'upstream_error', 'client_gone']
const ANOMALIES: readonly AnswerAnomaly[] = ['malformed_event', 'oversized_event', 'error_event', 'no_usage', 'undecodable']

/** Binds one arm's children (route and model labels). */
export function bindLlm(metrics: Metrics, route: string, model: string, price: ModelPrice | null): LlmInstruments {
  const labels = { route, model }
  return {
    ttft: metrics.llmTimeToFirstToken.labels(labels),
    tpot: metrics.llmTimePerOutputToken.labels(labels),
    inputUsage: metrics.llmTokenUsage.labels({ ...labels, token_type: 'input' }),
    outputUsage: metrics.llmTokenUsage.labels({ ...labels, token_type: 'output' }),
    inputTokens: metrics.llmTokens.labels({ ...labels, token_type: 'input' }),
    outputTokens: metrics.llmTokens.labels({ ...labels, token_type: 'output' }),
    cost: metrics.llmCost.labels(labels),
    price,
    streams: Object.fromEntries(OUTCOMES.map((o) => [o, metrics.llmStreams.labels({ ...labels, outcome: o })])) as Record<StreamOutcome, CounterChild>,
    anomalies: Object.fromEntries(ANOMALIES.map((k) => [k, metrics.llmAnomalies.labels({ ...labels, kind: k })])) as Record<AnswerAnomaly, CounterChild>,
  }
}

const SSE = 'text/event-stream'

/** What one answer measured, for records and spans; -1 where unknown. */
export interface AnswerFacts {
  readonly ttftMs: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly cost: number
}

export class LlmExchange {
  #reader: AnswerReader | null = null
  /** A compressed answer: passed as is, read from this copy at its end; null for plain answers. */
  #copy: EncodedCopy | null = null
  #finished = false

  private constructor(
    readonly instruments: LlmInstruments,
    /** The body the model gets. */
    readonly body: Buffer,
    readonly clientModel: Buffer | null,
    readonly stream: boolean,
    readonly injected: boolean,
    readonly maxEventBytes: number,
  ) {}

  /** Starts the exchange of a parsed JSON body; null when the body is not a JSON object (forwarded as is). */
  static start(view: BodyView, instruments: LlmInstruments, upstreamModel: string | null, path: string, maxEventBytes: number): LlmExchange | null {
    const r = prepareRequest(view, upstreamModel, path)
    return r === null ? null : new LlmExchange(instruments, r.body, r.clientModel, r.stream, r.injected, maxEventBytes)
  }

  /**
   * The answer's head: a 2xx answer is read (SSE by its content type, else one JSON body); its
   * Content-Length goes, since a rewritten answer has another length (node then chunks it).
   */
  head(status: number, head: string[]): string[] {
    if (status < 200 || status > 299) return head
    let mode: 'sse' | 'json' = 'json'
    let length = -1
    let encoded = -1
    for (let i = 0; i < head.length; i += 2) {
      const name = (head[i] as string).toLowerCase()
      if (name === 'content-type' && (head[i + 1] as string).toLowerCase().startsWith(SSE)) mode = 'sse'
      else if (name === 'content-length') length = i
      else if (name === 'content-encoding') encoded = i
    }
    const encoding = encoded < 0 ? null : encodingOf(head[encoded + 1] as string)
    if (encoding !== null) {
      // Compressed: the bytes go to the client as the server sent them (its Content-Length with
      // them); usage is read from a decoded copy at the end, so the model name stays the server's.
      this.#copy = new EncodedCopy(encoding, this.maxEventBytes)
      this.#reader = new AnswerReader({ mode, model: null, stripUsage: false, maxEventBytes: this.maxEventBytes })
      return head
    }
    const rewrites = this.clientModel !== null || this.injected
    this.#reader = new AnswerReader({ mode, model: this.clientModel, stripUsage: this.injected, maxEventBytes: this.maxEventBytes })
    if (length < 0 || !rewrites) return head
    head.splice(length, 2) // the exchange's own fresh array
    return head
  }

  /** The bytes the client gets for this chunk of the answer (null: none yet). */
  data(chunk: Buffer): Buffer | null {
    if (this.#copy !== null) {
      this.#copy.push(chunk)
      return chunk
    }
    return this.#reader === null ? chunk : this.#reader.push(chunk)
  }

  /** Whatever was held, at the answer's end. */
  end(): Buffer | null {
    if (this.#copy !== null) {
      this.#readCopy()
      return null
    }
    return this.#reader === null ? null : this.#reader.end()
  }

  /** A compressed answer's usage, from its decoded copy; its first-token time is unknown (read at the end). */
  #readCopy(): void {
    const copy = this.#copy
    const r = this.#reader
    if (copy === null || r === null) return
    this.#copy = null
    const body = copy.decoded()
    if (body === null) {
      this.instruments.anomalies.undecodable.inc()
      return
    }
    r.push(body)
    r.end()
    r.firstTokenAt = -1
  }

  /**
   * Counts the answer once: its outcome (streams), first-token time, time per output token,
   * tokens and cost. `start` is when the request went to the model (performance.now()).
   */
  finish(outcome: StreamOutcome | 'complete', start: number): AnswerFacts | null {
    const r = this.#reader
    if (this.#finished || r === null) return null
    this.#finished = true
    // An answer cut short (stall, client gone) is not decoded: its copy is incomplete.
    this.#copy = null
    const m = this.instruments
    const isSse = r.opts.mode === 'sse'
    if (isSse) m.streams[outcome === 'complete' ? (r.sawDone ? 'done' : 'no_done') : outcome].inc()
    if (r.malformed > 0) m.anomalies.malformed_event.inc(r.malformed)
    if (r.oversized > 0) m.anomalies.oversized_event.inc(r.oversized)
    if (r.errorEvents > 0) m.anomalies.error_event.inc(r.errorEvents)
    const ttftMs = r.firstTokenAt < 0 ? -1 : r.firstTokenAt - start
    if (ttftMs >= 0) m.ttft.observe(ttftMs / 1000)
    if (outcome === 'complete' && r.inputTokens < 0 && r.outputTokens < 0) m.anomalies.no_usage.inc()
    let cost = -1
    if (r.inputTokens >= 0) {
      m.inputUsage.observe(r.inputTokens)
      m.inputTokens.inc(r.inputTokens)
    }
    if (r.outputTokens >= 0) {
      m.outputUsage.observe(r.outputTokens)
      m.outputTokens.inc(r.outputTokens)
      // Over the whole stream after the first token, so a server that sends tokens in bursts
      // (or a buffering hop) cannot make single gaps look fast or slow.
      if (isSse && outcome === 'complete' && r.firstTokenAt >= 0 && r.outputTokens > 1) {
        m.tpot.observe((performance.now() - r.firstTokenAt) / 1000 / (r.outputTokens - 1))
      }
    }
    const price = m.price
    if (price !== null && (r.inputTokens >= 0 || r.outputTokens >= 0)) {
      cost = (Math.max(r.inputTokens, 0) * price.input_per_million_tokens + Math.max(r.outputTokens, 0) * price.output_per_million_tokens) / 1e6
      m.cost.inc(cost)
    }
    return { ttftMs, inputTokens: r.inputTokens, outputTokens: r.outputTokens, cost }
  }
}
