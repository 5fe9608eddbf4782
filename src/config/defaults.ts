// The values the schema fills in for keys a config leaves out, and the timer limit its durations
// respect: one module every section's reader imports, so none of them imports schema.ts back.
import { SINK_DEFAULTS } from './sink.js'

/** Node's timers take at most 2^31 − 1 ms (about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647

export const DEFAULTS = {
  listen: { host: '0.0.0.0', port: 8080 },
  admin: { host: '127.0.0.1', port: 9464 },
  max_body_bytes: 1_048_576,
  max_mirror_body_bytes: 1_048_576,
  max_capture_bytes: 4_194_304,
  max_capture_total_bytes: 67_108_864,
  max_buffered_body_bytes: 1_048_576,
  body_timeout_ms: 10_000,
  max_sse_event_bytes: 1_048_576,
  recording: { sink: 'file' as const, path: './data/predictions.jsonl', max_bytes: 104_857_600, keep: 5, include_inputs: true, spool: SINK_DEFAULTS.spool },
  max_in_flight: 256,
  feedback: { request_memory: 100_000, request_ttl_ms: 3_600_000, max_body_bytes: 10_485_760 },
  compare: { prediction: 'auto', tolerance: 0.001, mode: 'exact' as const },
  shutdown_timeout_ms: 10_000,
  timeout_ms: 10_000,
  connections: 128,
  user_id: 'header:x-user-id',
} as const
