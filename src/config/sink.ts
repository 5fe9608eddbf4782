// The record sink keys of `recording` (sink, kafka, http, spool): read and checked like the rest
// of the document, each problem with its key path; files they name are checked once the config
// file's directory is known (checkSinkFiles).
import { RecordDirUnusableError } from '../errors.js'
import { accessSync, constants, readFileSync, statSync, statfsSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { describe, type Checker, type KeyPath, type RawProblem } from './check.js'
import type { HttpSinkConfig, KafkaCompression, KafkaSinkConfig, RecordingConfig, SinkKind, SpoolConfig } from './types.js'

export const SINKS: readonly SinkKind[] = ['file', 'kafka', 'http']
const KAFKA_KEYS = ['brokers', 'topic', 'acks', 'compression', 'linger_ms', 'max_batch_bytes', 'client_id', 'sasl', 'tls'] as const
const SASL_KEYS = ['mechanism', 'username', 'password_file'] as const
const TLS_KEYS = ['ca_file', 'cert_file', 'key_file'] as const
const HTTP_KEYS = ['url', 'format', 'headers_file', 'timeout_ms'] as const
const SPOOL_KEYS = ['path', 'max_bytes'] as const
const COMPRESSIONS: readonly KafkaCompression[] = ['none', 'gzip', 'lz4']
const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const
/** Node's timers take at most 2^31 − 1 ms. */
const MAX_TIMER_MS = 2_147_483_647

export const SINK_DEFAULTS = {
  kafka: { acks: 'all' as const, compression: 'lz4' as const, linger_ms: 20, max_batch_bytes: 1_048_576, client_id: 'modelsplit' },
  http: { format: 'cloudevents-batch' as const, timeout_ms: 5000 },
  spool: { path: './data/spool', max_bytes: 1_073_741_824 },
} as const

/** The sink keys of a `recording` mapping, or undefined when one of them is wrong (each problem recorded). */
export function readSinkKeys(c: Checker, o: Record<string, unknown>): { sink: SinkKind; kafka?: KafkaSinkConfig; http?: HttpSinkConfig; spool: SpoolConfig } | undefined {
  const before = c.problems.length
  const sink = c.oneOf(o.sink, ['recording', 'sink'], SINKS, 'file')
  const hasKafka = o.kafka !== undefined && o.kafka !== null
  const hasHttp = o.http !== undefined && o.http !== null
  if (sink === 'kafka' && !hasKafka) c.add(['recording', 'kafka'], 'is required with sink: kafka: give at least brokers and topic, e.g. { brokers: [127.0.0.1:9092], topic: modelsplit-records }')
  if (sink === 'http' && !hasHttp) c.add(['recording', 'http'], 'is required with sink: http: give at least url, e.g. { url: http://collector:8080/records }')
  // A block for another sink than the one chosen is most likely a forgotten `sink:` line.
  if (hasKafka && sink !== 'kafka') c.add(['recording', 'kafka'], `is set but recording.sink is ${sink}: write sink: kafka to send records there, or remove the block`)
  if (hasHttp && sink !== 'http') c.add(['recording', 'http'], `is set but recording.sink is ${sink}: write sink: http to send records there, or remove the block`)
  const kafka = hasKafka ? readKafka(c, o.kafka, ['recording', 'kafka']) : undefined
  const http = hasHttp ? readHttp(c, o.http, ['recording', 'http']) : undefined
  const spool = readSpool(c, o.spool, ['recording', 'spool'])
  if (c.problems.length > before || spool === undefined) return undefined
  return { sink, ...(kafka !== undefined ? { kafka } : {}), ...(http !== undefined ? { http } : {}), spool }
}

/**
 * A broker address as `host:port`: a name or IPv4 address, or an IPv6 address in brackets
 * (`[::1]:9092`), and a port from 1 to 65535. Undefined when it is not one.
 */
export function parseBroker(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):([0-9]{1,5})$/.exec(value)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port < 1 || port > 65535) return undefined
  return { host: m[1] ?? m[2] ?? '', port }
}

function readKafka(c: Checker, value: unknown, path: KeyPath): KafkaSinkConfig | undefined {
  const o = c.object(value, path, KAFKA_KEYS, ['brokers', 'topic'])
  if (o === undefined) return undefined
  const d = SINK_DEFAULTS.kafka
  let brokers: string[] | undefined
  if (o.brokers !== undefined && o.brokers !== null) {
    const list = c.list(o.brokers, [...path, 'brokers'], 'host:port addresses such as [127.0.0.1:9092]')
    if (list !== undefined) {
      if (list.length === 0) c.add([...path, 'brokers'], 'must list at least one host:port, e.g. [127.0.0.1:9092]')
      brokers = []
      list.forEach((b, i) => {
        if (typeof b !== 'string' || parseBroker(b) === undefined) {
          c.add([...path, 'brokers', i], `must be host:port with a port from 1 to 65535 (an IPv6 address in brackets: [::1]:9092), got ${describe(b)}`)
          return
        }
        brokers?.push(b)
      })
    }
  }
  const topic = c.string(o.topic, [...path, 'topic'])
  // Kafka topic names: at most 249 of [a-zA-Z0-9._-] (Topic.java), and not . or ..
  if (topic !== undefined && (!/^[A-Za-z0-9._-]{1,249}$/.test(topic) || topic === '.' || topic === '..')) {
    c.add([...path, 'topic'], `must be a Kafka topic name (up to 249 of letters, digits, ".", "_", "-"), got ${JSON.stringify(topic)}`)
  }
  let acks: 'all' | 1 = d.acks
  if (o.acks !== undefined && o.acks !== null) {
    if (o.acks === 'all' || o.acks === -1) acks = 'all'
    else if (o.acks === 1) acks = 1
    else c.add([...path, 'acks'], `must be all (every in-sync replica, and the producer is idempotent) or 1 (the leader only), got ${describe(o.acks)}: with 0 nothing would acknowledge a record`)
  }
  let compression: KafkaCompression = d.compression
  if (o.compression !== undefined && o.compression !== null) {
    if (typeof o.compression === 'string' && (COMPRESSIONS as readonly string[]).includes(o.compression)) compression = o.compression as KafkaCompression
    else if (o.compression === 'zstd' || o.compression === 'snappy') c.add([...path, 'compression'], `${o.compression} is not supported by this build's Kafka client (kafkajs, pure JavaScript); use lz4 or gzip`)
    else c.add([...path, 'compression'], `must be one of ${COMPRESSIONS.join(', ')}, got ${describe(o.compression)}`)
  }
  const linger = c.number(o.linger_ms, [...path, 'linger_ms'], { min: 0, max: 60_000, integer: true, fallback: d.linger_ms })
  const maxBatch = c.number(o.max_batch_bytes, [...path, 'max_batch_bytes'], { min: 1024, max: 1_073_741_824, integer: true, fallback: d.max_batch_bytes })
  const clientId = c.string(o.client_id, [...path, 'client_id'], d.client_id)
  const sasl = o.sasl === undefined || o.sasl === null ? undefined : readSasl(c, o.sasl, [...path, 'sasl'])
  const tls = o.tls === undefined || o.tls === null ? undefined : readTls(c, o.tls, [...path, 'tls'])
  if (brokers === undefined || topic === undefined || linger === undefined || maxBatch === undefined || clientId === undefined) return undefined
  return {
    brokers, topic, acks, compression, linger_ms: linger, max_batch_bytes: maxBatch, client_id: clientId,
    ...(sasl !== undefined ? { sasl } : {}), ...(tls !== undefined ? { tls } : {}),
  }
}

function readSasl(c: Checker, value: unknown, path: KeyPath): KafkaSinkConfig['sasl'] {
  const o = c.object(value, path, SASL_KEYS, ['mechanism', 'username', 'password_file'])
  if (o === undefined) return undefined
  const mechanism = o.mechanism === undefined || o.mechanism === null ? undefined : c.oneOf(o.mechanism, [...path, 'mechanism'], SASL_MECHANISMS, 'scram-sha-512')
  const username = c.string(o.username, [...path, 'username'])
  const passwordFile = c.string(o.password_file, [...path, 'password_file'])
  if (mechanism === undefined || username === undefined || passwordFile === undefined) return undefined
  return { mechanism, username, password_file: passwordFile }
}

function readTls(c: Checker, value: unknown, path: KeyPath): KafkaSinkConfig['tls'] {
  const o = c.object(value, path, TLS_KEYS)
  if (o === undefined) return undefined
  const ca = c.string(o.ca_file, [...path, 'ca_file'])
  const cert = c.string(o.cert_file, [...path, 'cert_file'])
  const key = c.string(o.key_file, [...path, 'key_file'])
  if ((cert === undefined) !== (key === undefined)) {
    c.add([...path, cert === undefined ? 'cert_file' : 'key_file'], 'cert_file and key_file go together (a client certificate and its key)')
    return undefined
  }
  return { ...(ca !== undefined ? { ca_file: ca } : {}), ...(cert !== undefined ? { cert_file: cert } : {}), ...(key !== undefined ? { key_file: key } : {}) }
}

function readHttp(c: Checker, value: unknown, path: KeyPath): HttpSinkConfig | undefined {
  const o = c.object(value, path, HTTP_KEYS, ['url'])
  if (o === undefined) return undefined
  const d = SINK_DEFAULTS.http
  let url = c.string(o.url, [...path, 'url'])
  if (url !== undefined) {
    let parsed: URL | undefined
    try {
      parsed = new URL(url)
    } catch {
      parsed = undefined
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      c.add([...path, 'url'], `must be an absolute http:// or https:// URL such as "http://collector:8080/records", got ${JSON.stringify(url)}`)
      url = undefined
    }
  }
  const format = c.oneOf(o.format, [...path, 'format'], ['cloudevents-batch'] as const, d.format)
  const headersFile = c.string(o.headers_file, [...path, 'headers_file'])
  const timeout = c.number(o.timeout_ms, [...path, 'timeout_ms'], { min: 1, max: MAX_TIMER_MS, integer: true, fallback: d.timeout_ms })
  if (url === undefined || timeout === undefined) return undefined
  return { url, format, ...(headersFile !== undefined ? { headers_file: headersFile } : {}), timeout_ms: timeout }
}

function readSpool(c: Checker, value: unknown, path: KeyPath): SpoolConfig | undefined {
  const d = SINK_DEFAULTS.spool
  if (value === undefined || value === null) return d
  const o = c.object(value, path, SPOOL_KEYS)
  if (o === undefined) return undefined
  const p = c.string(o.path, [...path, 'path'], d.path)
  const maxBytes = c.number(o.max_bytes, [...path, 'max_bytes'], { min: 1_048_576, integer: true, fallback: d.max_bytes })
  if (p === undefined || maxBytes === undefined) return undefined
  return { path: p, max_bytes: maxBytes }
}

/** `recording` with its spool and sink files made absolute against `dir` (the config file's directory). */
export function resolveSinkPaths(recording: RecordingConfig, dir: string): RecordingConfig {
  const abs = (p: string): string => isAbsolute(p) ? p : resolve(dir, p)
  const kafka = recording.kafka
  const http = recording.http
  return {
    ...recording,
    spool: { ...recording.spool, path: abs(recording.spool.path) },
    ...(kafka !== undefined ? {
      kafka: {
        ...kafka,
        ...(kafka.sasl !== undefined ? { sasl: { ...kafka.sasl, password_file: abs(kafka.sasl.password_file) } } : {}),
        ...(kafka.tls !== undefined ? { tls: Object.fromEntries(Object.entries(kafka.tls).map(([k, v]) => [k, abs(v)])) } : {}),
      },
    } : {}),
    ...(http !== undefined && http.headers_file !== undefined ? { http: { ...http, headers_file: abs(http.headers_file) } } : {}),
  }
}

/**
 * Problems with the files the sink reads (secrets, certificates, headers): each must be a readable
 * file, and a headers file must hold `Name: value` lines. Nothing read is kept: the sink reads the
 * files again when it starts, so no secret ends up in the config `/admin/config` shows.
 */
export function checkSinkFiles(recording: RecordingConfig): RawProblem[] {
  const problems: RawProblem[] = []
  const files: Array<[KeyPath, string]> = []
  const kafka = recording.kafka
  if (recording.sink === 'kafka' && kafka !== undefined) {
    if (kafka.sasl !== undefined) files.push([['recording', 'kafka', 'sasl', 'password_file'], kafka.sasl.password_file])
    for (const [k, v] of Object.entries(kafka.tls ?? {})) files.push([['recording', 'kafka', 'tls', k], v])
  }
  // Where records are kept: the file's directory, or the spool of a remote sink.
  const isFile = recording.sink === 'file' || (recording.kafka === undefined && recording.http === undefined)
  const dir = isFile ? dirname(recording.path) : recording.spool.path
  const unusable = directoryProblem(dir)
  if (unusable !== undefined) problems.push({ path: isFile ? ['recording', 'path'] : ['recording', 'spool', 'path'], message: unusable })
  const headersFile = recording.sink === 'http' ? recording.http?.headers_file : undefined
  if (headersFile !== undefined) files.push([['recording', 'http', 'headers_file'], headersFile])
  for (const [path, file] of files) {
    try {
      if (!statSync(file).isFile()) throw Object.assign(new Error('not a file'), { code: 'not a regular file' })
      accessSync(file, constants.R_OK)
    } catch (err) {
      problems.push({ path, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the sink needs it to start` })
      continue
    }
    if (file === headersFile) {
      try {
        parseHeadersFile(readFileSync(file, 'utf8'))
      } catch (err) {
        problems.push({ path, message: `${file}: ${(err as Error).message}` })
      }
    }
  }
  return problems
}

// statfs(2) f_type of kernel file systems that hold no files of ours: proc, sysfs, cgroup, cgroup2,
// debugfs, securityfs, tracefs, bpf, devpts, pstore, configfs. Node 20's recursive mkdir loops
// forever on a missing directory under /proc, so such a path must never reach it.
const PSEUDO_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'], [0x62656572, 'sysfs'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'], [0x64626720, 'debugfs'],
  [0x73636673, 'securityfs'], [0x74726163, 'tracefs'], [0xcafe4a11, 'bpf'], [0x1cd1, 'devpts'], [0x6165676c, 'pstore'],
  [0x62656570, 'configfs'],
])

/** The nearest existing ancestor of `dir` (itself if it exists), or an error message; `isMissing` when it is not `dir`. */
function nearestExisting(dir: string): { path: string; isMissing: boolean } | { problem: string } {
  let p = resolve(dir)
  let isMissing = false
  for (;;) {
    let isDir: boolean
    try {
      isDir = statSync(p).isDirectory()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const parent = dirname(p)
      if ((code === 'ENOENT' || code === 'ENOTDIR') && parent !== p) {
        p = parent
        isMissing = true
        continue
      }
      return { problem: `cannot use ${dir} (${code ?? (err as Error).message})` }
    }
    if (!isDir) return { problem: `cannot use ${dir}: ${p} is a file, not a directory; name a directory on a disk, e.g. ./data` }
    return { path: p, isMissing }
  }
}

function kernelFileSystem(dir: string, existing: string): string | undefined {
  let fsType: number | undefined
  try {
    fsType = statfsSync(existing).type
  } catch {
    fsType = undefined
  }
  const name = fsType === undefined ? undefined : PSEUDO_FILE_SYSTEMS.get(fsType)
  return name === undefined ? undefined : `cannot keep records in ${dir}: ${existing} is on the kernel's ${name} file system; name a directory on a disk, e.g. ./data`
}

/**
 * Why records cannot be kept in directory `dir` (created if missing), or undefined when they can:
 * a file in the way, a kernel file system such as /proc, a read-only file system, or an existing
 * directory this process may not write. A missing directory under a writable one is fine (it is
 * created); one whose nearest existing parent this user cannot write is left to start-up, so that
 * `validate` of a deployment's config passes on a laptop.
 */
export function directoryProblem(dir: string): string | undefined {
  const found = nearestExisting(dir)
  if ('problem' in found) return found.problem
  const pseudo = kernelFileSystem(dir, found.path)
  if (pseudo !== undefined) return pseudo
  try {
    accessSync(found.path, constants.W_OK | constants.X_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EROFS') return `cannot keep records in ${dir}: ${found.path} is on a read-only file system; name a writable volume`
    if (!found.isMissing) return `cannot write to ${dir} (${code ?? (err as Error).message}): give this user write access or name another directory`
  }
  return undefined
}

/**
 * Throws when `dir` is on a kernel file system (/proc, /sys): call before a recursive mkdir, which
 * on Node 20 never returns for a missing directory under /proc (it spins a core and holds SIGTERM).
 */
export function assertNotKernelFileSystem(dir: string): void {
  const found = nearestExisting(dir)
  if ('problem' in found) return
  const pseudo = kernelFileSystem(dir, found.path)
  if (pseudo !== undefined) throw new RecordDirUnusableError(pseudo)
}

/** `Name: value` lines (blank lines and `#` comments skipped) as header pairs; throws naming the first bad line. */
export function parseHeadersFile(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return
    const colon = line.indexOf(':')
    const name = colon > 0 ? line.slice(0, colon).trim() : ''
    // RFC 9110 §5.1: a field name is a token.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new Error(`line ${i + 1} is not a "Name: value" header line`)
    out.push([name, line.slice(colon + 1).trim()])
  })
  return out
}
