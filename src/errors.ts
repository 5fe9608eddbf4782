import createError from '@fastify/error'
import { STATUS_CODES } from 'node:http'

// The error catalogue: every code the router raises lives here, with its HTTP status.
// Messages are printf-style (%s) so the route and model can be named where they apply.

// --- request errors -------------------------------------------------------------------------
export const RouteNotFoundError = createError<'MS_ROUTE_NOT_FOUND', 404, [string, string]>(
  'MS_ROUTE_NOT_FOUND', 'no route matches path %s; configured route paths: %s', 404)
export const BodyTooLargeError = createError<'MS_BODY_TOO_LARGE', 413, [string, number]>(
  'MS_BODY_TOO_LARGE', 'request body for route "%s" is over the limit of %s bytes (limits.max_body_bytes)', 413)
export const UserIdRequiredError = createError<'MS_USER_ID_REQUIRED', 400, [string, string, string]>(
  'MS_USER_ID_REQUIRED', 'route "%s" needs a user id (%s) and rejects requests without one: %s', 400)
export const BadRequestPathError = createError<'MS_BAD_PATH', 400, [string, { cause: unknown }?]>(
  'MS_BAD_PATH', 'request path is not allowed: %s', 400)
export const HostRequiredError = createError<'MS_HOST_REQUIRED', 400, []>(
  'MS_HOST_REQUIRED', 'an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)', 400)
export const TransferCodingError = createError<'MS_TRANSFER_CODING_UNSUPPORTED', 501, [string]>(
  'MS_TRANSFER_CODING_UNSUPPORTED', 'Transfer-Encoding "%s" is not supported; only chunked is (RFC 9112 §6.1)', 501)
/** An HTTP/1.1 client on the gRPC port (listen.grpc): answered once, in HTTP/1.1, and the connection closed. */
export const GrpcOnlyError = createError<'MS_GRPC_ONLY', 505, []>(
  'MS_GRPC_ONLY', 'this port speaks gRPC (HTTP/2 with prior knowledge); send HTTP/1.1 requests to the listen port', 505)
export const BodyTimeoutError = createError<'MS_BODY_TIMEOUT', 408, [string, number]>(
  'MS_BODY_TIMEOUT', 'request body for route "%s" paused longer than limits.body_timeout_ms=%s; the connection is closed', 408)
/** A feedback batch that was not applied: 400, 404 or 422 by its most basic problem (the body lists them all). */
export const FeedbackInvalidError = createError<'MS_FEEDBACK_INVALID', 400, [string]>(
  'MS_FEEDBACK_INVALID', '%s', 400)
export const FeedbackUnavailableError = createError<'MS_FEEDBACK_UNAVAILABLE', 503, [string]>(
  'MS_FEEDBACK_UNAVAILABLE', '%s', 503)
export const InternalError = createError<'MS_INTERNAL', 500, [string, { cause: unknown }?]>(
  'MS_INTERNAL', 'the router failed to handle this request: %s', 500)

// --- admin errors ---------------------------------------------------------------------------
export const UnauthorizedError = createError<'MS_UNAUTHORIZED', 401, [string]>(
  'MS_UNAUTHORIZED', '%s', 401)
export const BadQueryError = createError<'MS_BAD_QUERY', 400, [string]>(
  'MS_BAD_QUERY', '%s', 400)
export const RouteUnknownError = createError<'MS_ROUTE_UNKNOWN', 404, [string, string]>(
  'MS_ROUTE_UNKNOWN', 'no route named "%s"; routes: %s', 404)
/** A rollout action that does not fit its state (pausing a finished rollout), or a route without one. */
export const RolloutConflictError = createError<'MS_ROLLOUT_CONFLICT', 409, [string]>(
  'MS_ROLLOUT_CONFLICT', '%s', 409)
export const ConfigRejectedError = createError<'MS_CONFIG_INVALID', 422, [string]>(
  'MS_CONFIG_INVALID', '%s', 422)
// A web page the operator has open must not drive or read the admin API (CSRF, DNS rebinding).
export const AdminHostRefusedError = createError<'MS_ADMIN_HOST_REFUSED', 403, [string]>(
  'MS_ADMIN_HOST_REFUSED', '%s', 403)
export const AdminCrossSiteError = createError<'MS_ADMIN_CROSS_SITE', 403, [string]>(
  'MS_ADMIN_CROSS_SITE', '%s', 403)
export const AdminSimpleMutationError = createError<'MS_ADMIN_SIMPLE_MUTATION', 403, [string]>(
  'MS_ADMIN_SIMPLE_MUTATION', '%s', 403)

// --- upstream errors: one family, so callers can branch on `instanceof UpstreamError` -------
export const UpstreamError = createError<'MS_UPSTREAM_ERROR', 502, [string, string, string, { cause: unknown }?]>(
  'MS_UPSTREAM_ERROR', 'model "%s" on route "%s" failed: %s', 502)
// @fastify/error types its Base parameter as the built-in ErrorConstructor; any constructor works.
const UpstreamBase = UpstreamError as unknown as ErrorConstructor
export const UpstreamUnreachableError = createError<'MS_UPSTREAM_UNREACHABLE', 502, [string, string, string, { cause: unknown }?]>(
  'MS_UPSTREAM_UNREACHABLE', 'model "%s" on route "%s" is unreachable: %s', 502, UpstreamBase)
export const UpstreamResetError = createError<'MS_UPSTREAM_RESET', 502, [string, string, string, { cause: unknown }?]>(
  'MS_UPSTREAM_RESET', 'model "%s" on route "%s" closed the connection: %s', 502, UpstreamBase)
export const UpstreamTimeoutError = createError<'MS_UPSTREAM_TIMEOUT', 504, [string, string, number, { cause: unknown }?]>(
  'MS_UPSTREAM_TIMEOUT', 'model "%s" on route "%s" did not answer within timeout_ms=%s', 504, UpstreamBase)

// --- the router's own saturation: never the model's error ------------------------------------
/** Every pooled connection to the model stayed busy for its timeout_ms: the router's pool is full, the model may be fine. */
export const OverloadedError = createError<'MS_OVERLOADED', 503, [string, string, number, number]>(
  'MS_OVERLOADED', 'the router has no free connection to model "%s" on route "%s": all %s of its connections stayed busy for %sms; retry later, or raise the model\'s connections', 503)

// --- lifecycle ---------------------------------------------------------------------------------
/** A record or spool directory on a kernel file system (/proc, /sys), where mkdir never returns. */
export const RecordDirUnusableError = createError<'MS_RECORD_DIR_UNUSABLE', 500, [string]>(
  'MS_RECORD_DIR_UNUSABLE', '%s', 500)
/** The last span export was cut at shutdown: its budget (shutdown_timeout_ms) ran out. */
export const TracingStoppedError = createError<'MS_TRACING_STOPPED', 500, []>(
  'MS_TRACING_STOPPED', 'tracing stopped at shutdown', 500)
export const ShuttingDownError = createError<'MS_SHUTTING_DOWN', 503, []>(
  'MS_SHUTTING_DOWN', 'the router is shutting down', 503)

/** One located problem in a config file: where it is and what to write instead. */
export interface ConfigProblem {
  readonly file: string
  /** 1-based line, when the YAML parser could locate the key. */
  readonly line?: number
  /** Key path such as `routes[0].split[1].weight`; empty for the whole document. */
  readonly path: string
  readonly message: string
}

/** Formats a problem as `file:line: path: message`, the form editors and CI logs link to. */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}`
  return p.path === '' ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`
}

/** A config that cannot be used; carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly code = 'MS_CONFIG_INVALID'
  readonly problems: readonly ConfigProblem[]

  constructor(problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    const n = problems.length
    super(`invalid config (${n} problem${n === 1 ? '' : 's'}):\n` + problems.map((p) => '  ' + formatProblem(p)).join('\n'), options)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** The JSON body of an error answer: fastify's shape, plus `route` and `model` where they apply. */
export function errorBody(err: { statusCode?: number; code?: string; message: string }, route?: string, model?: string): string {
  const statusCode = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
  return JSON.stringify({
    statusCode,
    code: err.code ?? 'MS_INTERNAL',
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: err.message,
    ...(route !== undefined ? { route } : {}),
    ...(model !== undefined ? { model } : {}),
  })
}
