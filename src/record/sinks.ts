import { readdir } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { RecordingConfig } from '../config/types.js'
import { DeliverySink, type DeliveryStatus } from './delivery.js'
import type { DropWarning } from './drop-warnings.js'
import type { ReopenReason } from './file.js'
import { HttpTransport } from './http-sink.js'
import { KafkaTransport } from './kafka.js'
import type { RecordSink } from './sink.js'
import type { Metrics } from '../metrics/index.js'
import type { SinkErrorReason } from './transport.js'
import { RecordWriter, type RecordResult } from './writer.js'

/** The few logger methods the sinks use (pino's signature). */
export interface SinkLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface OpenSinkOptions {
  /** The record file (a cluster worker's own, under --workers). */
  readonly filePath: string
  /** The spool directory (a cluster worker's own, under --workers). */
  readonly spoolPath: string
  /** How long close() keeps delivering before leaving the rest in the spool (shutdown_timeout_ms). */
  readonly closeTimeoutMs: number
  readonly metrics: Pick<Metrics, 'records' | 'recordFileReopened' | 'recordsSpooledBytes' | 'sinkErrors' | 'sinkLatency' | 'recordsQuarantined' | 'bufferedRecords'>
  readonly log: () => SinkLogger
}

/** The sink `recording` asks for: the JSONL file, or a Kafka topic or HTTP collector with a spool, wired to metrics and the log. */
export function openSink(recording: RecordingConfig, opts: OpenSinkOptions): RecordSink {
  const { metrics, log } = opts
  const onResult = (result: RecordResult, count: number): void => { metrics.records.inc({ result }, count) }
  const onDropWarning = (w: DropWarning): void => log().warn({ dropped: w.dropped, reasons: w.reasons }, `${w.dropped} records dropped in the last ${Math.round(w.sinceMs / 1000)} s (modelsplit_records_total{result="dropped"})`)
  if (recording.sink === 'file' || (recording.kafka === undefined && recording.http === undefined)) {
    const writer = new RecordWriter({
      path: opts.filePath, max_bytes: recording.max_bytes, keep: recording.keep, onResult, onDropWarning,
      onError: (err) => log().error({ err }, `cannot write records to ${recording.path}`),
      onReopen: (reason: ReopenReason) => metrics.recordFileReopened.inc({ reason }),
    })
    metrics.bufferedRecords = () => writer.stats().buffered
    return writer
  }
  const transport = recording.sink === 'kafka' && recording.kafka !== undefined ? new KafkaTransport(recording.kafka) : new HttpTransport(recording.http as NonNullable<RecordingConfig['http']>)
  const sink = transport.name
  const where = `${sink} ${transport.destination}`
  const delivery = new DeliverySink({
    transport,
    spoolDir: opts.spoolPath,
    spoolMaxBytes: recording.spool.max_bytes,
    lingerMs: recording.kafka?.linger_ms ?? 20,
    maxBatchBytes: recording.kafka?.max_batch_bytes ?? 1_048_576,
    closeTimeoutMs: opts.closeTimeoutMs,
    onResult,
    onDropWarning,
    onError: (err) => log().error({ err }, `records for ${where}: ${(err as Error).message}`),
    onSinkError: (reason: SinkErrorReason) => metrics.sinkErrors.inc({ sink, reason }),
    onLatency: (seconds) => metrics.sinkLatency.observe({ sink }, seconds),
    onSpooled: (bytes) => metrics.recordsSpooledBytes.set(bytes),
    onQuarantined: (count, err) => {
      metrics.recordsQuarantined.inc({ sink }, count)
      log().warn({ err, count }, `${where} refused ${count} record(s) for good; kept in ${join(opts.spoolPath, 'quarantine.jsonl')} (modelsplit_records_quarantined_total)`)
    },
    adopt: () => orphanSpools(opts.spoolPath),
    onAdopted: (dir, count) => log().info({ dir, count }, `${count} records left in ${dir} by an earlier process moved to ${opts.spoolPath}`),
    onReachable: (ok, err) => {
      if (ok) log().info({}, `records are delivered to ${where} again; the spool is being sent`)
      else log().warn({ err }, `cannot deliver records to ${where}: keeping them in the spool ${opts.spoolPath} (modelsplit_records_spooled_bytes)`)
    },
  })
  metrics.bufferedRecords = () => delivery.stats().buffered
  return delivery
}

// Under `serve --workers N` a worker keeps slot k of N for as long as the primary runs: a
// replacement takes the slot (and the spool directory `w<k>`) of the worker it replaces.
let workerSlot: { readonly slot: number; readonly slots: number } | undefined

/** This process is worker `slot` (1…`slots`) of `serve --workers`: decides which spool directories it drains. */
export function setWorkerSlot(slot: number, slots: number): void {
  workerSlot = { slot, slots }
}

/**
 * Spool directories no running process owns, for the sink at `spoolPath` to drain: a single
 * router takes every `w<k>` under its spool (left by an earlier `--workers` run); under
 * `--workers N` the worker in slot 1 takes `w<k>` for k > N (a run with more workers, or the
 * numbering of an older release). Slots 1…N belong to their workers.
 */
async function orphanSpools(spoolPath: string): Promise<string[]> {
  const root = workerSlot === undefined ? spoolPath : dirname(spoolPath)
  if (workerSlot !== undefined && (workerSlot.slot !== 1 || basename(spoolPath) !== `w${workerSlot.slot}`)) return []
  const entries = await readdir(root, { withFileTypes: true }).catch(() => [])
  const slots = workerSlot?.slots ?? 0
  return entries
    .filter((e) => e.isDirectory() && /^w[0-9]+$/.test(e.name) && Number(e.name.slice(1)) > slots)
    .map((e) => join(root, e.name))
    .sort((a, b) => Number(basename(a).slice(1)) - Number(basename(b).slice(1)))
}

/** Whether a sink opened for `a` serves `b` as it is (a reload that changes nothing it uses keeps it). */
export function sameSink(a: RecordingConfig, b: RecordingConfig): boolean {
  if (a.sink !== b.sink) return false
  if (a.sink === 'file') return a.path === b.path && a.max_bytes === b.max_bytes && a.keep === b.keep
  return JSON.stringify([a.kafka, a.http, a.spool]) === JSON.stringify([b.kafka, b.http, b.spool])
}

/** What /readyz says about a remote sink; undefined for the file. */
export function sinkStatus(sink: RecordSink | undefined): DeliveryStatus | undefined {
  return sink instanceof DeliverySink ? sink.status() : undefined
}
