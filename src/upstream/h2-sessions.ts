import { connect, type ClientHttp2Session } from 'node:http2'

/**
 * HTTP/2 client sessions to gRPC model servers, by origin (cleartext `http://` is h2c with prior
 * knowledge, `https://` is TLS with ALPN h2). One session multiplexes every call to an origin, as
 * gRPC clients do; a session that closes, fails or is sent GOAWAY is replaced on the next call,
 * and the calls it still carries finish on it.
 */
export class H2Sessions {
  readonly #sessions = new Map<string, ClientHttp2Session>()
  #closed = false

  /** The session for an origin, opened on first use (or again after the last one ended). */
  get(origin: string): ClientHttp2Session {
    let s = this.#sessions.get(origin)
    if (s !== undefined && !s.closed && !s.destroyed) return s
    if (this.#closed) throw new Error('the router is shutting down')
    s = connect(origin)
    const session = s
    const forget = (): void => {
      if (this.#sessions.get(origin) === session) this.#sessions.delete(origin)
    }
    // A session's error fails its streams (each handles its own); the pool only forgets it.
    session.on('error', forget)
    session.on('goaway', forget)
    session.on('close', forget)
    // An idle session keeps no process alive: the listener does while it serves.
    session.unref()
    this.#sessions.set(origin, session)
    return session
  }

  /** Closes every session: open calls finish (GOAWAY), new ones are refused. */
  async close(): Promise<void> {
    this.#closed = true
    const all = [...this.#sessions.values()]
    this.#sessions.clear()
    await Promise.all(all.map((s) => new Promise<void>((resolve) => {
      if (s.closed || s.destroyed) return resolve()
      s.close(() => resolve())
    })))
  }

  /** Ends every session at once (shutdown past its deadline). */
  destroyAll(): void {
    for (const s of this.#sessions.values()) s.destroy()
    this.#sessions.clear()
  }
}
