// One request's observation: pairs the primary's outcome with every selected shadow's (sent,
// skipped or traced) and, when the last is in, hands them to the Observer (observation.ts), which
// compares, counts and writes the record.
import type { AssignmentSource, ShadowDropReason } from '../metrics/index.js'
import type { RouteRuntime, ShadowTarget } from '../proxy/runtime.js'
import type { ShadowDrop } from '../record/schema.js'
import type { Capture } from '../upstream/capture.js'
import type { ShadowOutcome, ShadowSink } from './dispatch.js'
import type { ShadowTrace } from '../tracing/types.js'
import type { AnswerFacts } from '../llm/answer.js'
import type { Observer } from './observation.js'

/** @internal What the primary did: the Observer compares the shadows with it and records it. */
export interface PrimaryOutcome {
  readonly model: string
  readonly status: number
  readonly latencyMs: number
  readonly body: Buffer | undefined
  readonly error: string | null
  readonly capture: Capture | null
}

/**
 * Pairs what happens to one request: the primary's answer and every selected shadow's. When the
 * last of them is in (answered, failed or timed out) it compares, counts and writes one record.
 */
export class Observation implements ShadowSink {
  readonly #observer: Observer
  readonly route: RouteRuntime
  readonly ts: number
  readonly requestId: string
  readonly userId: string | undefined
  readonly source: AssignmentSource
  /** The request's body for its record (a gRPC call's one message is given later, by setInput). */
  input: Buffer | undefined
  inputTruncated: boolean
  inputOmitted: 'streaming' | 'not_decodable' | undefined
  #remaining = 1
  #primary: PrimaryOutcome | undefined
  readonly #shadows: ShadowOutcome[] = []
  /** Selected shadows that were not sent, and why: the record names them so none goes missing. */
  #skipped: ShadowDrop[] | undefined
  /** api: openai routes: what the live reader measured of the primary's answer (its usage chunk may not reach the capture). */
  llmFacts: AnswerFacts | null = null
  /** Shadow spans when the request is traced: ended with the comparison. */
  #traces: { target: ShadowTarget; span: ShadowTrace }[] | undefined

  constructor(observer: Observer, route: RouteRuntime, requestId: string, userId: string | undefined, source: AssignmentSource, input: Buffer | undefined, inputTruncated: boolean) {
    this.#observer = observer
    this.route = route
    this.ts = Date.now()
    this.requestId = requestId
    this.userId = userId
    this.source = source
    this.input = input
    this.inputTruncated = inputTruncated
  }

  /** A gRPC call's request message (unframed, uncompressed), known only once it has all come. */
  setInput(input: Buffer | undefined, truncated: boolean): void {
    this.input = input
    this.inputTruncated = truncated
  }

  /** A gRPC call whose request is not recorded, and why. */
  setInputOmitted(why: 'streaming' | 'not_decodable'): void {
    this.inputOmitted = why
  }

  /** A shadow was sent; its outcome must arrive (through shadowDone) before the record is written. */
  expectShadow(): void {
    this.#remaining++
  }

  /**
   * Holds the record open while the request is being dispatched: a primary that fails at once
   * (inside dispatch) must not close the observation before its shadows are sent. Pair with release().
   */
  hold(): void {
    this.#remaining++
  }

  release(): void {
    this.#settle()
  }

  /** A selected shadow was not sent (counted by the dispatcher); the record says why. */
  shadowSkipped(target: ShadowTarget, reason: ShadowDropReason): void {
    (this.#skipped ??= []).push(target.registry === null ? { model: target.model, dropped: reason } : { model: target.model, model_version: target.registry.version, dropped: reason })
  }

  /** The span of a shadow about to be sent (tracing on). */
  traceShadow(target: ShadowTarget, span: ShadowTrace): void {
    (this.#traces ??= []).push({ target, span })
  }

  /** @internal The span of this shadow's call, if traced. */
  traceOf(target: ShadowTarget): ShadowTrace | undefined {
    const traces = this.#traces
    if (traces === undefined) return undefined
    for (const t of traces) if (t.target === target) return t.span
    return undefined
  }

  primaryDone(model: string, status: number, latencyMs: number, body: Buffer | undefined, error: string | null, capture: Capture | null): void {
    if (this.#primary !== undefined) return
    this.#primary = { model, status, latencyMs, body, error, capture }
    this.#settle()
  }

  shadowDone(outcome: ShadowOutcome): void {
    this.#shadows.push(outcome)
    if (this.#traces !== undefined) this.traceOf(outcome.target)?.finished(outcome.status, outcome.error)
    this.#settle()
  }

  #settle(): void {
    if (--this.#remaining === 0) this.#observer.finish(this, this.#primary as PrimaryOutcome, this.#shadows, this.#skipped)
  }
}
