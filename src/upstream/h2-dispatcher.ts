import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import type { Dispatcher } from 'undici'
import { httpCodeOf, parseStatus } from './grpc-wire.js'
import type { H2Sessions } from './h2-sessions.js'

/**
 * Mirrored gRPC calls through the shadow dispatcher's own gates, breaker, timeouts and capture:
 * the subset of undici's Dispatcher it uses (`dispatch(opts, handler)`), over HTTP/2 sessions.
 * The answer's outcome is its grpc-status, not the HTTP 200: the handler is told the HTTP code of
 * that status (wire.ts httpCodeOf) once the trailers are in, before onComplete.
 */
export class H2Dispatcher {
  constructor(readonly origin: string, readonly sessions: H2Sessions) {}

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': opts.path }
    const flat = opts.headers as string[] | null | undefined
    if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) headers[flat[i] as string] = flat[i + 1]
    let stream: ClientHttp2Stream
    try {
      stream = this.sessions.get(this.origin).request(headers, { endStream: false })
    } catch (err) {
      handler.onError?.(err as Error)
      return true
    }
    const call = new H2Call(stream, handler)
    handler.onConnect?.((err?: Error) => call.abort(err))
    stream.end(opts.body as Buffer | null ?? undefined)
    return true
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

class H2Call {
  #status = 0
  #trailers: IncomingHttpHeaders | null = null
  #done = false
  #error: Error | null = null

  constructor(readonly stream: ClientHttp2Stream, readonly handler: Dispatcher.DispatchHandler) {
    stream.on('response', (h: IncomingHttpHeaders) => {
      this.#status = Number(h[':status'])
      if (h['grpc-status'] !== undefined) this.#trailers = h
      handler.onHeaders?.(this.#status, [], noop, '')
    })
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done && handler.onData?.(chunk) === false) this.abort(new Error('the shadow\'s answer is not kept'))
    })
    stream.on('trailers', (t: IncomingHttpHeaders) => { this.#trailers = t })
    stream.on('error', (err: Error) => { this.#error = err })
    stream.on('close', () => this.#close())
  }

  abort(err?: Error): void {
    if (this.#done) return
    this.#done = true
    this.stream.close(0x8 /* CANCEL */)
    this.handler.onError?.(err ?? new Error('aborted'))
  }

  #close(): void {
    if (this.#done) return
    this.#done = true
    const clean = this.stream.rstCode === 0 && this.#status !== 0
    if (!clean) {
      const err = this.#error ?? new Error(`the shadow reset the call (RST_STREAM ${this.stream.rstCode ?? '?'})`)
      this.handler.onError?.(err)
      return
    }
    // The call's outcome: 200 OK, or the HTTP code of its grpc-status (INTERNAL without one).
    const code = this.#status !== 200 ? this.#status : this.#trailers === null ? 500 : httpCodeOf(parseStatus(this.#trailers['grpc-status']))
    if (code !== this.#status) this.handler.onHeaders?.(code, [], noop, '')
    this.handler.onComplete?.([])
  }
}

function noop(): void {}
