import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { readRecords, recordFiles } from '../record/index.js'
import type { SkippedLine } from '../record/index.js'
import { readKafkaRecords } from '../record/kafka-reader.js'
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import {
  DIALECT_NAMES,
  ExperimentAccumulator,
  ReportAccumulator,
  RESERVOIR_SIZE,
  TotalsAccumulator,
  asTotalsRow,
  formatJson,
  formatText,
  reductionSql,
} from '../report/index.js'
import type { DialectName } from '../report/index.js'
import type { Report } from '../report/index.js'
import type { Config } from '../config/index.js'
import type { Io } from './run.js'

export const REPORT_USAGE = `usage: modelsplit report FILE... [--config FILE] [--json] [--progress]

Summarises prediction record files per route: the A/B split by primary model and every
(primary, shadow) pair. A FILE that is the base of a rotated set (FILE.1, FILE.2, ...) is read
with its rotated siblings, oldest first. Unreadable lines (e.g. a truncated last line) are
skipped and counted on stderr; records of other types are ignored.

  requests        prediction records (for a pair: those where the shadow ran beside the primary)
  error           a side errs when its status is 0 or >= 500, or its error field is set (no
                  answer: timeout, refused, reset); error rate = errors / requests
  compared        comparisons made; comparison errors are those recorded as {"error": ...}
  agreement       agree / compared, with a 95% Wilson score interval
  abs_diff_max    mean and p99 of comparison.abs_diff_max over comparisons where it is a number
  p50/p99         latency_ms quantiles, nearest rank (value at rank ceil(q*n) of the sorted
                  values); exact up to ${RESERVOIR_SIZE} values per series, beyond that estimated
                  from a seeded uniform sample (reservoir) of ${RESERVOIR_SIZE}
  share           the primary's requests / the route's requests

options:
  --config FILE   the router's config: adds the A/B statistics of every route with metrics
                  (as /admin/experiments, over all records read: outcome records against
                  prediction records assigned by hash)
  --json          print one JSON document (snake_case keys) instead of tables
  --progress      show progress on stderr even when it is not a terminal
  -h, --help      show this help

exit codes: 0 ok, 1 a file could not be read, 2 usage
`

export const REPORT_KAFKA_USAGE = `usage: modelsplit report --kafka BROKERS --topic T [--from-beginning | --since ISO_TIME]
                        [--config FILE] [--json] [--progress]

Reads the records a Kafka sink wrote to topic T (BROKERS: host:port[,host:port...]) as the topic
stands when reading starts, from the beginning (the default) or from the first message the broker
stamped at or after ISO_TIME, and prints the same report as over files. A message whose ce_id was
read before (an at-least-once retry) is counted once.
`

export const REPORT_TOTALS_USAGE = `usage: modelsplit report --config FILE --sql ${DIALECT_NAMES.join('|')}
       modelsplit report --config FILE --totals FILE|- [--json]
       modelsplit report --config FILE --clickhouse URL [--json]

The experiment at scale (README "At scale"): --sql prints the reduction of the config's routes
as one SQL query for an engine (input: a relation ms_lines(line, ord, event_id) and a function
ms_unit_hash); --totals reads the rows that query returned (JSON lines; - for stdin) and prints
the same experiments as --config over the records themselves. --clickhouse runs the reduction on
a ClickHouse server (HTTP interface; deploy/clickhouse/schema.sql's tables, database modelsplit)
and prints the experiments from its rows.
`

export interface ReportOptions {
  readonly json: boolean
  /** Progress line on stderr; default: when stderr is a TTY. */
  readonly progress?: boolean
  /** The router config: its routes' metrics, control and weights turn outcome records into A/B statistics. */
  readonly config?: Config
}

/** `modelsplit report`: reads record files (with rotated siblings) and prints per-route tables or JSON. */
export async function reportCommand(files: readonly string[], opts: ReportOptions, io: Io): Promise<number> {
  const paths = await resolveFiles(files, io)
  if (paths === undefined) return 1

  const progress = (opts.progress ?? (io.err as { isTTY?: boolean }).isTTY === true) ? new Progress(io.err) : undefined
  const skips: SkippedLine[] = []
  const reader = readRecords(paths, {
    onProgress: progress?.update,
    onSkip: (info) => { if (skips.length < 3) skips.push(info) },
  })
  const doc = await summarise(reader, opts, io, progress)
  if (doc === undefined) return 1
  const where = skips.map((s) => `${s.path}:${s.line} ${s.reason}`).join(', ')
  io.err.write(`modelsplit report: read ${reader.read} record(s) from ${paths.length} file(s); ${reader.skipped} line(s) skipped` +
    (reader.skipped > 0 ? ` (${where}${reader.skipped > skips.length ? ', ...' : ''})` : '') + '\n')
  io.out.write(opts.json ? formatJson({ files: paths, skipped_lines: reader.skipped, ...doc }) : formatText({ files: paths, skipped_lines: reader.skipped, ...doc }))
  return 0
}

/** `modelsplit report --kafka`: the same report over the records of a topic. */
export async function reportKafkaCommand(source: { brokers: readonly string[]; topic: string; since?: Date }, opts: ReportOptions, io: Io): Promise<number> {
  const progress = (opts.progress ?? (io.err as { isTTY?: boolean }).isTTY === true) ? new Progress(io.err, 'messages') : undefined
  const reader = readKafkaRecords({ ...source, onProgress: progress?.update })
  const doc = await summarise(reader, opts, io, progress)
  if (doc === undefined) return 1
  const from = `kafka ${source.brokers.join(',')} topic ${source.topic}`
  io.err.write(`modelsplit report: read ${reader.read} record(s) from ${from}${source.since !== undefined ? ` since ${source.since.toISOString()}` : ''}; ` +
    `${reader.skipped} message(s) skipped, ${reader.duplicates} duplicate(s) counted once\n`)
  const full = { files: [], source: from, skipped_lines: reader.skipped, duplicates: reader.duplicates, ...doc }
  io.out.write(opts.json ? formatJson(full) : formatText(full))
  return 0
}

/** Runs every record through the report (and, with a config, the experiments); undefined after saying why reading failed. */
async function summarise(reader: AsyncIterable<Record<string, unknown>>, opts: ReportOptions, io: Io, progress: Progress | undefined): Promise<Report & { experiments?: ReturnType<ExperimentAccumulator['result']> } | undefined> {
  const acc = new ReportAccumulator()
  const experiments = opts.config === undefined ? undefined : new ExperimentAccumulator(opts.config)
  try {
    for await (const record of reader) {
      acc.add(record)
      experiments?.add(record)
    }
  } catch (err) {
    progress?.end()
    io.err.write(`modelsplit report: cannot read ${describe(err)}\n`)
    return undefined
  }
  progress?.end()
  return { ...acc.result(), ...(experiments && opts.config ? { experiments: experiments.result(opts.config) } : {}) }
}

/** Every file to read, in order and once each; undefined (after saying why for each) when any FILE has none. */
async function resolveFiles(files: readonly string[], io: Io): Promise<string[] | undefined> {
  const seen = new Set<string>()
  const paths: string[] = []
  let ok = true
  for (const file of files) {
    let found: string[]
    try {
      found = await recordFiles(file)
    } catch (err) {
      io.err.write(`modelsplit report: cannot read ${file}: ${describe(err)}\n`)
      ok = false
      continue
    }
    if (found.length === 0) {
      const isDir = await stat(file).then((s) => s.isDirectory(), () => false)
      io.err.write(`modelsplit report: cannot read ${file}: ${isDir ? 'is a directory; give the record file' : 'no such file (nor rotated siblings ' + file + '.1, ...)'}\n`)
      ok = false
      continue
    }
    for (const p of found) {
      const key = resolve(p)
      if (seen.has(key)) continue
      seen.add(key)
      paths.push(p)
    }
  }
  return ok ? paths : undefined
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const path = (err as { path?: unknown }).path
    return typeof path === 'string' && !err.message.includes(path) ? `${path}: ${err.message}` : err.message
  }
  return String(err)
}

/** One line on stderr rewritten in place (`\r`) each time the whole percent changes; `end` adds the newline. */
class Progress {
  readonly #err: NodeJS.WritableStream
  readonly #unit: 'bytes' | 'messages'
  #last = -1

  constructor(err: NodeJS.WritableStream, unit: 'bytes' | 'messages' = 'bytes') {
    this.#err = err
    this.#unit = unit
  }

  readonly update = (bytesRead: number, totalBytes: number): void => {
    const percent = totalBytes > 0 ? Math.floor((bytesRead / totalBytes) * 100) : 100
    if (percent === this.#last) return
    this.#last = percent
    this.#err.write(`\rreading records: ${String(percent).padStart(3)}% of ${this.#unit === 'bytes' ? mib(totalBytes) : `${totalBytes} messages`}`)
  }

  end(): void {
    if (this.#last !== -1) this.#err.write('\n')
    this.#last = -1
  }
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`
}

/** `modelsplit report --sql DIALECT`: prints the reduction of the config's experiments. */
export function reportSqlCommand(config: Config, dialect: string, io: Io): number {
  if (!(DIALECT_NAMES as readonly string[]).includes(dialect)) {
    io.err.write(`modelsplit report: --sql ${dialect}: not a dialect this build writes; use one of ${DIALECT_NAMES.join(', ')}\n`)
    return 2
  }
  io.out.write(reductionSql(config, dialect as DialectName) + '\n')
  return 0
}

/** `modelsplit report --totals FILE`: the experiments from the rows the reduction returned. */
export async function reportTotalsCommand(file: string, opts: ReportOptions & { config: Config }, io: Io, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  const name = file === '-' ? 'stdin' : file
  let input: NodeJS.ReadableStream
  try {
    input = file === '-' ? stdin : createReadStream(file, { encoding: 'utf8' })
  } catch (err) {
    io.err.write(`modelsplit report: cannot read ${describe(err)}\n`)
    return 1
  }
  return await totalsFrom(input, name, `totals ${name}`, opts, io)
}

/**
 * `modelsplit report --clickhouse URL`: runs the reduction on a ClickHouse server through its HTTP
 * interface (the tables of deploy/clickhouse/schema.sql; database `modelsplit` unless the URL's
 * `database` parameter says otherwise; credentials in the URL go as X-ClickHouse-User/-Key) and
 * prints the experiments from the rows it returns.
 */
export async function reportClickhouseCommand(url: string, opts: ReportOptions & { config: Config }, io: Io): Promise<number> {
  let target: URL
  try {
    target = new URL(url)
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new TypeError(`${target.protocol} is not http: or https:`)
  } catch (err) {
    io.err.write(`modelsplit report: --clickhouse ${url}: not an HTTP URL (${describe(err)}); give the server's HTTP interface, e.g. http://clickhouse:8123\n`)
    return 2
  }
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' }
  if (target.username !== '') headers['x-clickhouse-user'] = decodeURIComponent(target.username)
  if (target.password !== '') headers['x-clickhouse-key'] = decodeURIComponent(target.password)
  target.username = ''
  target.password = ''
  if (!target.searchParams.has('database')) target.searchParams.set('database', 'modelsplit')
  target.searchParams.set('default_format', 'JSONEachRow')
  const where = `clickhouse ${target.origin}`
  let res: Response
  try {
    res = await fetch(target, { method: 'POST', headers, body: reductionSql(opts.config, 'clickhouse') })
  } catch (err) {
    io.err.write(`modelsplit report: ${where}: ${describe((err as { cause?: unknown }).cause ?? err)}\n`)
    return 1
  }
  if (!res.ok || res.body === null) {
    const text = (await res.text()).trim().split('\n')[0] ?? ''
    io.err.write(`modelsplit report: ${where} answered ${res.status}: ${text.slice(0, 500)}\n`)
    return 1
  }
  return await totalsFrom(Readable.fromWeb(res.body as WebReadableStream), where, where, opts, io)
}

/** The experiments from the reduction's rows, one JSON object a line; exit 1 naming the first bad line. */
async function totalsFrom(input: NodeJS.ReadableStream, name: string, source: string, opts: ReportOptions & { config: Config }, io: Io): Promise<number> {
  const acc = new TotalsAccumulator()
  try {
    let line = 0
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      line++
      if (text.trim() === '') continue
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch {
        io.err.write(`modelsplit report: ${name}:${line}: not JSON; give the rows of the reduction (report --sql) as JSON lines\n`)
        return 1
      }
      const row = asTotalsRow(parsed)
      if (typeof row === 'string') {
        io.err.write(`modelsplit report: ${name}:${line}: ${row}\n`)
        return 1
      }
      acc.add(row)
    }
  } catch (err) {
    io.err.write(`modelsplit report: cannot read ${describe(err)}\n`)
    return 1
  }
  const experiments = acc.result(opts.config)
  io.err.write(`modelsplit report: read ${acc.rows} total row(s) from ${name}\n`)
  const doc = { source, totals_rows: acc.rows, experiments }
  io.out.write(opts.json ? JSON.stringify(doc, null, 2) + '\n' : formatText({
    files: [], source, skipped_lines: 0, records: { predictions: 0, other: 0, invalid: 0 },
    quantiles: { method: 'nearest-rank', reservoir_size: RESERVOIR_SIZE, exact: true }, routes: [], experiments,
  }))
  return 0
}
