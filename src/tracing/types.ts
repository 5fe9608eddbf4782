// What the plan and the exchange know of tracing: types only, so neither loads the SDK.
import type { IncomingHttpHeaders } from 'node:http'

/** `tracing:` as compiled: where spans go, the share of new traces kept, and the service name. */
export interface TracingPlan {
  /** The OTLP/HTTP traces URL (…/v1/traces). */
  readonly endpoint: string
  readonly sampleRatio: number
  readonly serviceName: string
}

/** Whether two `tracing` plans export the same way (a reload that leaves them alone keeps the provider). */
export function sameTracing(a: TracingPlan | null, b: TracingPlan | null): boolean {
  if (a === null || b === null) return a === b
  return a.endpoint === b.endpoint && a.sampleRatio === b.sampleRatio && a.serviceName === b.serviceName
}

/** How a shadow's comparison came out, as the observation computed it. */
export type ShadowComparison =
  | { readonly agree: boolean; readonly abs_diff_max: number | null; readonly abs_diff_mean?: number | null; readonly fraction_agree?: number | null }
  | { readonly error: string }

/** One shadow call's span: ended once its answer has been compared (or it was dropped). */
export interface ShadowTrace {
  /** The mirror's answer is in: its status, and when (the span ends at this time). */
  finished(status: number, error: string | null): void
  /** The comparison with the primary; ends the span. */
  compared(comparison: ShadowComparison): void
  /** The mirror was not sent; ends the span. */
  dropped(reason: string): void
}

/** One request's trace, as the exchange drives it. */
export interface RequestTrace {
  /** The decision: which model answers, and how the user was assigned. */
  decided(model: string | undefined, assignment: string, missing: string | null): void
  /** Starts the primary upstream call's span: the model's headers with its `traceparent`. */
  upstream(headers: string[], model: string): string[]
  /** A shadow call's headers with its own `traceparent`, and its span (null: not sampled). */
  shadow(headers: string[], model: string): { headers: string[]; span: ShadowTrace | null }
  /** api: openai routes: what the answer measured (-1: unknown), set before end(). */
  llm(facts: { readonly ttftMs: number; readonly inputTokens: number; readonly outputTokens: number; readonly cost: number }): void
  /** The request ended with this status (0: no answer), and an error message if it failed. */
  end(status: number, error: string | null): void
}

export interface Tracing {
  readonly plan: TracingPlan
  /** Starts a request's span, continuing an incoming `traceparent` when there is one. */
  request(route: string, method: string, headers: IncomingHttpHeaders): RequestTrace
  /**
   * Exports what is queued and stops; later spans are dropped. Resolves within `timeoutMs`
   * (default 5 s): an export still under way then is abandoned and its connection closed.
   */
  shutdown(timeoutMs?: number): Promise<void>
}
