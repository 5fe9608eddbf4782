import type { Envelope } from './envelope.js'

/** Records taken from the front of a MemoryQueue, with the tag each was pushed with. */
export interface Taken<T> {
  readonly envelopes: Envelope[]
  readonly tags: Array<T | undefined>
  readonly bytes: number
}

/**
 * The records a remote sink holds in memory, oldest first, each with an optional tag (the
 * writeBatch batch it belongs to). Taking from the front is O(taken): the arrays are cut only now
 * and then, not shifted per record.
 */
export class MemoryQueue<T> {
  #envs: Envelope[] = []
  #tags: Array<T | undefined> = []
  #head = 0
  #bytes = 0
  #oldestAt = 0

  get isEmpty(): boolean {
    return this.#head === this.#envs.length
  }

  get length(): number {
    return this.#envs.length - this.#head
  }

  /** Bytes of the records held. */
  get bytes(): number {
    return this.#bytes
  }

  /** When the record now at the front arrived (performance.now()), for the linger. */
  get oldestAt(): number {
    return this.#oldestAt
  }

  push(env: Envelope, tag: T | undefined): void {
    if (this.isEmpty) this.#oldestAt = performance.now()
    this.#envs.push(env)
    this.#tags.push(tag)
    this.#bytes += env.bytes
  }

  /** Takes up to `maxBytes` (at least one record) and `maxCount` records from the front. */
  take(maxBytes: number, maxCount: number): Taken<T> {
    const start = this.#head
    let end = start
    let bytes = 0
    while (end < this.#envs.length && end - start < maxCount) {
      const b = (this.#envs[end] as Envelope).bytes
      if (end > start && bytes + b > maxBytes) break
      bytes += b
      end++
    }
    const envelopes = this.#envs.slice(start, end)
    const tags = this.#tags.slice(start, end)
    this.#head = end
    this.#bytes -= bytes
    if (this.isEmpty) {
      this.#envs = []
      this.#tags = []
      this.#head = 0
    } else {
      if (this.#head > 4096 && this.#head * 2 > this.#envs.length) {
        this.#envs = this.#envs.slice(this.#head)
        this.#tags = this.#tags.slice(this.#head)
        this.#head = 0
      }
      // The rest waited at least as long as what was taken: they go with the next send.
      this.#oldestAt = performance.now()
    }
    return { envelopes, tags, bytes }
  }

  /** Puts records back at the front (a spool write that failed), in their order. */
  untake(envelopes: Envelope[], tags: Array<T | undefined>): void {
    this.#envs = envelopes.concat(this.#envs.slice(this.#head))
    this.#tags = tags.concat(this.#tags.slice(this.#head))
    this.#head = 0
    for (const e of envelopes) this.#bytes += e.bytes
  }
}
