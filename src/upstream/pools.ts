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

  readonly #retired = new Set<NodeJS.Timeout>()

  /**
   * Retires the pools no plan in `inUse` reaches any more. A request that started on an older plan
   * may still be reading its body and dispatch later, so a retired pool is closed only after
   * `graceMs` (node:http's requestTimeout bounds how long such a request can last), and then
   * gracefully: what it has queued finishes.
   */
  retain(inUse: ReadonlySet<unknown>, graceMs = 310_000): void {
    for (const [key, pool] of this.#pools) {
      if (inUse.has(pool)) continue
      this.#pools.delete(key)
      const timer = setTimeout(() => {
        this.#retired.delete(timer)
        this.#closing = this.#closing.filter((p) => p !== pool)
        pool.close().catch(() => undefined)
      }, graceMs)
      timer.unref()
      this.#retired.add(timer)
      this.#closing.push(pool)
    }
  }

  /** Pools retired and not yet closed, closed with the rest at shutdown. */
  #closing: Pool[] = []

  /** Closes every pool: waits for requests in flight unless `force`. */
  async close(force = false): Promise<void> {
    for (const t of this.#retired) clearTimeout(t)
    this.#retired.clear()
    const all = [...this.#pools.values(), ...this.#closing.filter((p) => !p.closed)]
    this.#pools.clear()
    this.#closing = []
    await Promise.all(all.map((p) => (force ? p.destroy() : p.close()).catch(() => undefined)))
  }
}
