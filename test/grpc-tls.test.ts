// gRPC over TLS: listen.grpc.tls in the one compile path (located problems), grpc-js dialing the
// router with a self-signed certificate made here by openssl, the router dialing an https:// model
// (ALPN h2), and `serve --workers 2` with listen.grpc: every worker listening on the shared port.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { createSecureServer, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { compile } from '../src/plan/index.js'
import { buildServer } from '../src/server.js'
import { answer, startGrpcUpstream } from './helpers/grpc.js'
import { parseMetrics } from './helpers/router.js'
import { INFER, decodeRequest, encodeResponse, infer, one, tlsInferConfig } from './helpers/grpc-js.js'

const CLI = join(import.meta.dirname, '../dist/cli/main.js')

// grpc-js would send the IP address as the TLS server name (RFC 6066 forbids it; node warns): the
// certificate also names localhost, which the client checks instead.
const NAME = { 'grpc.ssl_target_name_override': 'localhost' }

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

let dir = ''
let cert: Buffer = Buffer.alloc(0)

/** A self-signed certificate for 127.0.0.1 and localhost (P-256), and its key. */
function selfSigned(at: string, name: string): { cert: string; key: string } {
  const out = { cert: join(at, `${name}.crt`), key: join(at, `${name}.key`) }
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', out.key, '-out', out.cert], { stdio: 'ignore' })
  return out
}

// openssl makes the certificates (node:crypto cannot issue one); without it the file is skipped, saying so.
const hasOpenssl = ((): boolean => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    console.warn('grpc-tls: openssl is not on PATH; skipped')
    return false
  }
})()

beforeAll(async () => {
  if (!hasOpenssl) return
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-grpc-tls-'))
  selfSigned(dir, 'router')
  selfSigned(dir, 'other')
  cert = await readFile(join(dir, 'router.crt'))
  return () => rm(dir, { recursive: true, force: true })
})

const ROUTES = `models:
  a: { url: "http://127.0.0.1:9001" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 1 }]
`

describe.skipIf(!hasOpenssl)('listen.grpc.tls in the config', () => {
  const problems = (text: string): { line: number | undefined; path: string; message: string }[] => {
    const r = compile(text, join(dir, 'router.yaml'))
    return r.ok ? [] : r.problems.map((p) => ({ line: p.line, path: p.path, message: p.message }))
  }

  it('reads cert_file and key_file relative to the config file', () => {
    const r = compile(`listen:\n  grpc: { port: 8081, tls: { cert_file: router.crt, key_file: ./router.key } }\n${ROUTES}`, join(dir, 'router.yaml'))
    expect(r.ok ? [] : r.problems).toEqual([])
    if (r.ok) expect(r.plan.config.listen.grpc).toEqual({ host: '0.0.0.0', port: 8081, tls: { cert_file: join(dir, 'router.crt'), key_file: join(dir, 'router.key'), client_auth: 'none' } })
  })

  it.each([
    ['a key file left out', 'tls: { cert_file: router.crt }', 'listen.grpc.tls.key_file', 'is required'],
    ['an unknown key', 'tls: { cert_file: router.crt, key_file: router.key, ca: ca.crt }', 'listen.grpc.tls.ca', 'unknown key; allowed keys here: cert_file, key_file, ca_file, client_auth'],
    ['a file that is not there', 'tls: { cert_file: missing.crt, key_file: router.key }', 'listen.grpc.tls.cert_file', 'missing.crt (ENOENT)'],
    ['a key of another certificate', 'tls: { cert_file: router.crt, key_file: other.key }', 'listen.grpc.tls', 'are not a PEM certificate chain and its private key'],
    ['a key file for a certificate', 'tls: { cert_file: router.crt, key_file: router.crt }', 'listen.grpc.tls', 'are not a PEM certificate chain and its private key'],
  ])('%s is a located problem', (_what, tls, path, message) => {
    const found = problems(`listen:\n  port: 8080\n  grpc:\n    port: 8081\n    ${tls}\n${ROUTES}`)
    expect(found).toHaveLength(1)
    expect(found[0]?.path).toBe(path)
    expect(found[0]?.line).toBe(5)
    expect(found[0]?.message).toContain(message)
  })
})

describe.skipIf(!hasOpenssl)('gRPC over TLS', () => {
  it('serves grpc-js over TLS; a cleartext channel fails its handshake and an HTTP/1.1 client is told why', async () => {
    const up = await startGrpcUpstream()
    cleanups.push(() => up.close())
    const configFile = join(dir, 'in-process.yaml')
    await writeFile(configFile, tlsInferConfig(up.url, 'router.crt', 'router.key'))
    const router = await buildServer({ configFile, watch: false, defaultMetrics: false })
    cleanups.push(() => router.close())
    const { grpcUrl, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, grpcHost: '127.0.0.1', grpcPort: 0 })
    expect(grpcUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const address = (grpcUrl as string).slice('https://'.length)

    const secure = new grpc.Client(address, grpc.credentials.createSsl(cert), NAME)
    cleanups.push(() => secure.close())
    const ok = await infer(secure, { model_name: 'm', id: 'tls-1' }, { 'x-user-id': 'u1', 'x-request-id': 'over-tls' }).done
    expect(ok.status.code, ok.status.details).toBe(grpc.status.OK)
    expect(one(ok.headers, 'x-request-id')).toBe('over-tls')
    expect(ok.value?.id).toBe('tls-1') // the fake model echoes the request: the message went through whole

    const plain = new grpc.Client(address, grpc.credentials.createInsecure())
    cleanups.push(() => plain.close())
    const refused = await infer(plain, { model_name: 'm' }, { 'x-user-id': 'u1' }, { deadline: Date.now() + 10_000 }).done
    expect(refused.status.code).toBe(grpc.status.UNAVAILABLE)

    const http1 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(`${(grpcUrl as string)}${INFER}`, { method: 'POST', ca: cert, agent: false }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      req.end('{}')
    })
    expect(http1.status).toBe(505)
    expect(JSON.parse(http1.body)).toMatchObject({ statusCode: 505, code: 'MS_GRPC_ONLY' })

    // The port goes on serving gRPC.
    expect((await infer(secure, { model_name: 'm' }, { 'x-user-id': 'u2' }).done).status.code).toBe(grpc.status.OK)
    const m = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_grpc_anomalies_total{kind="tls_handshake"}')).toBeGreaterThanOrEqual(1)
    expect(m.get('modelsplit_grpc_anomalies_total{kind="http1_client"}')).toBe(1)
    expect(m.get('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="OK"}')).toBe(2)
  })
})

describe.skipIf(!hasOpenssl)('serve --workers 2 with listen.grpc', () => {
  it('every worker serves gRPC over TLS on the shared port, forwards to an https:// model, and the primary counts for all', async () => {
    // The model: gRPC over TLS (ALPN h2) with its own certificate, trusted by the router through
    // NODE_EXTRA_CA_CERTS; it answers with the model name the router wrote into the request.
    const model = selfSigned(dir, 'model')
    const seen: { alpn: string | false | null; encrypted: boolean }[] = []
    const server = createSecureServer({ cert: await readFile(model.cert), key: await readFile(model.key) })
    server.on('stream', (stream: ServerHttp2Stream) => {
      stream.on('error', () => undefined)
      const socket = stream.session?.socket as TLSSocket
      seen.push({ alpn: socket.alpnProtocol, encrypted: socket.encrypted })
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const request = decodeRequest(Buffer.concat(chunks).subarray(5))
        answer(stream, [encodeResponse({ model_name: request.model_name, id: '', outputs: [], raw_output_contents: [] })])
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const modelUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

    const configFile = join(dir, 'workers.yaml')
    await writeFile(configFile, `listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0, tls: { cert_file: router.crt, key_file: router.key } } }
admin: { host: 127.0.0.1, port: 0 }
recording: { path: ./workers-records.jsonl }
models:
  a: { url: "${modelUrl}", model_name: served-a }
  b: { url: "${modelUrl}", model_name: served-b }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    salt: workers
    record: true
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
`)
    const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile, '--workers', '2', '--log-level', 'warn'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: model.cert },
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    cleanups.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const banner = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString()
        if (out.includes('\n')) resolve(out)
      })
      void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)))
    })
    const m = /admin on (\S+), gRPC on (https:\/\/\S+) \(.*2 workers\)/.exec(banner)
    expect(m, banner).not.toBeNull()
    const [, adminUrl, grpcUrl] = m as unknown as [string, string, string]

    // Channels of their own (no shared subchannel pool): each is a connection the primary hands to a worker.
    const channels = Array.from({ length: 6 }, () => {
      const c = new grpc.Client(grpcUrl.slice('https://'.length), grpc.credentials.createSsl(cert), { ...NAME, 'grpc.use_local_subchannel_pool': 1 })
      cleanups.push(() => c.close())
      return c
    })
    const calls = await Promise.all(channels.flatMap((c, i) => Array.from({ length: 10 }, (_, j) => {
      const user = `user-${i}-${j}`
      return infer(c, { model_name: 'iris', id: user }, { 'x-user-id': user }).done.then((r) => ({ user, r }))
    })))
    for (const { r } of calls) {
      expect(r.status.code, r.status.details).toBe(grpc.status.OK)
      // The arm the router chose is the model that answered: its name was rewritten on the way.
      expect(r.value?.model_name).toBe(`served-${one(r.headers, 'x-modelsplit-model') as string}`)
    }
    expect(new Set(calls.map(({ r }) => r.value?.model_name))).toEqual(new Set(['served-a', 'served-b']))
    expect(seen.length).toBe(calls.length)
    expect(seen.every((s) => s.encrypted && s.alpn === 'h2')).toBe(true)

    const metrics = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())
    const ok = ['a', 'b'].map((arm) => metrics.get(`modelsplit_grpc_calls_total{route="infer",model="${arm}",grpc_status="OK"}`) ?? 0)
    expect((ok[0] ?? 0) + (ok[1] ?? 0)).toBe(calls.length)

    // Drained, each worker closed its own record file: both served calls.
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    const files = (await readdir(dir)).filter((f) => /^workers-records\.w\d\.jsonl$/.test(f)).sort()
    expect(files).toEqual(['workers-records.w1.jsonl', 'workers-records.w2.jsonl'])
    const perWorker = await Promise.all(files.map(async (f) => (await readFile(join(dir, f), 'utf8')).split('\n').filter((l) => l.includes('"type":"prediction"')).length))
    for (const n of perWorker) expect(n).toBeGreaterThan(0)
    expect(perWorker.reduce((s, n) => s + n, 0)).toBe(calls.length)
  }, 60_000)
})
