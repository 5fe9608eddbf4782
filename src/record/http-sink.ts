import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { Pool, errors as undiciErrors } from 'undici'
import { parseHeadersFile } from '../config/sink.js'
import type { HttpSinkConfig } from '../config/types.js'
import { cloudEventType, type Envelope } from './envelope.js'
import { SinkError, isNetworkError, type Transport } from './transport.js'

// 401/403/407 (credentials), 404/405/421 (the wrong URL or server), 408 (slow), 425/429 (not now).
const RETRYABLE_4XX: ReadonlySet<number> = new Set([401, 403, 404, 405, 407, 408, 421, 425, 429])

/** The media type of a CloudEvents JSON batch (CloudEvents JSON Event Format 1.0, §4). */
export const CLOUDEVENTS_BATCH = 'application/cloudevents-batch+json; charset=utf-8'

/**
 * Posts records to an HTTP collector as CloudEvents 1.0 JSON batches: one event per record, its
 * `data` the record's JSON exactly as the file sink writes it, `type` org.modelsplit.prediction,
 * .outcome or .decision, `partitionkey` (the partitioning extension) the request id. A 2xx answer
 * acknowledges the whole batch; 413 says it is too large, and a 4xx other than those about access,
 * the URL or the rate refuses its content (the sink then sends halves, and quarantines a record
 * refused alone); any other answer or failure is retried from the spool.
 */
export class HttpTransport implements Transport {
  readonly name = 'http' as const
  readonly destination: string
  readonly #url: URL
  readonly #timeoutMs: number
  readonly #headers: Record<string, string>
  readonly #source: string
  readonly #pool: Pool

  constructor(config: HttpSinkConfig, opts: { source?: string } = {}) {
    this.#url = new URL(config.url)
    this.destination = `${this.#url.origin}${this.#url.pathname}`
    this.#timeoutMs = config.timeout_ms
    this.#source = opts.source ?? `/modelsplit/${hostname()}`
    const extra = config.headers_file === undefined ? [] : parseHeadersFile(readFileSync(config.headers_file, 'utf8'))
    this.#headers = { ...Object.fromEntries(extra.map(([k, v]) => [k.toLowerCase(), v])), 'content-type': CLOUDEVENTS_BATCH }
    this.#pool = new Pool(this.#url.origin, { connections: 2, headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs, connectTimeout: Math.min(this.#timeoutMs, 10_000) })
  }

  async connect(): Promise<void> {
    // Connections are made by the first send.
  }

  async send(envelopes: readonly Envelope[]): Promise<void> {
    const parts: string[] = []
    for (const e of envelopes) {
      parts.push(`{"specversion":"1.0","id":${JSON.stringify(e.id)},"source":${JSON.stringify(this.#source)},"type":"${cloudEventType(e.type)}","time":${JSON.stringify(e.time)},` +
        `${e.key === null ? '' : `"partitionkey":${JSON.stringify(e.key)},`}"datacontenttype":"application/json","data":${e.value}}`)
    }
    const body = `[${parts.join(',')}]`
    let status: number
    try {
      const res = await this.#pool.request({
        method: 'POST', path: this.#url.pathname + this.#url.search, headers: this.#headers, body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      })
      status = res.statusCode
      await res.body.dump()
    } catch (err) {
      if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || (err as Error).name === 'TimeoutError') {
        throw new SinkError('timeout', `the collector did not answer within ${this.#timeoutMs} ms`, false, { cause: err })
      }
      if (isNetworkError(err)) throw new SinkError('unreachable', `cannot reach the collector: ${(err as Error).message}`, false, { cause: err })
      throw new SinkError('other', `posting to the collector failed: ${(err as Error).message}`, false, { cause: err })
    }
    if (status >= 200 && status < 300) return
    if (status === 413) throw new SinkError('too_large', 'the collector refused the batch as too large (413)', true)
    // RFC 9110 §15.5: a 4xx is the client's fault. These are about the request as a whole (who
    // asks, where, or not now), so the same records may go later; any other 4xx refuses what was
    // sent, and the sink narrows it down to the record refused and quarantines it.
    if (status >= 400 && status < 500 && !RETRYABLE_4XX.has(status)) throw new SinkError('rejected', `the collector refused the records (${status})`, true)
    throw new SinkError('rejected', `the collector answered ${status}`)
  }

  async close(): Promise<void> {
    await this.#pool.close().catch(() => {})
  }
}
