// The quarantine file of a remote sink: where records the destination refuses for good are set
// aside, one JSON line each, so what is behind them goes on and an operator can look at them.
import { appendFile } from 'node:fs/promises'
import type { DeliverySinkOptions } from './delivery-options.js'
import type { Envelope } from './envelope.js'

/** Appends refused records to the quarantine file, one JSON line each; false when the disk refused. */
export async function quarantine(
  file: string,
  envelopes: readonly Envelope[],
  err: unknown,
  opts: Pick<DeliverySinkOptions, 'onError'>,
): Promise<boolean> {
  const at = new Date().toISOString()
  const reason = err instanceof Error ? err.message : String(err)
  // The record stays a string: a damaged line may not be JSON, and must be kept as it was.
  const lines = envelopes.map((e) => JSON.stringify({ quarantined_at: at, reason, id: e.id, type: e.type, key: e.key, time: e.time, record: e.value }) + '\n')
  try {
    await appendFile(file, lines.join(''))
    return true
  } catch (error) {
    opts.onError?.(error)
    return false
  }
}
