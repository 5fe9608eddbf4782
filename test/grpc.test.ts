// The gRPC listener against real HTTP/2 servers on 127.0.0.1: per-call routing on one connection,
// user ids from metadata (the golden vectors' arms, -bin keys), model_name routes and rewriting,
// deadlines, trailers, resets both ways, and hostile bytes that must not crash the router.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { connect as netConnect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { constants } from 'node:http2'
import { afterEach, describe, expect, it } from 'vitest'
import { buildServer, type Router } from '../src/server.js'
import { answer, dial, field, frame, grpcCall, inferRequest, startGrpcUpstream, unframe, type GrpcUpstream } from './helpers/grpc.js'
import { parseMetrics } from './helpers/router.js'
import golden from './fixtures/rendezvous-golden.json' with { type: 'json' }
import tensors from './fixtures/compare-tensors.json' with { type: 'json' }

const INFER = '/inference.GRPCInferenceService/ModelInfer'

interface Running { router: Router; url: string; grpcUrl: string; adminUrl: string; dir: string; close(): Promise<void> }

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function startRouter(yaml: string): Promise<Running> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-grpc-'))
  const configFile = join(dir, 'router.yaml')
  await writeFile(configFile, yaml)
  const router = await buildServer({ configFile, watch: false, defaultMetrics: false })
  const { url, adminUrl, grpcUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, grpcHost: '127.0.0.1', grpcPort: 0 })
  const r = {
    router, url, adminUrl, grpcUrl: grpcUrl as string, dir,
    async close() {
      await router.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
  cleanups.push(() => r.close())
  return r
}

async function upstream(...args: Parameters<typeof startGrpcUpstream>): Promise<GrpcUpstream> {
  const u = await startGrpcUpstream(...args)
  cleanups.push(() => u.close())
  return u
}

function session(url: string): ReturnType<typeof dial> {
  const s = dial(url)
  cleanups.push(() => { s.destroy() })
  return s
}

async function metrics(r: Running): Promise<Map<string, number>> {
  const res = await fetch(`${r.adminUrl}/metrics`)
  return parseMetrics(await res.text())
}

const LISTEN = 'listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0 } }\nadmin: { host: 127.0.0.1, port: 0 }\n'

describe('gRPC: each call decided on its own, by the same formula as HTTP', () => {
  const groups = new Map<string, typeof golden.rows>()
  for (const row of golden.rows) {
    const key = JSON.stringify([row.salt, row.models, row.weights])
    groups.set(key, [...groups.get(key) ?? [], row])
  }

  it.each([...groups.values()].map((rows) => [rows[0]?.salt, rows] as const))('salt %j: every golden user id goes to its arm, over metadata and -bin metadata, on one connection', async (_salt, rows) => {
    const first = rows[0] as typeof golden.rows[number]
    // Each arm's server names itself, so the test reads the arm from who answered.
    const ups = new Map<string, GrpcUpstream>()
    for (const [i, m] of first.models.entries()) ups.set(m, await upstream((call) => answer(call.stream, [], { 'grpc-status': '0' }, { 'x-arm': String(i) })))
    const models = first.models.map((m) => `  ${JSON.stringify(m)}: { url: "${(ups.get(m) as GrpcUpstream).url}" }`).join('\n')
    const split = first.models.map((m, i) => `{ model: ${JSON.stringify(m)}, weight: ${first.weights[i]} }`).join(', ')
    const r = await startRouter(`${LISTEN}models:
${models}
routes:
  - name: plain
    grpc: { method: ${INFER} }
    salt: ${JSON.stringify(first.salt)}
    user_id: [metadata:x-user-id]
    split: [${split}]
  - name: binary
    grpc: { method: /inference.GRPCInferenceService/ModelStreamInfer }
    salt: ${JSON.stringify(first.salt)}
    user_id: [metadata:x-user-bin]
    split: [${split}]
  - name: http
    path: /predict
    salt: ${JSON.stringify(first.salt)}
    split: [${split}]
`)
    const s = session(r.grpcUrl)
    const armOf = (res: { headers: Record<string, unknown> }): string | undefined => first.models[Number(res.headers['x-arm'])]
    let plainCalls = 0
    for (const row of rows) {
      if (row.user_id === '') continue // no id: the missing_user_id policy, not the formula
      // HTTP/2 header values are Latin-1 text in node: the id's UTF-8 bytes, as a client library sends them.
      const bytes = Buffer.from(row.user_id, 'utf8')
      // Metadata text cannot carry control characters or edge spaces (RFC 9113 §8.2.1): such ids go as -bin.
      const sendable = [...row.user_id].every((ch) => ch.charCodeAt(0) >= 0x20 && ch !== '\x7f') && row.user_id.trim() === row.user_id
      if (sendable) {
        const plain = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': bytes.toString('latin1') })
        expect(plain.status, plain.message).toBe(0)
        expect(armOf(plain), row.user_id).toBe(row.model)
        plainCalls++
      }
      const bin = await grpcCall(s, '/inference.GRPCInferenceService/ModelStreamInfer', [inferRequest('m')], { 'x-user-bin': bytes.toString('base64') })
      expect(armOf(bin), row.user_id).toBe(row.model)
      // And over HTTP/1.1, the same bytes in a header: the same arm.
      if (/^[\x21-\x7e]+$/.test(row.user_id) && first.models.every((m) => /^[\x21-\x7e]+$/.test(m))) {
        const http = await fetch(`${r.url}/predict`, { method: 'POST', headers: { 'x-user-id': row.user_id }, body: '{}' })
        expect(http.headers.get('x-modelsplit-model')).toBe(row.model)
        await http.arrayBuffer()
      }
    }
    expect(plainCalls).toBeGreaterThan(rows.length / 2)
    // One connection carried every user: the router did not pin it to one arm.
    const seen = new Set(rows.map((row) => row.model))
    expect(seen.size).toBe(new Set(rows.map((row) => row.model)).size)
  })

  it('spreads the users of one connection by weight (binomial noise), each call with its own request id', async () => {
    const a = await upstream()
    const b = await upstream()
    const r = await startRouter(`${LISTEN}models:
  a: { url: "${a.url}" }
  b: { url: "${b.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 70 }, { model: b, weight: 30 }]
`)
    const s = session(r.grpcUrl)
    const n = 1000
    const results = await Promise.all(Array.from({ length: n }, (_, i) => grpcCall(s, INFER, [inferRequest('x')], { 'x-user-id': `user-${i}` })))
    const toA = results.filter((x) => x.headers['x-modelsplit-model'] === 'a').length
    // 70% of 1000: sd = sqrt(1000 * 0.7 * 0.3) = 14.5; 5 sd either side.
    expect(Math.abs(toA - 700)).toBeLessThan(73)
    expect(new Set(results.map((x) => x.headers['x-request-id'])).size).toBe(n)
    expect(a.received.length + b.received.length).toBe(n)
  })

  it('applies missing_user_id: reject answers INVALID_ARGUMENT, a model name sends the call there', async () => {
    const a = await upstream()
    const b = await upstream()
    const r = await startRouter(`${LISTEN}models:
  a: { url: "${a.url}" }
  b: { url: "${b.url}" }
routes:
  - name: strict
    grpc: { method: ${INFER} }
    missing_user_id: reject
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
  - name: lenient
    grpc: { method: /tensorflow.serving.PredictionService/Predict }
    missing_user_id: b
    split: [{ model: a, weight: 100 }, { model: b, weight: 0 }]
`)
    const s = session(r.grpcUrl)
    const refused = await grpcCall(s, INFER, [inferRequest('m')])
    expect(refused.status).toBe(3)
    expect(refused.message).toContain('needs a user id (metadata:x-user-id)')
    expect(a.received.length + b.received.length).toBe(0)
    const fallback = await grpcCall(s, '/tensorflow.serving.PredictionService/Predict', [field(1, field(1, 'tf'))])
    expect(fallback.status).toBe(0)
    expect(fallback.headers['x-modelsplit-model']).toBe('b')
    const m = await metrics(r)
    expect(m.get('modelsplit_user_id_missing_total{route="strict",reason="absent"}')).toBe(1)
  })
})

describe('gRPC forwarding', () => {
  it('passes messages byte for byte and the trailers back, with x-request-id in the response metadata', async () => {
    const a = await upstream()
    const r = await startRouter(`${LISTEN}models:
  a: { url: "${a.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const msg = inferRequest('churn', 'id-7', Buffer.from([0, 255, 1, 254]))
    const res = await grpcCall(s, INFER, [msg], { 'x-user-id': 'u1', 'x-request-id': 'trace-123', 'custom-meta': 'v' })
    const got = await a.next()
    expect(got.body.equals(frame(msg))).toBe(true)
    expect(got.headers[':path']).toBe(INFER)
    expect(got.headers['custom-meta']).toBe('v')
    expect(got.headers['x-request-id']).toBe('trace-123')
    expect(res.status).toBe(0)
    expect(res.messages).toHaveLength(1)
    expect((res.messages[0] as Buffer).equals(msg)).toBe(true)
    expect(res.headers['x-request-id']).toBe('trace-123')
    expect(res.headers['x-served-by']).toBe('upstream')
    expect(res.trailers['x-trailer']).toBe('kept')
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="OK"}')).toBe(1)
    expect(m.get('modelsplit_requests_total{route="infer",model="a",code="200"}')).toBe(1)
  })

  it('routes by model_name and rewrites it per arm where the arms share one server', async () => {
    const server = await upstream()
    const other = await upstream()
    const r = await startRouter(`${LISTEN}models:
  v1: { url: "${server.url}", model_name: iris-v1 }
  v2: { url: "${server.url}", model_name: iris-v2 }
  churn: { url: "${other.url}" }
routes:
  - name: iris
    grpc: { method: ${INFER}, model_name: iris }
    split: [{ model: v1, weight: 50 }, { model: v2, weight: 50 }]
  - name: churn
    grpc: { method: ${INFER}, model_name: churn }
    split: [{ model: churn, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const byModel = new Map<string, number>()
    for (let i = 0; i < 40; i++) {
      const res = await grpcCall(s, INFER, [inferRequest('iris', `id-${i}`)], { 'x-user-id': `u${i}` })
      expect(res.status).toBe(0)
      const arm = res.headers['x-modelsplit-model'] as string
      byModel.set(arm, (byModel.get(arm) ?? 0) + 1)
      const got = server.received[server.received.length - 1] as { body: Buffer }
      // Field 1 now names the arm's model on its server; id and inputs are the same bytes.
      const sent = unframe(got.body)[0] as Buffer
      expect(sent.equals(Buffer.concat([field(1, arm === 'v1' ? 'iris-v1' : 'iris-v2'), field(3, `id-${i}`), field(5, Buffer.from([1, 2, 3, 250]))]))).toBe(true)
    }
    expect([...byModel.keys()].sort()).toEqual(['v1', 'v2'])
    const churn = await grpcCall(s, INFER, [inferRequest('churn')], { 'x-user-id': 'u' })
    expect(churn.headers['x-modelsplit-model']).toBe('churn')
    expect(((await other.next()).body).equals(frame(inferRequest('churn')))).toBe(true)
    const unknown = await grpcCall(s, INFER, [inferRequest('nope')], { 'x-user-id': 'u' })
    expect(unknown.status).toBe(12)
    expect(unknown.message).toContain('model name "nope"')
  })

  it('reads a gzip-compressed first message to route it, and forwards it uncompressed', async () => {
    const server = await upstream()
    const r = await startRouter(`${LISTEN}models:
  v1: { url: "${server.url}", model_name: served-name }
routes:
  - name: iris
    grpc: { method: ${INFER}, model_name: iris }
    split: [{ model: v1, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const res = await grpcCall(s, INFER, frame(gzipSync(inferRequest('iris')), true), { 'x-user-id': 'u', 'grpc-encoding': 'gzip' })
    expect(res.status, res.message).toBe(0)
    const got = await server.next()
    expect(got.body.equals(frame(inferRequest('served-name')))).toBe(true)
    const deflate = await grpcCall(s, INFER, frame(Buffer.from('xx'), true), { 'x-user-id': 'u', 'grpc-encoding': 'snappy' })
    expect(deflate.status).toBe(12)
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="compressed"}')).toBe(2)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="unsupported_encoding"}')).toBe(1)
  })

  it('bounds grpc-timeout by timeout_ms, and answers DEADLINE_EXCEEDED as the model\'s error', async () => {
    const slow = await upstream(() => undefined) // never answers
    const r = await startRouter(`${LISTEN}models:
  slow: { url: "${slow.url}", timeout_ms: 300 }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: slow, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const [res, got] = await Promise.all([grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u', 'grpc-timeout': '20S' }), slow.next()])
    expect(got.headers['grpc-timeout']).toBe('300m')
    expect(res.status).toBe(4)
    const [short, got2] = await Promise.all([grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u', 'grpc-timeout': '50m' }), slow.next()])
    expect(got2.headers['grpc-timeout']).toBe('50m')
    expect(short.status).toBe(4)
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="slow",grpc_status="DEADLINE_EXCEEDED"}')).toBe(2)
    expect(m.get('modelsplit_requests_total{route="infer",model="slow",code="504"}')).toBe(2)
    expect(m.get('modelsplit_upstream_errors_total{route="infer",model="slow",reason="timeout"}')).toBe(2)
  })

  it('counts outcomes by grpc-status: UNAVAILABLE and RESOURCE_EXHAUSTED are the model\'s errors', async () => {
    let n = 0
    const flaky = await upstream((call) => {
      n++
      answer(call.stream, [], { 'grpc-status': n % 2 === 0 ? '14' : '8', 'grpc-message': 'busy' })
    })
    const r = await startRouter(`${LISTEN}models:
  flaky: { url: "${flaky.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: flaky, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const one = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    const two = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect([one.status, two.status]).toEqual([8, 14])
    expect(two.message).toBe('busy')
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="flaky",grpc_status="UNAVAILABLE"}')).toBe(1)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="flaky",grpc_status="RESOURCE_EXHAUSTED"}')).toBe(1)
    expect(m.get('modelsplit_requests_total{route="infer",model="flaky",code="503"}')).toBe(2)
  })

  it('passes a server-streaming answer through message by message', async () => {
    const streaming = await upstream((call) => answer(call.stream, [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')]))
    const r = await startRouter(`${LISTEN}models:
  s: { url: "${streaming.url}" }
routes:
  - name: stream
    grpc: { method: /inference.GRPCInferenceService/ModelStreamInfer }
    split: [{ model: s, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const res = await grpcCall(s, '/inference.GRPCInferenceService/ModelStreamInfer', [Buffer.from('a'), Buffer.from('b')], { 'x-user-id': 'u' })
    expect(res.messages.map(String)).toEqual(['one', 'two', 'three'])
    expect(unframe((await streaming.next()).body).map(String)).toEqual(['a', 'b'])
  })

  it('cancels the model\'s call when the client resets it, and counts a client abort', async () => {
    const hang = await upstream(() => undefined, { early: true })
    const r = await startRouter(`${LISTEN}models:
  h: { url: "${hang.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: h, weight: 1 }]
`)
    const s = session(r.grpcUrl)
    const req = s.request({ ':method': 'POST', ':path': INFER, 'content-type': 'application/grpc', 'x-user-id': 'u' })
    req.on('error', () => undefined)
    req.write(frame(inferRequest('m')))
    const got = await hang.next()
    const upstreamClosed = new Promise<number>((resolve) => got.stream.on('close', () => resolve(got.stream.rstCode)))
    req.close(constants.NGHTTP2_CANCEL)
    expect(await upstreamClosed).toBe(constants.NGHTTP2_CANCEL)
    await expect.poll(async () => (await metrics(r)).get('modelsplit_client_aborts_total{route="infer"}')).toBe(1)
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="h",grpc_status="CANCELLED"}')).toBe(1)
    expect(m.get('modelsplit_requests_total{route="infer",model="h",code="499"}')).toBeUndefined()
  })
})

describe('gRPC: hostile inputs are answered and counted, never crash the router', () => {
  async function basic(handler?: Parameters<typeof startGrpcUpstream>[0]): Promise<{ r: Running; up: GrpcUpstream }> {
    const up = await upstream(handler)
    const r = await startRouter(`${LISTEN}limits: { max_body_bytes: 1024 }
models:
  a: { url: "${up.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 1 }]
`)
    return { r, up }
  }

  it('unknown method: UNIMPLEMENTED from the router', async () => {
    const { r, up } = await basic()
    const res = await grpcCall(session(r.grpcUrl), '/pkg.Other/Method', [Buffer.from('x')])
    expect(res.status).toBe(12)
    expect(res.message).toContain('/pkg.Other/Method')
    expect(up.received).toHaveLength(0)
    expect((await metrics(r)).get('modelsplit_grpc_anomalies_total{kind="unimplemented"}')).toBe(1)
  })

  it('an HTTP/1.1 client gets a readable 505, and the port goes on serving gRPC', async () => {
    const { r } = await basic()
    const port = Number(new URL(r.grpcUrl).port)
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/', method: 'GET' }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      req.end()
    })
    expect(res.status).toBe(505)
    expect(JSON.parse(res.body)).toMatchObject({ statusCode: 505, code: 'MS_GRPC_ONLY' })
    // Garbage that is not even HTTP.
    await new Promise<void>((resolve) => {
      const sock = netConnect(port, '127.0.0.1', () => sock.end(Buffer.from([0xff, 0, 1, 2])))
      sock.on('close', () => resolve())
      sock.on('error', () => resolve())
      sock.resume()
    })
    const ok = await grpcCall(session(r.grpcUrl), INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect(ok.status).toBe(0)
    expect((await metrics(r)).get('modelsplit_grpc_anomalies_total{kind="http1_client"}')).toBe(2)
  })

  it('a bad length prefix (flag 7) gets INTERNAL; a message over max_body_bytes RESOURCE_EXHAUSTED', async () => {
    const { r } = await basic()
    const s = session(r.grpcUrl)
    const bad = frame(inferRequest('m'))
    bad[0] = 7
    expect((await grpcCall(s, INFER, bad, { 'x-user-id': 'u' })).status).toBe(13)
    const big = await grpcCall(s, INFER, [Buffer.alloc(2000)], { 'x-user-id': 'u' })
    expect(big.status).toBe(8)
    expect(big.message).toContain('max_body_bytes (1024 bytes)')
    const truncated = frame(inferRequest('m')).subarray(0, 8)
    expect((await grpcCall(s, INFER, truncated, { 'x-user-id': 'u' })).status).toBe(13)
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="bad_frame"}')).toBe(2)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="too_large"}')).toBe(1)
    expect((await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })).status).toBe(0)
  })

  it('messages split at every byte boundary arrive whole', async () => {
    const { r, up } = await basic()
    const s = session(r.grpcUrl)
    const bytes = Buffer.concat([frame(inferRequest('m')), frame(Buffer.alloc(0)), frame(Buffer.from('tail'))])
    const res = await new Promise<number>((resolve) => {
      const req = s.request({ ':method': 'POST', ':path': INFER, 'content-type': 'application/grpc', 'x-user-id': 'u' })
      req.on('error', () => undefined)
      let trailers: Record<string, unknown> = {}
      req.on('trailers', (t) => { trailers = t })
      req.resume()
      req.on('close', () => resolve(Number(trailers['grpc-status'])))
      let i = 0
      const step = (): void => {
        if (i >= bytes.length) { req.end(); return }
        req.write(bytes.subarray(i, i + 1), step)
        i++
      }
      step()
    })
    expect(res).toBe(0)
    expect((await up.next()).body.equals(bytes)).toBe(true)
  })

  it('an upstream that resets mid-answer resets the client\'s call; one that sends no trailers is INTERNAL', async () => {
    let n = 0
    const { r } = await basic((call) => {
      n++
      call.stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      call.stream.write(frame(Buffer.from('partial')))
      if (n === 1) call.stream.close(constants.NGHTTP2_INTERNAL_ERROR)
      else call.stream.end()
    })
    const s = session(r.grpcUrl)
    const reset = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect(reset.status).toBe(-1)
    expect(reset.rstCode).toBe(constants.NGHTTP2_INTERNAL_ERROR)
    const noTrailers = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect(noTrailers.status).toBe(13)
    expect(noTrailers.message).toContain('without trailers')
    const m = await metrics(r)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="upstream_reset"}')).toBe(1)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="upstream_no_trailers"}')).toBe(1)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="INTERNAL"}')).toBe(1)
  })

  it('a model that refuses connections is UNAVAILABLE', async () => {
    const up = await upstream()
    const url = up.url
    await up.close()
    const r = await startRouter(`${LISTEN}models:
  gone: { url: "${url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: gone, weight: 1 }]
`)
    const res = await grpcCall(session(r.grpcUrl), INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect(res.status).toBe(14)
    expect(res.message).toContain('cannot reach model "gone"')
    expect((await metrics(r)).get('modelsplit_upstream_errors_total{route="infer",model="gone",reason="refused"}')).toBe(1)
  })
})

describe('gRPC shadows: unary calls mirrored, answers compared as tensors', () => {
  it('mirrors a ModelInfer call (model name rewritten), returns the primary\'s bytes, compares the tensors as numpy does', async () => {
    // The fixture's FP32 probabilities: numpy.isclose finds 3 of 5 instances agree.
    const c = tensors.cases.find((x) => x.name === 'FP32 probabilities, oip raw') as (typeof tensors.cases)[number]
    const primaryAnswer = Buffer.from(c.primary as string, 'base64')
    const shadowAnswer = Buffer.from(c.shadow as string, 'base64')
    const primary = await upstream((call) => answer(call.stream, [primaryAnswer]))
    const shadow = await upstream((call) => answer(call.stream, [shadowAnswer]))
    const r = await startRouter(`${LISTEN}models:
  v1: { url: "${primary.url}" }
  v2: { url: "${shadow.url}", model_name: iris-v2 }
routes:
  - name: iris
    grpc: { method: ${INFER} }
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2 }]
    compare: { tolerance: ${c.atol}, rtol: ${c.rtol} }
`)
    const s = session(r.grpcUrl)
    const request = inferRequest('iris', 'id-1')
    const res = await grpcCall(s, INFER, [request], { 'x-user-id': 'u1' })
    expect(res.status).toBe(0)
    expect(res.messages).toHaveLength(1)
    expect((res.messages[0] as Buffer).equals(primaryAnswer)).toBe(true)
    const mirrored = await shadow.next()
    expect(mirrored.headers['x-modelsplit-shadow']).toBe('1')
    expect(mirrored.headers['x-request-id']).toBe(res.headers['x-request-id'])
    expect(unframe(mirrored.body)[0]?.equals(inferRequest('iris-v2', 'id-1'))).toBe(true)
    await r.router.flush()
    const m = await metrics(r)
    expect(m.get('modelsplit_shadow_requests_total{route="iris",model="v2",code="200"}')).toBe(1)
    expect(m.get('modelsplit_shadow_comparisons_total{route="iris",primary="v1",shadow="v2",result="disagree"}')).toBe(1)
    // Identical answers agree.
    const same = await upstream((call) => answer(call.stream, [primaryAnswer]))
    await r.close()
    const r2 = await startRouter(`${LISTEN}models:
  v1: { url: "${primary.url}" }
  v2: { url: "${same.url}" }
routes:
  - name: iris
    grpc: { method: ${INFER} }
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2 }]
`)
    await grpcCall(session(r2.grpcUrl), INFER, [request], { 'x-user-id': 'u1' })
    await r2.router.flush()
    expect((await metrics(r2)).get('modelsplit_shadow_comparisons_total{route="iris",primary="v1",shadow="v2",result="agree"}')).toBe(1)
  })

  it('does not mirror a streaming call, and a failing shadow never touches the primary\'s answer', async () => {
    const primary = await upstream()
    const broken = await upstream((call) => answer(call.stream, [], { 'grpc-status': '14' }))
    const r = await startRouter(`${LISTEN}models:
  v1: { url: "${primary.url}" }
  v2: { url: "${broken.url}" }
routes:
  - name: iris
    grpc: { method: ${INFER} }
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2 }]
`)
    const s = session(r.grpcUrl)
    const streamed = await grpcCall(s, INFER, [Buffer.from('a'), Buffer.from('b')], { 'x-user-id': 'u' })
    expect(streamed.messages.map(String)).toEqual(['a', 'b'])
    await r.router.flush()
    expect(broken.received).toHaveLength(0)
    const unary = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u' })
    expect(unary.status).toBe(0)
    await broken.next()
    await r.router.flush()
    const m = await metrics(r)
    expect(m.get('modelsplit_shadow_requests_total{route="iris",model="v2",code="503"}')).toBe(1)
    expect(m.get('modelsplit_shadow_comparisons_total{route="iris",primary="v1",shadow="v2",result="error"}')).toBe(1)
  })
})

describe('gRPC routes under a rollout', () => {
  it('rolls back a candidate whose calls end UNAVAILABLE: the trailers\' status drives the gate', async () => {
    const v1 = await upstream()
    const v2 = await upstream((call) => answer(call.stream, [], { 'grpc-status': '14', 'grpc-message': 'overloaded' }))
    const r = await startRouter(`${LISTEN}evaluation: { interval: 1h }
models:
  v1: { url: "${v1.url}" }
  v2: { url: "${v2.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
    rollout:
      candidate: v2
      steps: [10, 50, 100]
      step_interval: 1s
      min_requests: 20
      gates: { max_error_rate_increase: 0.01, max_p99_latency_ratio: 100 }
`)
    const status = async (): Promise<{ state: string; step_started_at: string; decisions: { reason: string }[] }> =>
      (await fetch(`${r.adminUrl}/admin/rollouts/infer`)).json() as Promise<{ state: string; step_started_at: string; decisions: { reason: string }[] }>
    const s = session(r.grpcUrl)
    const calls = await Promise.all(Array.from({ length: 400 }, (_, i) => grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': `user-${i}` })))
    const toV2 = calls.filter((c) => c.headers['x-modelsplit-model'] === 'v2')
    expect(toV2.length).toBeGreaterThan(20)
    for (const c of toV2) expect(c.status).toBe(14)
    const before = await status()
    expect(before.state).toBe('running')
    await r.router.decisions.tick(Date.parse(before.step_started_at) + 1000)
    const after = await status()
    expect(after.state).toBe('rolled_back')
    expect(after.decisions.at(-1)?.reason).toMatch(/error rate 100\.00% vs control 0\.00%/)
    const again = await Promise.all(Array.from({ length: 50 }, (_, i) => grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': `user-${i}` })))
    expect(again.every((c) => c.headers['x-modelsplit-model'] === 'v1')).toBe(true)
  })
})

describe('gRPC records', () => {
  it('writes one record per call: transport grpc, both answers\' tensors, the comparison per output', async () => {
    const c = tensors.cases.find((x) => x.name === 'INT64 beyond 2^53, raw, atol 0.0') as (typeof tensors.cases)[number]
    const primary = await upstream((call) => answer(call.stream, [Buffer.from(c.primary as string, 'base64')]))
    const shadow = await upstream((call) => answer(call.stream, [Buffer.from(c.shadow as string, 'base64')]))
    const r = await startRouter(`${LISTEN}recording: { path: ./records.jsonl }
models:
  v1: { url: "${primary.url}" }
  v2: { url: "${shadow.url}" }
routes:
  - name: ids
    grpc: { method: ${INFER} }
    record: true
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2 }]
    compare: { tolerance: 0 }
`)
    const res = await grpcCall(session(r.grpcUrl), INFER, [inferRequest('m')], { 'x-user-id': 'u7' })
    expect(res.status).toBe(0)
    await r.router.flush()
    const lines = (await readFile(join(r.dir, 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    const rec = lines.find((l) => l.type === 'prediction') as { transport: string; request_id: string; user_id: string; primary: { prediction: { name: string; data: unknown[] }[] }; shadows: { model: string; prediction: { data: unknown[] }[]; comparison: { agree: boolean; outputs: unknown[] } }[] }
    expect(rec.transport).toBe('grpc')
    expect(rec.request_id).toBe(res.headers['x-request-id'])
    expect(rec.user_id).toBe('u7')
    // INT64 past 2^53 kept digit for digit (as strings); the shadow's first id is one more.
    expect(rec.primary.prediction[0]?.data).toEqual(c.decoded[0]?.values.map((v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v)))
    expect(rec.shadows[0]?.prediction[0]?.data[0]).toBe((BigInt(c.decoded[0]?.values[0] as string) + 1n).toString())
    expect(rec.shadows[0]?.comparison).toMatchObject({ agree: false, fraction_agree: c.expected.fraction_agree })
    expect(rec.shadows[0]?.comparison.outputs).toEqual([{ name: 'ids', problem: null, instances: 2, agreeing: 1, argmax_agreeing: 2, abs_diff_max: 1 }])
  })
})

describe('gRPC records: the request', () => {
  it('records a unary call\'s input tensors as its outputs are; an input that is not tensors is said to be undecodable', async () => {
    const model = await upstream((call) => answer(call.stream, [Buffer.alloc(0)]))
    const r = await startRouter(`${LISTEN}recording: { path: ./records.jsonl }
models:
  v1: { url: "${model.url}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    record: true
    split: [{ model: v1, weight: 1 }]
`)
    // InferInputTensor x: datatype FP32 (2), shape [2] (3, packed), its values in raw_input_contents (7) of the request.
    const raw = Buffer.alloc(8)
    raw.writeFloatLE(1.5, 0)
    raw.writeFloatLE(-2, 4)
    const tensor = Buffer.concat([field(1, 'x'), field(2, 'FP32'), field(3, Buffer.from([2]))])
    const withTensor = Buffer.concat([field(1, 'm'), field(3, 'id-1'), field(5, tensor), field(7, raw)])
    const s = session(r.grpcUrl)
    const a = await grpcCall(s, INFER, [withTensor], { 'x-user-id': 'u1' })
    const b = await grpcCall(s, INFER, [inferRequest('m')], { 'x-user-id': 'u2' })
    expect([a.status, b.status]).toEqual([0, 0])
    await r.router.flush()
    const lines = (await readFile(join(r.dir, 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    const byId = (id: unknown): Record<string, unknown> | undefined => lines.find((l) => l.request_id === id)
    expect(byId(a.headers['x-request-id'])?.input).toEqual([{ name: 'x', datatype: 'FP32', shape: [2], data: [1.5, -2] }])
    expect(byId(b.headers['x-request-id'])).toMatchObject({ input_omitted: 'not_decodable' })
    expect(byId(b.headers['x-request-id'])?.input).toBeUndefined()
  })
})

describe('gRPC traces', () => {
  /** An OTLP/HTTP receiver keeping every span it is sent, by name. */
  async function collector(): Promise<{ url: string; spans(): Map<string, { traceId: string; spanId: string; parentSpanId?: string; attrs: Record<string, unknown> }> }> {
    const bodies: string[] = []
    const server = createHttpServer((req, res) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (c: string) => { body += c })
      req.on('end', () => {
        bodies.push(body)
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
    type Value = { stringValue?: string; intValue?: string; boolValue?: boolean; doubleValue?: number }
    type OtlpSpan = { name: string; traceId: string; spanId: string; parentSpanId?: string; attributes?: { key: string; value: Value }[] }
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      spans() {
        const out = new Map<string, { traceId: string; spanId: string; parentSpanId?: string; attrs: Record<string, unknown> }>()
        for (const b of bodies) {
          const doc = JSON.parse(b) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }
          for (const s of doc.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((x) => x.spans))) {
            const attrs = Object.fromEntries((s.attributes ?? []).map((a) => [a.key, a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : a.value.boolValue ?? a.value.doubleValue)]))
            out.set(s.name, { traceId: s.traceId, spanId: s.spanId, ...(s.parentSpanId !== undefined ? { parentSpanId: s.parentSpanId } : {}), attrs })
          }
        }
        return out
      },
    }
  }

  it('exports a span per call with its upstream call and its shadow, and tells both models the trace', async () => {
    const otlp = await collector()
    const c = tensors.cases.find((x) => x.name === 'FP32 probabilities, oip raw') as (typeof tensors.cases)[number]
    const primary = await upstream((call) => answer(call.stream, [Buffer.from(c.primary as string, 'base64')]))
    const shadow = await upstream((call) => answer(call.stream, [Buffer.from(c.primary as string, 'base64')]))
    const r = await startRouter(`${LISTEN}tracing: { otlp_endpoint: "${otlp.url}", sample_ratio: 1, service_name: ms-grpc }
models:
  v1: { url: "${primary.url}" }
  v2: { url: "${shadow.url}" }
routes:
  - name: iris
    grpc: { method: ${INFER} }
    split: [{ model: v1, weight: 1 }]
    shadow: [{ model: v2 }]
`)
    const res = await grpcCall(session(r.grpcUrl), INFER, [inferRequest('iris', 'id-1')], { 'x-user-id': 'u1' })
    expect(res.status).toBe(0)
    const toPrimary = await primary.next()
    const toShadow = await shadow.next()
    await r.router.flush()
    await r.close() // exports what the tracer holds
    const spans = otlp.spans()
    const call = spans.get('POST iris')
    const up = spans.get('upstream v1')
    const mirror = spans.get('shadow v2')
    expect(call?.attrs).toMatchObject({ 'modelsplit.route': 'iris', 'modelsplit.model': 'v1', 'modelsplit.assignment': 'hash', 'http.response.status_code': 200 })
    expect(up?.parentSpanId).toBe(call?.spanId)
    expect(mirror?.parentSpanId).toBe(call?.spanId)
    expect(mirror?.attrs).toMatchObject({ 'modelsplit.comparison.result': 'agree' })
    // Each model was told the trace, naming its own call's span.
    expect(String(toPrimary.headers.traceparent)).toMatch(new RegExp(`^00-${call?.traceId}-${up?.spanId}-01$`))
    expect(String(toShadow.headers.traceparent)).toMatch(new RegExp(`^00-${call?.traceId}-${mirror?.spanId}-01$`))
  })
})
