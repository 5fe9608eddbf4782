// OpenTelemetry traces for the request path. The exchange talks to this module through
// `Tracing` and `RequestTrace` only; with `tracing` absent from the config none of it is built,
// and the exchange pays one null check per request.
import type { Agent, IncomingHttpHeaders } from 'node:http'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, trace, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base'
import type { RequestTrace, ShadowComparison, ShadowTrace, Tracing, TracingPlan } from './types.js'
import { TracingStoppedError } from '../errors.js'
import { ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions'

export type { RequestTrace, ShadowComparison, ShadowTrace, Tracing, TracingPlan } from './types.js'
export { tracesUrl } from './url.js'

const propagator = new W3CTraceContextPropagator()
const SERVER = { kind: SpanKind.SERVER }

function now(): number {
  return performance.timeOrigin + performance.now()
}

function traceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 1).toString()}`
}

/** The model's headers with `traceparent`/`tracestate` set to `sc` (a client's own are replaced). */
function withContext(headers: string[], sc: SpanContext): string[] {
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string
    if (name.length === 11 || name.length === 10) {
      const n = name.toLowerCase()
      if (n === 'traceparent' || n === 'tracestate') continue
    }
    out.push(name, headers[i + 1] as string)
  }
  out.push('traceparent', traceparent(sc))
  const state = sc.traceState?.serialize()
  if (state !== undefined && state !== '') out.push('tracestate', state)
  return out
}

class ShadowSpan implements ShadowTrace {
  #end = 0
  constructor(readonly span: Span) {}

  finished(status: number, error: string | null): void {
    this.#end = now()
    if (status > 0) this.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    if (error !== null) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error })
  }

  compared(c: ShadowComparison): void {
    const s = this.span
    if ('error' in c) {
      s.setAttribute('modelsplit.comparison.result', 'error')
      s.setAttribute('modelsplit.comparison.error', c.error)
    } else {
      s.setAttribute('modelsplit.comparison.result', c.agree ? 'agree' : 'disagree')
      s.setAttribute('modelsplit.comparison.agree', c.agree)
      if (c.abs_diff_max !== null) s.setAttribute('modelsplit.comparison.abs_diff_max', c.abs_diff_max)
      if (c.abs_diff_mean !== undefined && c.abs_diff_mean !== null) s.setAttribute('modelsplit.comparison.abs_diff_mean', c.abs_diff_mean)
      if (c.fraction_agree !== undefined && c.fraction_agree !== null) s.setAttribute('modelsplit.comparison.fraction_agree', c.fraction_agree)
    }
    s.end(this.#end === 0 ? undefined : this.#end)
  }

  dropped(reason: string): void {
    this.span.setAttribute('modelsplit.shadow.dropped', reason)
    this.span.end()
  }
}

class Request implements RequestTrace {
  readonly #span: Span
  readonly #ctx: Context | undefined
  readonly #tracer: Tracer
  readonly #recording: boolean
  #upstream: Span | undefined
  #ended = false

  constructor(tracer: Tracer, route: string, method: string, headers: IncomingHttpHeaders) {
    this.#tracer = tracer
    const parent = headers.traceparent === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter)
    // The ratio sampler reads no attributes: they are set only on a span that records, and an
    // unsampled request builds no context for children it will not have.
    this.#span = tracer.startSpan(`${method} ${route}`, SERVER, parent)
    this.#recording = this.#span.isRecording()
    if (this.#recording) this.#span.setAttributes({ [ATTR_HTTP_REQUEST_METHOD]: method, 'modelsplit.route': route })
    this.#ctx = this.#recording ? trace.setSpan(parent, this.#span) : undefined
  }

  decided(model: string | undefined, assignment: string, missing: string | null): void {
    if (!this.#recording) return
    const s = this.#span
    if (model !== undefined) s.setAttribute('modelsplit.model', model)
    s.setAttribute('modelsplit.assignment', assignment)
    if (missing !== null) s.setAttribute('modelsplit.user_id.missing', missing)
  }

  upstream(headers: string[], model: string): string[] {
    // An unsampled trace still travels on (with its sampled flag off), but builds no child span.
    if (!this.#recording) return withContext(headers, this.#span.spanContext())
    const up = this.#tracer.startSpan(`upstream ${model}`, {
      kind: SpanKind.CLIENT,
      attributes: { 'modelsplit.model': model, 'modelsplit.upstream': 'primary' },
    }, this.#ctx)
    this.#upstream = up
    return withContext(headers, up.spanContext())
  }

  shadow(headers: string[], model: string): { headers: string[]; span: ShadowTrace | null } {
    if (!this.#recording) return { headers: withContext(headers, this.#span.spanContext()), span: null }
    const s = this.#tracer.startSpan(`shadow ${model}`, {
      kind: SpanKind.CLIENT,
      attributes: { 'modelsplit.model': model, 'modelsplit.upstream': 'shadow' },
      // The mirror outlives the request's answer: the link says which request it mirrored.
      links: [{ context: this.#span.spanContext() }],
    }, this.#ctx)
    return { headers: withContext(headers, s.spanContext()), span: new ShadowSpan(s) }
  }

  llm(facts: { readonly ttftMs: number; readonly inputTokens: number; readonly outputTokens: number; readonly cost: number }): void {
    if (!this.#recording || this.#ended) return
    const s = this.#span
    // OpenTelemetry GenAI semantic conventions where they name the value; ours for the rest.
    if (facts.inputTokens >= 0) s.setAttribute('gen_ai.usage.input_tokens', facts.inputTokens)
    if (facts.outputTokens >= 0) s.setAttribute('gen_ai.usage.output_tokens', facts.outputTokens)
    if (facts.ttftMs >= 0) s.setAttribute('modelsplit.llm.time_to_first_token_ms', facts.ttftMs)
    if (facts.cost >= 0) s.setAttribute('modelsplit.llm.cost', facts.cost)
  }

  end(status: number, error: string | null): void {
    if (!this.#recording || this.#ended) return
    this.#ended = true
    const s = this.#span
    const up = this.#upstream
    if (status > 0) s.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    if (error !== null || status >= 500) s.setStatus({ code: SpanStatusCode.ERROR, ...(error !== null ? { message: error } : {}) })
    if (up !== undefined) {
      if (status > 0) up.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      if (error !== null) up.setStatus({ code: SpanStatusCode.ERROR, message: error })
      up.end()
    }
    s.end()
  }
}

/** How long shutdown() waits for the last export when the caller gives no budget (a reload). */
const DEFAULT_SHUTDOWN_MS = 5000

/** Builds the provider (batching, ratio sampler honouring a sampled parent) and its exporter. */
export function startTracing(plan: TracingPlan, version = '0.1.0'): Tracing {
  // Our own agent, so that a last export still waiting when the budget ends can be cut: the
  // exporter's own timeout (10 s) would otherwise hold the process after SIGTERM. The error has
  // a code the exporter does not retry (ECONNRESET would be retried until that timeout).
  const agents: Agent[] = []
  let isCut = false
  const stoppedError = (): Error => new TracingStoppedError()
  const agentFactory = async (protocol: string): Promise<Agent> => {
    const { Agent: HttpAgent } = await import(protocol === 'https:' ? 'node:https' : 'node:http')
    const agent = new HttpAgent({ keepAlive: true })
    // Node's Agent calls createConnection(options, oncreate); @types/node does not declare it.
    const slot = agent as unknown as { createConnection: (options: unknown, oncreate?: (err: Error | null) => void) => unknown }
    const connect = slot.createConnection.bind(agent)
    slot.createConnection = (options, oncreate) => {
      if (!isCut) return connect(options, oncreate)
      oncreate?.(stoppedError())
      return undefined
    }
    agents.push(agent)
    return agent
  }
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: plan.serviceName, [ATTR_SERVICE_VERSION]: version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(plan.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: plan.endpoint, httpAgentOptions: agentFactory }))],
  })
  const tracer = provider.getTracer('modelsplit', version)
  let stopped: Promise<void> | undefined
  return {
    plan,
    request: (route, method, headers) => new Request(tracer, route, method, headers),
    shutdown(timeoutMs = DEFAULT_SHUTDOWN_MS) {
      stopped ??= new Promise<void>((resolve) => {
        const cut = (): void => {
          isCut = true
          for (const a of agents) {
            for (const list of Object.values(a.sockets)) for (const socket of list ?? []) socket.destroy(stoppedError())
            a.destroy()
          }
          resolve()
        }
        const timer = setTimeout(cut, Math.max(0, timeoutMs))
        timer.unref()
        void provider.shutdown().catch(() => undefined).then(() => {
          clearTimeout(timer)
          cut()
        })
      })
      return stopped
    },
  }
}

