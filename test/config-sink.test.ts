// recording.sink and its blocks: every mistake a located problem (code, file:line, key path), files
// the sink reads checked at compile, relative paths resolved against the config file.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compile } from '../src/plan/index.js'
import { parseBroker } from '../src/config/sink.js'

// Lines 1-4; `recording:` starts on line 5.
const BASE = `models:
  a: { url: "http://127.0.0.1:9001" }
routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }], record: true }
`

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-config-sink-'))
  await writeFile(join(dir, 'password'), 's3cret\n')
  await writeFile(join(dir, 'headers'), 'Authorization: Bearer x\n')
  await writeFile(join(dir, 'bad-headers'), 'no colon here\n')
})
afterAll(() => rm(dir, { recursive: true, force: true }))

function problems(recording: string): Array<{ code: string; where: string; message: string }> {
  const file = join(dir, 'router.yaml')
  const r = compile(`${BASE}recording:\n${recording}`, file)
  if (r.ok) return []
  return r.problems.map((p) => ({ code: 'MS_CONFIG_INVALID', where: `${p.file === file ? 'router.yaml' : p.file}:${p.line}: ${p.path}`, message: p.message }))
}

describe('recording.sink', () => {
  it.each([
    ['a kafka sink without its block', '  sink: kafka\n', 'router.yaml:5: recording', 'recording.kafka', 'is required with sink: kafka'],
    ['a kafka block without brokers', '  sink: kafka\n  kafka: { topic: t }\n', 'router.yaml:7: recording.kafka', 'recording.kafka.brokers', 'is required'],
    ['an unparsable broker', '  sink: kafka\n  kafka:\n    brokers: [127.0.0.1:9092, "kafka:port"]\n    topic: t\n', 'router.yaml:8: recording.kafka.brokers[1]', 'recording.kafka.brokers[1]', 'must be host:port'],
    ['a port out of range', '  sink: kafka\n  kafka:\n    brokers: [127.0.0.1:99999]\n    topic: t\n', 'router.yaml:8: recording.kafka.brokers[0]', 'recording.kafka.brokers[0]', 'from 1 to 65535'],
    ['a bad topic name', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: "a b"\n', 'router.yaml:9: recording.kafka.topic', 'recording.kafka.topic', 'Kafka topic name'],
    ['acks 0', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: t\n    acks: 0\n', 'router.yaml:10: recording.kafka.acks', 'recording.kafka.acks', 'nothing would acknowledge'],
    ['zstd', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: t\n    compression: zstd\n', 'router.yaml:10: recording.kafka.compression', 'recording.kafka.compression', 'use lz4 or gzip'],
    ['an unreadable password file', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: t\n    sasl: { mechanism: scram-sha-512, username: u, password_file: missing-password }\n', 'router.yaml:10: recording.kafka.sasl.password_file', 'recording.kafka.sasl.password_file', 'cannot read'],
    ['a directory as a CA file', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: t\n    tls: { ca_file: . }\n', 'router.yaml:10: recording.kafka.tls.ca_file', 'recording.kafka.tls.ca_file', 'cannot read'],
    ['a certificate without its key', '  sink: kafka\n  kafka:\n    brokers: [k:9092]\n    topic: t\n    tls: { cert_file: password }\n', 'router.yaml:10: recording.kafka.tls.key_file', 'recording.kafka.tls.key_file', 'go together'],
    ['an http sink without url', '  sink: http\n  http: { timeout_ms: 10 }\n', 'router.yaml:7: recording.http', 'recording.http.url', 'is required'],
    ['an http url that is not http', '  sink: http\n  http: { url: "ftp://c/records" }\n', 'router.yaml:7: recording.http.url', 'recording.http.url', 'http:// or https://'],
    ['a malformed headers file', '  sink: http\n  http: { url: "http://c/records", headers_file: bad-headers }\n', 'router.yaml:7: recording.http.headers_file', 'recording.http.headers_file', 'line 1 is not a "Name: value"'],
    ['a block for another sink', '  kafka: { brokers: [k:9092], topic: t }\n', 'router.yaml:6: recording.kafka', 'recording.kafka', 'recording.sink is file'],
    ['a tiny spool', '  sink: http\n  http: { url: "http://c/r" }\n  spool: { max_bytes: 10 }\n', 'router.yaml:8: recording.spool.max_bytes', 'recording.spool.max_bytes', '>= 1048576'],
    ['an unknown sink', '  sink: s3\n', 'router.yaml:6: recording.sink', 'recording.sink', 'must be one of file, kafka, http'],
  ])('%s', (_name, recording, where, path, message) => {
    const found = problems(recording)
    expect(found.map((p) => p.where)).toContain(where.replace(/: [^:]+$/, `: ${path}`))
    const p = found.find((x) => x.where.endsWith(`: ${path}`))
    expect(p?.code).toBe('MS_CONFIG_INVALID')
    expect(p?.message).toContain(message)
  })

  it('accepts a full kafka block, resolving files and the spool against the config file, and reads no secret into the config', () => {
    const r = compile(`${BASE}recording:
  sink: kafka
  kafka:
    brokers: [127.0.0.1:9092, "[::1]:9093", kafka-0.kafka.svc:9092]
    topic: modelsplit-records
    acks: all
    compression: gzip
    linger_ms: 0
    max_batch_bytes: 2048
    client_id: r1
    sasl: { mechanism: scram-sha-512, username: modelsplit, password_file: password }
  spool: { path: ./spool, max_bytes: 1048576 }
`, join(dir, 'router.yaml'))
    if (!r.ok) throw new Error(JSON.stringify(r.problems))
    const rec = r.plan.config.recording
    expect(rec).toMatchObject({ sink: 'kafka', spool: { path: join(dir, 'spool'), max_bytes: 1048576 }, kafka: { compression: 'gzip', linger_ms: 0, sasl: { password_file: join(dir, 'password') } } })
    expect(JSON.stringify(r.plan.config)).not.toContain('s3cret')
  })

  it('defaults to the file sink, with a spool path nobody uses', () => {
    const r = compile(BASE, join(dir, 'router.yaml'))
    if (!r.ok) throw new Error('invalid')
    expect(r.plan.config.recording).toMatchObject({ sink: 'file', spool: { path: join(dir, 'data/spool'), max_bytes: 1073741824 } })
  })

  it.each([
    ['127.0.0.1:9092', { host: '127.0.0.1', port: 9092 }],
    ['[::1]:9092', { host: '::1', port: 9092 }],
    ['kafka-0.kafka:1', { host: 'kafka-0.kafka', port: 1 }],
    ['kafka', undefined],
    ['kafka:0', undefined],
    [':9092', undefined],
    ['::1:9092', undefined],
  ])('parses broker %s', (text, want) => {
    expect(parseBroker(text)).toEqual(want)
  })
})

// Issue 18 items 14 and 15: a directory records can never be kept in is a located problem at
// compile (validate, serve and every reload), not a router that accepts records it cannot keep.
describe('where records are kept', () => {
  beforeAll(async () => {
    await writeFile(join(dir, 'a-file'), 'x\n')
  })

  it.each([
    ['a spool path that is a file', '  sink: http\n  http: { url: "http://c/r" }\n  spool: { path: a-file }\n', 'router.yaml:8: recording.spool.path', 'is a file, not a directory'],
    ['a spool path below a file', '  sink: http\n  http: { url: "http://c/r" }\n  spool: { path: a-file/spool }\n', 'router.yaml:8: recording.spool.path', 'is a file, not a directory'],
    ['a spool path in a missing directory under /proc', '  sink: http\n  http: { url: "http://c/r" }\n  spool: { path: /proc/modelsplit-missing/spool }\n', 'router.yaml:8: recording.spool.path', 'proc file system'],
    ['a record file in a missing directory under /proc', '  path: /proc/modelsplit-missing/records.jsonl\n', 'router.yaml:6: recording.path', 'proc file system'],
    ['a record file under /sys', '  path: /sys/modelsplit-missing/records.jsonl\n', 'router.yaml:6: recording.path', 'sysfs file system'],
    ['a record file below a file', '  path: a-file/records.jsonl\n', 'router.yaml:6: recording.path', 'is a file, not a directory'],
  ])('%s', (_name, recording, where, message) => {
    const found = problems(recording)
    const p = found.find((x) => x.where === where)
    expect(p, JSON.stringify(found)).toBeDefined()
    expect(p?.code).toBe('MS_CONFIG_INVALID')
    expect(p?.message).toContain(message)
  })

  it('accepts a spool directory that does not exist yet under a writable one', () => {
    expect(problems('  sink: http\n  http: { url: "http://c/r" }\n  spool: { path: ./new/spool }\n')).toEqual([])
  })
})
