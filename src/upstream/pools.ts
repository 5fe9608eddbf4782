import { Pool } from 'undici'

/**
 * Keep-alive connection pools by (kind, origin, size), shared across reloads: a reload that keeps
 * a model's origin and `connections` keeps its warm connections. Primaries and shadows never
 * share a pool, so slow shadows cannot take connections a user's request is waiting for.
 * Timeouts are the router's own (per request, to the millisecond), so undici's are off.
 */
export class Pools {
  readonly #pools = new Map<string, Pool>()

  /** The pool for a key; made on first use. */
  get(kind: 'primary' | 'shadow', origin: string, connections: number): Pool {
    const key = `${kind} ${connections} ${origin}`
    let pool = this.#pools.get(key)
    if (pool === undefined) {
      pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 })
      this.#pools.set(key, pool)
    }
    return pool
  }

  /** Closes, once their requests finish, the pools no plan in `inUse` reaches any more. */
  retain(inUse: ReadonlySet<unknown>): void {
    for (const [key, pool] of this.#pools) {
      if (inUse.has(pool)) continue
      this.#pools.delete(key)
      pool.close().catch(() => undefined)
    }
  }

  /** Closes every pool: waits for requests in flight unless `force`. */
  async close(force = false): Promise<void> {
    const all = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(all.map((p) => (force ? p.destroy() : p.close()).catch(() => undefined)))
  }
}
