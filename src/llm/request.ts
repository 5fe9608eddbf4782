// An OpenAI-style request on its way to one arm: the model name it asks for, and usage asked for
// when the client streams without it (the router needs the token counts; the client never sees them).
import type { BodyView } from '../plan/index.js'

export interface LlmRequest {
  /** The body the model gets. */
  readonly body: Buffer
  /** The client's `model`, JSON-encoded, to write back into the answer; null: leave it. */
  readonly clientModel: Buffer | null
  readonly stream: boolean
  /** stream_options.include_usage was added by the router: its extra chunk is not the client's. */
  readonly injected: boolean
}

/** Endpoints whose streams take stream_options.include_usage (the Responses API always reports usage). */
function takesStreamOptions(path: string): boolean {
  return path.endsWith('/chat/completions') || path.endsWith('/completions')
}

/**
 * What to send for a parsed JSON body: the raw bytes unchanged when nothing needs changing
 * (so most requests serialise nothing), else the body with `model` and `stream_options` set.
 */
export function prepareRequest(view: BodyView, upstreamModel: string | null, path: string): LlmRequest | null {
  if (view.state !== 'json' || view.raw === undefined) return null
  const parsed = view.parsed
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null
  const o = parsed as { model?: unknown; stream?: unknown; stream_options?: unknown }
  const stream = o.stream === true
  const options = o.stream_options !== null && typeof o.stream_options === 'object' && !Array.isArray(o.stream_options) ? o.stream_options as Record<string, unknown> : null
  const inject = stream && takesStreamOptions(path) && options?.include_usage !== true
  const rename = upstreamModel !== null && o.model !== upstreamModel
  if (!inject && !rename) return { body: view.raw, clientModel: null, stream, injected: false }
  // A shallow copy: the parsed body is shared with the record and the user-id reader.
  const out: Record<string, unknown> = { ...o }
  if (rename) out.model = upstreamModel
  if (inject) out.stream_options = { ...options, include_usage: true }
  const clientModel = rename && typeof o.model === 'string' ? Buffer.from(JSON.stringify(o.model)) : null
  return { body: Buffer.from(JSON.stringify(out)), clientModel, stream, injected: inject }
}

/**
 * The body a shadow gets: its own upstream model; streamed as the client asked (with usage, which
 * nobody strips: the shadow's bytes reach no client) or not at all (`off`).
 */
export function shadowRequestBody(view: BodyView, upstreamModel: string | null, mode: 'as_requested' | 'off', path: string): Buffer | undefined {
  if (view.state !== 'json' || view.raw === undefined) return view.raw
  const parsed = view.parsed
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return view.raw
  const o = parsed as { model?: unknown; stream?: unknown; stream_options?: unknown }
  const streams = o.stream === true
  const options = o.stream_options !== null && typeof o.stream_options === 'object' && !Array.isArray(o.stream_options) ? o.stream_options as Record<string, unknown> : null
  const unstream = streams && mode === 'off'
  const inject = streams && !unstream && takesStreamOptions(path) && options?.include_usage !== true
  const rename = upstreamModel !== null && o.model !== upstreamModel
  if (!unstream && !inject && !rename) return view.raw
  const out: Record<string, unknown> = { ...o }
  if (rename) out.model = upstreamModel
  if (unstream) {
    out.stream = false
    delete out.stream_options // refused by OpenAI on a request that does not stream
  }
  if (inject) out.stream_options = { ...options, include_usage: true }
  return Buffer.from(JSON.stringify(out))
}
