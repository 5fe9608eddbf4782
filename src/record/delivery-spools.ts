// The spool directories a remote sink owns: its own, opened once whoever holds its lock lets go,
// and those of earlier processes (workers that died, or a larger --workers), which it adopts:
// drains into its own spool, in order, and removes once empty.
import { rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { LOCK_RETRY_MS, type DeliverySinkOptions } from './delivery-options.js'
import type { DeliveryHealth } from './delivery-health.js'
import { Spool, SpoolLockedError } from './spool.js'

/** Opens the sink's own spool, waiting while another sink holds its lock; undefined if the sink stopped first. */
export async function openOwnSpool(
  dir: string,
  spoolMax: number,
  opts: Pick<DeliverySinkOptions, 'onError'>,
  health: DeliveryHealth,
  isStopped: () => boolean,
): Promise<Spool | undefined> {
  let said = false
  while (!isStopped()) {
    try {
      return await Spool.open(dir, {
        segmentBytes: Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(spoolMax / 16))),
        onCorrupt: (lines) => opts.onError?.(new Error(`${lines} line(s) of the spool in ${dir} were cut short or corrupt; skipped`)),
      })
    } catch (err) {
      // Another sink of this process (a reload) lets go when it closes; another process may never.
      if (!(err instanceof SpoolLockedError && err.pid === process.pid) && !said) opts.onError?.(err)
      said = true
      health.noteError((err as Error).message)
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS).unref())
    }
  }
  return undefined
}

/** What adopting needs of the sink that takes the records: built once, when its spool opens. */
export interface AdoptionHost {
  /** The sink's own spool, open. */
  readonly spool: Spool
  readonly spoolMax: number
  readonly maxBatchBytes: number
  readonly opts: Pick<DeliverySinkOptions, 'adopt' | 'onAdopted' | 'onError'>
  /** close() gave up waiting: adoption stops between two batches. */
  isStopped(): boolean
  /** Spool bytes promised beyond what the spool holds: appends under way and writeBatch batches admitted. */
  promisedBytes(): number
  /** Counts bytes as being appended to the spool (negative once the append is over). */
  addAppending(bytes: number): void
  /** Records were moved into the sink's spool: it is spooling, and has them to send. */
  moved(): void
}

/** Drains, one after another, the spool directories `opts.adopt` names into the sink's own spool. */
export async function adoptAll(host: AdoptionHost): Promise<void> {
  let dirs: readonly string[]
  try {
    dirs = (await host.opts.adopt?.()) ?? []
  } catch (err) {
    host.opts.onError?.(err)
    return
  }
  for (const dir of dirs) {
    if (host.isStopped()) return
    await adopt(dir, host)
  }
}

/** Moves the records of an earlier process's spool directory into ours, then removes the directory. */
async function adopt(dir: string, host: AdoptionHost): Promise<void> {
  let orphan: Spool
  try {
    orphan = await Spool.open(dir, { segmentBytes: 1024 * 1024 })
  } catch (err) {
    // A live process holds it: that one drains it.
    if (!(err instanceof SpoolLockedError)) host.opts.onError?.(err)
    return
  }
  const own = host.spool
  let moved = 0
  try {
    while (!host.isStopped()) {
      const read = await orphan.read(host.maxBatchBytes, Number.POSITIVE_INFINITY)
      if (read === undefined) break
      let bytes = 0
      for (const e of read.envelopes) bytes += e.bytes
      // These were acknowledged to someone: never dropped for room, they wait until the sink makes some.
      if (!own.isEmpty && own.bytes + host.promisedBytes() + bytes > host.spoolMax) {
        await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS).unref())
        continue
      }
      host.addAppending(bytes)
      try {
        await own.append(read.envelopes)
      } finally {
        host.addAppending(-bytes)
      }
      // In ours before it leaves theirs: a crash in between sends it twice, never not at all.
      await orphan.ack(read)
      moved += read.envelopes.length
      host.moved()
    }
  } catch (err) {
    host.opts.onError?.(err)
  }
  const isEmpty = orphan.isEmpty
  await orphan.close()
  if (isEmpty) {
    // A quarantine file (or anything else an operator put there) keeps the directory.
    await unlink(join(dir, 'ack')).catch(() => {})
    await rmdir(dir).catch(() => {})
  }
  if (moved > 0) host.opts.onAdopted?.(dir, moved)
}
