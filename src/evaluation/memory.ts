/** What the router remembers of one recent request: enough to attribute an outcome to it. */
export interface Remembered {
  readonly route: string
  readonly model: string
  readonly userId: string | undefined
  readonly at: number
  /** The MLflow registered version that answered (models.NAME.mlflow), if the model has one. */
  readonly version?: string | null
}

/**
 * A bounded, time-limited memory of recent assignments by request id. A Map keeps insertion
 * order, so the oldest entry is always first: eviction is O(1) and memory never exceeds `max`.
 */
export class AssignmentMemory {
  readonly #entries = new Map<string, Remembered>()
  #max: number
  #ttlMs: number

  constructor(max: number, ttlMs: number) {
    this.#max = max
    this.#ttlMs = ttlMs
  }

  /** Applies new limits (on reload); shrinking evicts the oldest entries. */
  configure(max: number, ttlMs: number): void {
    this.#max = max
    this.#ttlMs = ttlMs
    this.#evict()
  }

  get size(): number {
    return this.#entries.size
  }

  remember(requestId: string, route: string, model: string, userId: string | undefined, version?: string | null, now = Date.now()): void {
    if (this.#max === 0) return
    this.#entries.set(requestId, version === undefined ? { route, model, userId, at: now } : { route, model, userId, at: now, version })
    if (this.#entries.size > this.#max) this.#evict()
  }

  /** The assignment of a request id still within its time limit, if remembered. */
  recall(requestId: string, now = Date.now()): Remembered | undefined {
    const e = this.#entries.get(requestId)
    if (e === undefined) return undefined
    if (now - e.at > this.#ttlMs) {
      this.#entries.delete(requestId)
      return undefined
    }
    return e
  }

  #evict(): void {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#max) break
      this.#entries.delete(key)
    }
  }
}
