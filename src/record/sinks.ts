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
  readonly metrics: Pick<Metrics, 'records' | 'recordFileReopened' | 'recordsSpooledBytes' | 'sinkErrors' | 'sinkLatency'>
  readonly log: () => SinkLogger
}

/** The sink `recording` asks for: the JSONL file, or a Kafka topic or HTTP collector with a spool, wired to metrics and the log. */
export function openSink(recording: RecordingConfig, opts: OpenSinkOptions): RecordSink {
  const { metrics, log } = opts
  const onResult = (result: RecordResult, count: number): void => { metrics.records.inc({ result }, count) }
  const onDropWarning = (w: DropWarning): void => log().warn({ dropped: w.dropped, reasons: w.reasons }, `${w.dropped} records dropped in the last ${Math.round(w.sinceMs / 1000)} s (modelsplit_records_total{result="dropped"})`)
  if (recording.sink === 'file' || (recording.kafka === undefined && recording.http === undefined)) {
    return new RecordWriter({
      path: opts.filePath, max_bytes: recording.max_bytes, keep: recording.keep, onResult, onDropWarning,
      onError: (err) => log().error({ err }, `cannot write records to ${recording.path}`),
      onReopen: (reason: ReopenReason) => metrics.recordFileReopened.inc({ reason }),
    })
  }
  const transport = recording.sink === 'kafka' && recording.kafka !== undefined ? new KafkaTransport(recording.kafka) : new HttpTransport(recording.http as NonNullable<RecordingConfig['http']>)
  const sink = transport.name
  const where = `${sink} ${transport.destination}`
  return new DeliverySink({
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
    onReachable: (ok, err) => {
      if (ok) log().info({}, `records are delivered to ${where} again; the spool is being sent`)
      else log().warn({ err }, `cannot deliver records to ${where}: keeping them in the spool ${opts.spoolPath} (modelsplit_records_spooled_bytes)`)
    },
  })
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
