import { join } from 'node:path'
import { settleGroups, type Group, type Waiter } from './delivery-groups.js'
import { DeliveryHealth } from './delivery-health.js'
import { DeliveryLedger } from './delivery-ledger.js'
import {
  DEFAULT_MAX_BUFFERED_BYTES,
  SPILL_CHUNK_BYTES,
  type DeliverySinkOptions,
  type DeliveryStatus,
} from './delivery-options.js'
import { quarantine } from './delivery-quarantine.js'
import { adoptAll, openOwnSpool } from './delivery-spools.js'
import { EnvelopeFactory, type Envelope } from './envelope.js'
import { MemoryQueue, type Taken } from './memory-queue.js'
import type { RecordSink, WriteBatchOptions } from './sink.js'
import type { Spool, SpoolRead } from './spool.js'
import { SinkError, type Transport } from './transport.js'

export type { DeliverySinkOptions, DeliveryStatus } from './delivery-options.js'

/**
 * A record sink that sends to a remote destination (Kafka, an HTTP collector) at least once,
 * and keeps on disk what the destination has not acknowledged.
 *
 * Records wait in memory (bounded in bytes) and go out in batches of up to `maxBatchBytes`, one
 * send at a time, after `lingerMs`. When a send fails, or records pile up in memory faster than
 * the sink takes them, the sink switches to spooling: records go to the spool on disk, in order,
 * and are sent from there (oldest first, retried with backoff) until the spool is empty again.
 * Only a full spool drops records, counted. `write()` never waits; `writeBatch()` resolves true
 * once every record of the batch is acknowledged by the sink or written to the spool, for which
 * it holds room in the spool from the start. On close() the sink keeps sending for up to
 * `closeTimeoutMs`, then writes what is left to the spool, which the next start sends first.
 */
export class DeliverySink implements RecordSink {
  readonly #transport: Transport
  readonly #spoolDir: string
  readonly #spoolMax: number
  readonly #lingerMs: number
  readonly #maxBatchBytes: number
  readonly #maxBuffered: number
  readonly #spillBytes: number
  readonly #closeTimeoutMs: number
  readonly #opts: DeliverySinkOptions
  readonly #factory = new EnvelopeFactory()
  readonly #ledger: DeliveryLedger
  readonly #health: DeliveryHealth

  // Records in memory, oldest first, each tagged with its writeBatch batch (if any).
  readonly #queue = new MemoryQueue<Group>()

  #spool: Spool | undefined
  // Spool bytes promised: writeBatch batches admitted, and appends under way.
  #reserved = 0
  #appending = 0
  #isSpooling = false
  #waiters: Waiter[] = []

  #sending: Promise<void> | undefined
  #spilling: Promise<void> | undefined
  // The batch in flight when it came from memory (close() copies it to the spool).
  #inFlight: Taken<Group> | undefined
  #timer: NodeJS.Timeout | undefined
  // After a send refused as too large, sends take at most this many records until one succeeds.
  #batchLimit = Number.POSITIVE_INFINITY

  #accepted = 0
  #isClosed = false
  #isStopped = false
  #closing: Promise<void> | undefined
  #started: Promise<void>
  #adopting: Promise<void> = Promise.resolve()
  readonly #quarantineFile: string

  constructor(opts: DeliverySinkOptions) {
    this.#opts = opts
    this.#transport = opts.transport
    this.#spoolDir = opts.spoolDir
    this.#spoolMax = opts.spoolMaxBytes
    this.#lingerMs = opts.lingerMs
    this.#maxBatchBytes = opts.maxBatchBytes
    this.#maxBuffered = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
    this.#spillBytes = opts.spillBytes ?? Math.max(4 * opts.maxBatchBytes, 4 * 1024 * 1024)
    this.#closeTimeoutMs = opts.closeTimeoutMs
    this.#ledger = new DeliveryLedger(opts)
    this.#health = new DeliveryHealth(opts)
    this.#quarantineFile = opts.quarantineFile ?? join(opts.spoolDir, 'quarantine.jsonl')
    this.#started = this.#start()
  }

  /** Resolves once the spool is open (records from an earlier run are then on their way). */
  get started(): Promise<void> {
    return this.#started
  }

  /** Queues one record; never blocks, never throws. False when it was dropped. */
  write(record: object): boolean {
    if (this.#isClosed) return this.#ledger.drop('closed', 1)
    const env = this.#envelope(record)
    if (env === undefined) return this.#ledger.drop('unserializable', 1)
    if (this.#queue.bytes + env.bytes > this.#maxBuffered) return this.#ledger.drop('buffer_full', 1)
    this.#queue.push(env, undefined)
    this.#accepted++
    this.#kick()
    return true
  }

  /**
   * Takes every record or none: resolves true once each is acknowledged by the sink or written to
   * the spool; false when there was no room (in memory, or held in the spool) within `timeoutMs`,
   * the sink is closed, or a record is not serializable.
   */
  async writeBatch(records: Iterable<object>, opts: WriteBatchOptions = {}): Promise<boolean> {
    if (this.#isClosed) return false
    const envelopes: Envelope[] = []
    let bytes = 0
    for (const record of records) {
      const env = this.#envelope(record)
      if (env === undefined) return false
      envelopes.push(env)
      bytes += env.bytes
    }
    if (envelopes.length === 0) return true
    const timeoutMs = opts.timeoutMs ?? 0
    return new Promise((resolve) => {
      const waiter: Waiter = { envelopes, bytes, timeoutMs, resolve, timer: undefined }
      if (this.#waiters.length === 0 && this.#canAdmit(waiter)) {
        this.#admit(waiter)
        return
      }
      if (!(timeoutMs > 0)) {
        resolve(false)
        return
      }
      waiter.timer = setTimeout(() => this.#giveUp(waiter), timeoutMs)
      this.#waiters.push(waiter)
    })
  }

  /** Resolves when every record accepted before the call is acknowledged by the sink or dropped. */
  flush(): Promise<void> {
    return this.#ledger.flush(this.#accepted)
  }

  /** Nothing to reopen: records are not in a file of ours. */
  reopen(): Promise<void> {
    return Promise.resolve()
  }

  /** Stops accepting, sends for up to closeTimeoutMs, then leaves the rest in the spool. Never rejects. */
  close(): Promise<void> {
    this.#isClosed = true
    this.#closing ??= this.#finish()
    return this.#closing
  }

  status(): DeliveryStatus {
    return {
      sink: this.#transport.name,
      destination: this.#transport.destination,
      state: this.#spool === undefined ? 'starting' : this.#isSpooling ? 'spooling' : 'delivering',
      reachable: this.#health.isReachable,
      spooled_bytes: this.#spool?.bytes ?? 0,
      last_error: this.#health.lastError,
      dropped: this.#ledger.dropped,
    }
  }

  /** `buffered`: records accepted and held in memory, in neither the sink nor the spool yet. */
  stats(): { written: number; dropped: number; quarantined: number; buffered: number; spooledBytes: number } {
    return {
      written: this.#ledger.written,
      dropped: this.#ledger.dropped,
      quarantined: this.#ledger.quarantined,
      buffered: this.#queue.length,
      spooledBytes: this.#spool?.bytes ?? 0,
    }
  }

  #envelope(record: object): Envelope | undefined {
    try {
      return this.#factory.make(record)
    } catch (err) {
      this.#opts.onError?.(err)
      return undefined
    }
  }

  async #start(): Promise<void> {
    this.#spool = await openOwnSpool(this.#spoolDir, this.#spoolMax, this.#opts, this.#health, () => this.#isStopped)
    const spool = this.#spool
    if (spool === undefined) return
    if (this.#isStopped) {
      await spool.close()
      return
    }
    this.#isSpooling = !spool.isEmpty
    this.#reportSpooled()
    // Connecting is best effort: a broker that is down now is retried by every send.
    this.#transport.connect().then(() => this.#health.reachable(), (err: unknown) => this.#health.failed(err))
    this.#admitWaiters()
    this.#kick()
    this.#adopting = adoptAll({
      spool,
      spoolMax: this.#spoolMax,
      maxBatchBytes: this.#maxBatchBytes,
      opts: this.#opts,
      isStopped: () => this.#isStopped,
      promisedBytes: () => this.#appending + this.#reserved,
      addAppending: (bytes) => { this.#appending += bytes },
      moved: () => {
        this.#isSpooling = true
        this.#reportSpooled()
        this.#kick()
      },
    })
  }

  #kick(): void {
    if (this.#isStopped || this.#spool === undefined) return
    if (this.#spilling === undefined && this.#needsSpill()) this.#spilling = this.#spill().finally(() => { this.#spilling = undefined; this.#kick() })
    if (this.#sending === undefined && this.#timer === undefined) this.#sending = this.#send().finally(() => { this.#sending = undefined })
  }

  #needsSpill(): boolean {
    if (this.#queue.isEmpty) return false
    if (!this.#isSpooling && this.#queue.bytes > this.#spillBytes) this.#isSpooling = true
    return this.#isSpooling
  }

  #schedule(atMs: number): void {
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#kick()
    }, Math.max(0, atMs - performance.now()))
    this.#timer.unref()
  }

  /** The send loop: one send at a time, the spool before memory. */
  async #send(): Promise<void> {
    await Promise.resolve()
    const spool = this.#spool as Spool
    while (!this.#isStopped) {
      const now = performance.now()
      if (this.#health.retryAt > now) {
        this.#schedule(this.#health.retryAt)
        return
      }
      let read: SpoolRead | undefined
      let taken: Taken<Group> | undefined
      if (!spool.isEmpty) {
        try {
          read = await spool.read(this.#maxBatchBytes, this.#batchLimit)
        } catch (err) {
          this.#health.sinkError('spool', err)
          this.#health.backoff()
          continue
        }
      }
      if (read === undefined) {
        if (this.#isSpooling) {
          // Caught up: once nothing is on its way to the spool, records may go straight out again.
          if (!spool.isEmpty || this.#spilling !== undefined || this.#queue.bytes > this.#spillBytes) return
          this.#isSpooling = false
        }
        if (this.#queue.isEmpty) return
        const due = this.#queue.oldestAt + this.#lingerMs
        if (due > now && this.#queue.bytes < this.#maxBatchBytes && !this.#isClosed) {
          this.#schedule(due)
          return
        }
        taken = this.#queue.take(this.#maxBatchBytes, this.#batchLimit)
        this.#inFlight = taken
      }
      const envelopes = read?.envelopes ?? taken?.envelopes ?? []
      const startedAt = performance.now()
      let error: unknown
      try {
        await this.#transport.send(envelopes)
      } catch (err) {
        error = err
      }
      this.#inFlight = undefined
      // close() gave up waiting: a batch from memory was copied to the spool, one from the spool
      // stays there (sent again by the next start).
      if (this.#isStopped) return
      if (error === undefined) {
        this.#health.reachable()
        this.#health.resetDelay()
        this.#batchLimit = Number.POSITIVE_INFINITY
        this.#opts.onLatency?.((performance.now() - startedAt) / 1000)
        if (read !== undefined) await this.#ackSpool(read)
        else if (taken !== undefined) this.#delivered(taken.envelopes, taken.tags)
        continue
      }
      const permanent = error instanceof SinkError && error.isPermanent
      this.#health.failed(error)
      if (permanent && envelopes.length > 1) {
        // Too large as a batch: try halves (from the spool, in order) until each goes or is refused alone.
        this.#batchLimit = Math.ceil(envelopes.length / 2)
      } else if (permanent) {
        // Refused alone: set aside before it leaves the spool, so what is behind it goes on.
        const isKept = await quarantine(this.#quarantineFile, envelopes, error, this.#opts)
        if (read !== undefined) await spool.ack(read)
        this.#refused(envelopes, taken?.tags, isKept, error)
        continue
      } else {
        this.#health.backoff()
      }
      if (taken !== undefined) {
        this.#isSpooling = true
        await this.#toSpool(taken.envelopes, taken.tags, true)
        if (this.#spilling === undefined && this.#needsSpill()) this.#kick()
      }
    }
  }

  async #ackSpool(read: SpoolRead): Promise<void> {
    await (this.#spool as Spool).ack(read)
    let ours = 0
    for (const e of read.envelopes) if (this.#factory.owns(e.id)) ours++
    this.#ledger.wrote(read.envelopes.length)
    this.#ledger.settle(ours)
    this.#reportSpooled()
    this.#admitWaiters()
  }

  #delivered(envelopes: Envelope[], groups: Array<Group | undefined>): void {
    this.#ledger.wrote(envelopes.length)
    this.#reserved -= settleGroups(envelopes, groups, false)
    this.#ledger.settle(envelopes.length)
    this.#admitWaiters()
  }

  /**
   * Records the sink refuses for good (too large even alone, or their content refused): kept in
   * the quarantine file and counted, or dropped and counted when that file cannot be written.
   */
  #refused(envelopes: Envelope[], groups: Array<Group | undefined> | undefined, isKept: boolean, err: unknown): void {
    if (groups !== undefined) this.#reserved -= settleGroups(envelopes, groups, !isKept)
    let ours = 0
    for (const e of envelopes) if (groups !== undefined || this.#factory.owns(e.id)) ours++
    if (isKept) {
      this.#ledger.kept(envelopes.length, err)
    } else {
      this.#ledger.drop('rejected', envelopes.length)
    }
    this.#ledger.settle(ours)
    this.#reportSpooled()
  }

  /** The spill loop: while spooling, records in memory go to the end of the spool. */
  async #spill(): Promise<void> {
    await Promise.resolve()
    while (this.#needsSpill() && this.#spool !== undefined) {
      const { envelopes, tags } = this.#queue.take(SPILL_CHUNK_BYTES, Number.POSITIVE_INFINITY)
      if (!await this.#toSpool(envelopes, tags, false)) {
        // The disk refused: the records wait in memory, and the spool is tried again after a pause.
        await new Promise((resolve) => setTimeout(resolve, this.#health.retryDelay).unref())
        if (this.#isStopped) return
      }
    }
  }

  /**
   * Writes records to the spool (in front of it when `isFront`: a batch that failed after later
   * records were spooled). Records without room are dropped, except writeBatch records, whose room
   * is held. False when the disk failed; the records are then back in memory.
   */
  async #toSpool(envelopes: Envelope[], groups: Array<Group | undefined>, isFront: boolean): Promise<boolean> {
    const spool = this.#spool as Spool
    const keep: Envelope[] = []
    const keepGroups: Array<Group | undefined> = []
    let bytes = 0
    let dropped = 0
    let committed = spool.bytes + this.#appending + this.#reserved
    for (let i = 0; i < envelopes.length; i++) {
      const e = envelopes[i] as Envelope
      const g = groups[i]
      if (g === undefined) {
        if (committed + e.bytes > this.#spoolMax) {
          dropped++
          continue
        }
        committed += e.bytes
      }
      keep.push(e)
      keepGroups.push(g)
      bytes += e.bytes
    }
    if (dropped > 0) {
      this.#ledger.drop('spool_full', dropped)
      this.#ledger.settle(dropped)
    }
    if (keep.length === 0) return true
    this.#appending += bytes
    try {
      if (isFront) await spool.prepend(keep)
      else await spool.append(keep)
    } catch (err) {
      this.#appending -= bytes
      this.#health.sinkError('spool', err)
      this.#health.noteError(`cannot write the spool: ${(err as Error).message}`)
      if (this.#isStopped) {
        this.#ledger.drop('io_error', keep.length)
        this.#reserved -= settleGroups(keep, keepGroups, true)
        this.#ledger.settle(keep.length)
        return false
      }
      this.#queue.untake(keep, keepGroups)
      return false
    }
    this.#appending -= bytes
    this.#reserved -= settleGroups(keep, keepGroups, false)
    this.#reportSpooled()
    return true
  }

  #canAdmit(w: Waiter): boolean {
    const spool = this.#spool
    if (spool === undefined || this.#isClosed) return false
    const memoryOk = this.#queue.isEmpty || this.#queue.bytes + w.bytes <= this.#maxBuffered
    return memoryOk && spool.bytes + this.#appending + this.#reserved + w.bytes <= this.#spoolMax
  }

  #admit(w: Waiter): void {
    const group: Group = { left: w.envelopes.length, reserved: w.bytes, isRefused: false, resolve: w.resolve, timer: undefined }
    this.#reserved += w.bytes
    for (const e of w.envelopes) this.#queue.push(e, group)
    this.#accepted += w.envelopes.length
    // Not in the sink by the caller's deadline: the sink is slow, so spool instead of waiting on it.
    group.timer = setTimeout(() => {
      if (group.left > 0 && !this.#isSpooling) {
        this.#isSpooling = true
        this.#kick()
      }
    }, Math.max(1, w.timeoutMs))
    group.timer.unref()
    this.#kick()
  }

  #giveUp(w: Waiter): void {
    const i = this.#waiters.indexOf(w)
    if (i < 0) return
    this.#waiters.splice(i, 1)
    w.resolve(false)
    this.#admitWaiters()
  }

  #admitWaiters(): void {
    for (let w = this.#waiters[0]; w !== undefined && this.#canAdmit(w); w = this.#waiters[0]) {
      this.#waiters.shift()
      clearTimeout(w.timer)
      this.#admit(w)
    }
  }

  #reportSpooled(): void {
    try {
      this.#opts.onSpooled?.(this.#spool?.bytes ?? 0)
    } catch {
      // A metrics callback must not break recording.
    }
  }

  async #finish(): Promise<void> {
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer)
      w.resolve(false)
    }
    // Keep sending (now without linger) until everything is out or the time is up.
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, this.#closeTimeoutMs).unref())
    // A retry waiting out its backoff would waste the time left: try now.
    this.#health.retryNow()
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#kick()
    await Promise.race([deadline, this.#started.catch(() => {})])
    await Promise.race([deadline, this.#idle()])
    this.#isStopped = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    // An adoption under way stops between two batches, before our spool closes under it.
    await this.#adopting
    const spool = this.#spool
    if (spool !== undefined) {
      await this.#spilling
      // A send still under way may yet succeed; its records go to the spool regardless (a duplicate at worst).
      const flight = this.#inFlight
      this.#inFlight = undefined
      if (flight !== undefined) await this.#toSpool(flight.envelopes, flight.tags, true)
      const rest = this.#queue.take(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY)
      await this.#toSpool(rest.envelopes, rest.tags, false)
      await spool.close()
    }
    // Whatever could not be kept is settled, so no flush() waits forever.
    this.#ledger.settle(Math.max(0, this.#accepted - this.#ledger.settled))
    this.#ledger.stop()
    await Promise.race([this.#transport.close(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
  }

  /** Resolves when memory and the spool are empty and no send is under way. */
  async #idle(): Promise<void> {
    while (!this.#isStopped) {
      const spool = this.#spool
      if (spool !== undefined && spool.isEmpty && this.#queue.isEmpty && this.#sending === undefined && this.#spilling === undefined) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
}
