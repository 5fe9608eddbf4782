// A small client for MLflow's REST API (/api/2.0/mlflow/...): bounded calls, retried with backoff
// on what may pass (5xx, 429, timeouts, refused connections), each counted by result. Nothing here
// is on the request path: the registry and the run reporter call it from their own timers.
import { request, Agent } from 'undici'

export type MlflowResult<T> =
  | { readonly ok: true; readonly body: T }
  | { readonly ok: false; readonly status: number | null; readonly code: string | null; readonly message: string }

export type CallResult = 'success' | 'error' | 'timeout' | 'unreachable'

export interface ClientOptions {
  /** The tracking server's base URL, without a trailing slash. */
  readonly baseUrl: string
  /** Bearer token, or null. */
  readonly token: string | null
  /** One attempt gives up after this long. */
  readonly timeoutMs: number
  /** Attempts per call (1: no retry). */
  readonly attempts?: number
  /** Counts every attempt by result. */
  readonly count: (result: CallResult) => void
  /** Waits between attempts (tests pass a fast one). */
  readonly sleep?: (ms: number) => Promise<void>
}

const RESPONSE_LIMIT = 4 * 1024 * 1024

export class MlflowClient {
  readonly #opts: ClientOptions
  readonly #agent: Agent
  readonly #abort = new AbortController()

  constructor(opts: ClientOptions) {
    this.#opts = opts
    this.#agent = new Agent({ connections: 4, connectTimeout: opts.timeoutMs, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs })
  }

  get baseUrl(): string {
    return this.#opts.baseUrl
  }

  get<T>(endpoint: string, query: Record<string, string>, attempts?: number): Promise<MlflowResult<T>> {
    return this.#call<T>('GET', `${endpoint}?${new URLSearchParams(query).toString()}`, undefined, attempts)
  }

  post<T>(endpoint: string, body: unknown, attempts?: number): Promise<MlflowResult<T>> {
    return this.#call<T>('POST', endpoint, JSON.stringify(body), attempts)
  }

  /** Aborts calls under way and closes the connections. */
  async close(): Promise<void> {
    this.#abort.abort()
    await this.#agent.close().catch(() => undefined)
  }

  async #call<T>(method: 'GET' | 'POST', endpoint: string, body: string | undefined, attempts = this.#opts.attempts ?? 3): Promise<MlflowResult<T>> {
    let last: MlflowResult<T> = { ok: false, status: null, code: null, message: 'not attempted' }
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (this.#abort.signal.aborted) return { ok: false, status: null, code: null, message: 'the client is closed' }
      if (attempt > 0) await (this.#opts.sleep ?? sleep)(backoff(attempt))
      const r = await this.#once<T>(method, endpoint, body)
      last = r.result
      if (!r.retry) return last
    }
    return last
  }

  async #once<T>(method: 'GET' | 'POST', endpoint: string, body: string | undefined): Promise<{ result: MlflowResult<T>; retry: boolean }> {
    const url = `${this.#opts.baseUrl}/api/2.0/mlflow/${endpoint}`
    const headers: Record<string, string> = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (this.#opts.token !== null) headers.authorization = `Bearer ${this.#opts.token}`
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#opts.timeoutMs)])
    let status: number
    let text: string
    try {
      const res = await request(url, { method, headers, body, dispatcher: this.#agent, signal })
      status = res.statusCode
      text = await readLimited(res.body)
    } catch (err) {
      const e = err as Error & { code?: string }
      const timedOut = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT' || (e.name === 'AbortError' && !this.#abort.signal.aborted)
      this.#opts.count(timedOut ? 'timeout' : 'unreachable')
      const message = timedOut ? `no answer from ${url} within ${this.#opts.timeoutMs} ms` : `${url} unreachable: ${e.code ?? e.message}`
      return { result: { ok: false, status: null, code: null, message }, retry: !this.#abort.signal.aborted }
    }
    if (status >= 200 && status < 300) {
      this.#opts.count('success')
      try {
        return { result: { ok: true, body: (text === '' ? {} : JSON.parse(text)) as T }, retry: false }
      } catch {
        return { result: { ok: false, status, code: null, message: `${url} answered ${status} with a body that is not JSON` }, retry: false }
      }
    }
    this.#opts.count('error')
    let code: string | null = null
    let message = text.slice(0, 300)
    try {
      const parsed = JSON.parse(text) as { error_code?: unknown; message?: unknown }
      if (typeof parsed.error_code === 'string') code = parsed.error_code
      if (typeof parsed.message === 'string') message = parsed.message.slice(0, 300)
    } catch {
      // not JSON: the text is the message
    }
    return { result: { ok: false, status, code, message: `${method} ${endpoint}: HTTP ${status}${code !== null ? ` ${code}` : ''}: ${message}` }, retry: status >= 500 || status === 429 }
  }
}

/** 0.5 s, 1 s, 2 s … with ±25% jitter, so replicas that failed together do not retry together. */
function backoff(attempt: number): number {
  const base = 500 * 2 ** (attempt - 1)
  return base * (0.75 + Math.random() * 0.5)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref() })
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy?: () => void }): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > RESPONSE_LIMIT) {
      body.destroy?.()
      throw new Error(`answer over ${RESPONSE_LIMIT} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
