// Mirroring one HTTP exchange's request to its route's shadows: asking the shadow dispatcher's gates,
// building each mirror's body and headers, and sending it. Module functions called directly by the
// exchange with its own state (no closure, no object per request); nothing here waits for a shadow.
import type { ShadowDropReason } from '../metrics/index.js'
import { isShadowed } from '../plan/index.js'
import type { Observation } from '../shadow/index.js'
import type { RequestTrace } from '../tracing/types.js'
import { upstreamRequestHeaders } from '../upstream/headers.js'
import { shadowRequestBody } from '../llm/request.js'
import type { Exchange } from './exchange.js'
import type { Arm, RouteRuntime } from './runtime.js'

/**
 * The shadows whose mirror goes out, as bits (shadow i: bit i), asked of the dispatcher's gates
 * (which count what they drop) before anything is built; for a route with no record to name the
 * dropped ones in. The primary's dispatch in between touches no gate, so the answers hold.
 */
export function gateShadows(ex: Exchange, arm: Arm): number {
  const shadows = ex.route.shadows
  const userId = ex.decision.userId
  let mirrors = 0
  for (let i = 0; i < shadows.length; i++) {
    const target = shadows[i] as RouteRuntime['shadows'][number]
    // Mirroring a request to the model that answers it would only double its load.
    if (target.model === arm.model || !isShadowed(target, userId)) continue
    if (ex.body.truncated) target.dropped.body_too_large.inc()
    else if (ex.ctx.shadows.refuse(target) === null) mirrors |= 1 << i
  }
  return mirrors
}

/**
 * Mirrors the request to the route's shadows; true if any was sent. `mirrors`: the shadows
 * gateShadows let through, or -1 when the gates are asked here (records name what is dropped).
 * `obs`, `requestTrace` and `primaryHeaders` are the exchange's observation, trace (or null) and
 * the model's request headers (kept on routes with shadows).
 */
export function sendShadows(
  ex: Exchange,
  arm: Arm,
  mirrors: number,
  obs: Observation,
  requestTrace: RequestTrace | null,
  primaryHeaders: string[] | null,
): boolean {
  const shadows = ex.route.shadows
  const userId = ex.decision.userId
  let headers: string[] | undefined
  let sent = false
  for (let i = 0; i < shadows.length; i++) {
    const target = shadows[i] as RouteRuntime['shadows'][number]
    let refused: ShadowDropReason | null = null
    if (mirrors !== -1) {
      if ((mirrors & (1 << i)) === 0) continue
    } else {
      // Mirroring a request to the model that answers it would only double its load.
      if (target.model === arm.model || !isShadowed(target, userId)) continue
      if (ex.body.truncated) {
        target.dropped.body_too_large.inc()
        obs.shadowSkipped(target, 'body_too_large')
        continue
      }
      refused = ex.ctx.shadows.refuse(target)
      if (refused !== null && requestTrace === null) {
        obs.shadowSkipped(target, refused)
        continue
      }
    }
    // OpenAI routes: each shadow its own model name and stream mode, so its own body and length;
    // elsewhere the primary's headers (a mirrored body is whole, so its content-length is the
    // same) and the mirror's mark, without filtering the client's headers a second time.
    const body = ex.route.plan.isOpenAi
      ? shadowRequestBody(ex.body, target.upstreamModel, target.stream, ex.rest)
      : ex.body.raw
    let mirrorHeaders: string[]
    if (body !== ex.body.raw) {
      const length = body === undefined ? -1 : body.length
      const peer = ex.req.socket.remoteAddress
      mirrorHeaders = upstreamRequestHeaders(ex.req.rawHeaders, ex.requestId, peer, length, 'x-modelsplit-shadow')
    } else {
      if (headers === undefined) {
        headers = (primaryHeaders as string[]).slice()
        headers.push('x-modelsplit-shadow', '1')
      }
      mirrorHeaders = headers
    }
    const trace = requestTrace === null ? null : requestTrace.shadow(mirrorHeaders, target.model)
    if (refused !== null) {
      // Traced: the dropped mirror still gets its span, saying why.
      obs.shadowSkipped(target, refused)
      trace?.span?.dropped(refused)
      continue
    }
    if (trace !== null && trace.span !== null) obs.traceShadow(target, trace.span)
    const sentHeaders = trace === null ? mirrorHeaders : trace.headers
    ex.ctx.shadows.send(target, ex.method, ex.rest, ex.query, sentHeaders, body, obs)
    sent = true
  }
  return sent
}
