// Mutual TLS and certificate reload on the gRPC listener: listen.grpc.tls.ca_file and client_auth
// in the one compile path (located problems), grpc-js clients presenting a good, no and a
// wrong-CA certificate, and a reload (POST /admin/reload) that puts renewed files in force for new
// connections while open ones go on, a bad renewal failing the reload and leaving the old one, and
// client_auth changed by reload (open connections the new setting refuses get GOAWAY).
import { execFileSync, spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as h2Connect } from 'node:http2'
import { connect as tlsConnect } from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { compile } from '../src/plan/index.js'
import { buildServer } from '../src/server.js'
import { startGrpcUpstream } from './helpers/grpc.js'
import { parseMetrics } from './helpers/router.js'
import { INFER, encodeRequest, infer, tlsInferConfig } from './helpers/grpc-js.js'

// grpc-js would send the IP address as the TLS server name; the certificates also name localhost.
const NAME = { 'grpc.ssl_target_name_override': 'localhost' }
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const hasOpenssl = ((): boolean => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    console.warn('grpc-mtls: openssl is not on PATH; skipped')
    return false
  }
})()

let dir = ''
const pem: Record<string, Buffer> = {}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore', cwd: dir })
}

/** A self-signed certificate: a server's (for 127.0.0.1 and localhost) or a CA's. */
function selfSigned(name: string, cn: string): void {
  openssl('req', '-x509', ...EC, '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', `${name}.key`, '-out', `${name}.crt`)
}

/** A client certificate issued by the CA `ca`. */
function issued(name: string, ca: string, serial: number): void {
  openssl('req', '-new', ...EC, '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`)
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(serial), '-days', '1', '-out', `${name}.crt`)
}

beforeAll(async () => {
  if (!hasOpenssl) return
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-grpc-mtls-'))
  selfSigned('server-a', 'localhost')
  selfSigned('server-b', 'localhost')
  selfSigned('clients-ca', 'clients CA')
  selfSigned('other-ca', 'other CA')
  issued('client', 'clients-ca', 1)
  issued('stranger', 'other-ca', 2)
  for (const n of ['server-a', 'server-b', 'clients-ca', 'client', 'stranger']) {
    pem[`${n}.crt`] = await readFile(join(dir, `${n}.crt`))
    pem[`${n}.key`] = await readFile(join(dir, `${n}.key`))
  }
  return () => rm(dir, { recursive: true, force: true })
})

const file = (name: string): Buffer => pem[name] as Buffer

const ROUTES = `models:
  a: { url: "http://127.0.0.1:9001" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 1 }]
`

describe.skipIf(!hasOpenssl)('listen.grpc.tls.ca_file and client_auth in the config', () => {
  const compiled = (tls: string): ReturnType<typeof compile> =>
    compile(`listen:\n  port: 8080\n  grpc:\n    port: 8081\n    ${tls}\n${ROUTES}`, join(dir, 'router.yaml'))

  it('reads ca_file relative to the config file; client_auth defaults to none', () => {
    const r = compiled('tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: clients-ca.crt, client_auth: require }')
    expect(r.ok ? [] : r.problems).toEqual([])
    if (r.ok) {
      expect(r.plan.config.listen.grpc?.tls).toEqual({
        cert_file: join(dir, 'server-a.crt'), key_file: join(dir, 'server-a.key'), ca_file: join(dir, 'clients-ca.crt'), client_auth: 'require',
      })
    }
    const plain = compiled('tls: { cert_file: server-a.crt, key_file: server-a.key }')
    if (plain.ok) expect(plain.plan.config.listen.grpc?.tls?.client_auth).toBe('none')
    else expect(plain.problems).toEqual([])
  })

  it.each([
    ['an unknown client_auth', 'tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: clients-ca.crt, client_auth: optional }',
      'listen.grpc.tls.client_auth', 'must be one of none, request, require, got "optional"'],
    ['client_auth without a CA', 'tls: { cert_file: server-a.crt, key_file: server-a.key, client_auth: require }',
      'listen.grpc.tls.client_auth', 'add ca_file'],
    ['a CA without client_auth', 'tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: clients-ca.crt }',
      'listen.grpc.tls.ca_file', 'add client_auth: require'],
    ['a CA file that is not there', 'tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: nope.crt, client_auth: request }',
      'listen.grpc.tls.ca_file', 'nope.crt (ENOENT)'],
    ['a CA file holding a key', 'tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: clients-ca.key, client_auth: require }',
      'listen.grpc.tls.ca_file', 'holds no PEM certificate'],
    ['a CA file with a broken certificate', 'tls: { cert_file: server-a.crt, key_file: server-a.key, ca_file: broken.crt, client_auth: require }',
      'listen.grpc.tls.ca_file', 'certificate 2 of 2 is not a valid X.509 certificate'],
  ])('%s is a located problem', async (_what, tls, path, message) => {
    await writeFile(join(dir, 'broken.crt'), `${file('clients-ca.crt').toString()}-----BEGIN CERTIFICATE-----\nMIIBbroken\n-----END CERTIFICATE-----\n`)
    const r = compiled(tls)
    const found = r.ok ? [] : r.problems
    expect(found).toHaveLength(1)
    expect(found[0]?.file).toBe(join(dir, 'router.yaml'))
    expect(found[0]?.path).toBe(path)
    expect(found[0]?.line).toBe(5)
    expect(found[0]?.message).toContain(message)
  })
})

interface Started {
  readonly address: string
  readonly adminUrl: string
  readonly configFile: string
  readonly metric: (key: string) => Promise<number | undefined>
}

/** A router with listen.grpc.tls from the files in `at` (server.crt/key, maybe ca.crt) before one fake model. */
async function startRouter(at: string, tlsExtra: string, watch = false): Promise<Started> {
  const up = await startGrpcUpstream()
  cleanups.push(() => up.close())
  const configFile = join(at, 'router.yaml')
  await writeFile(configFile, tlsInferConfig(up.url, 'server.crt', 'server.key', tlsExtra))
  const router = await buildServer({ configFile, watch, defaultMetrics: false })
  cleanups.push(() => router.close())
  const { grpcUrl, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, grpcHost: '127.0.0.1', grpcPort: 0 })
  return {
    address: (grpcUrl as string).slice('https://'.length),
    adminUrl,
    configFile,
    metric: async (key) => parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text()).get(key),
  }
}

/** A directory of its own for one router's files, so a test can replace them. */
async function filesDir(files: Record<string, string>): Promise<string> {
  const at = await mkdtemp(join(dir, 'router-'))
  for (const [to, from] of Object.entries(files)) await copyFile(join(dir, from), join(at, to))
  return at
}

function client(address: string, trust: string, as?: string): grpc.Client {
  const creds = as === undefined
    ? grpc.credentials.createSsl(file(trust))
    : grpc.credentials.createSsl(file(trust), file(`${as}.key`), file(`${as}.crt`))
  const c = new grpc.Client(address, creds, NAME)
  cleanups.push(() => c.close())
  return c
}

const call = async (c: grpc.Client, user: string): Promise<grpc.status> =>
  (await infer(c, { model_name: 'm', id: user }, { 'x-user-id': user }, { deadline: Date.now() + 15_000 }).done).status.code

/** The SHA-256 fingerprint of the certificate a new TLS connection (ALPN h2) is served. */
function servedFingerprint(address: string): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))]
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port, servername: 'localhost', ALPNProtocols: ['h2'], rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? ''
      s.destroy()
      resolve(fp)
    })
    s.on('error', reject)
  })
}

/**
 * One gRPC call on a new TLS connection made by hand (no client certificate), resuming `session`
 * if given: resolves with the call's grpc-status ('refused' if the connection was), whether the
 * handshake resumed, and the session ticket the server sent, for the next connection.
 */
function callResuming(address: string, session?: Buffer, as?: string): Promise<{ status: string; resumed: boolean; ticket?: Buffer }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))]
  return new Promise((resolve) => {
    let ticket: Buffer | undefined
    let resumed = false
    const socket = tlsConnect({
      host,
      port,
      servername: 'localhost',
      ca: file('server-a.crt'),
      ALPNProtocols: ['h2'],
      ...(session !== undefined ? { session } : {}),
      ...(as !== undefined ? { key: file(`${as}.key`), cert: file(`${as}.crt`) } : {}),
    })
    socket.on('session', (t: Buffer) => { ticket = t })
    socket.once('secureConnect', () => { resumed = socket.isSessionReused() })
    const h2 = h2Connect(`https://${address}`, { createConnection: () => socket })
    h2.on('error', () => undefined)
    const body = encodeRequest({ model_name: 'm', id: 'u' })
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body])
    frame.writeUInt32BE(body.length, 1)
    const req = h2.request({ ':method': 'POST', ':path': INFER, 'content-type': 'application/grpc', te: 'trailers', 'x-user-id': 'u' })
    let status = 'refused'
    req.on('response', (h) => { if (h['grpc-status'] !== undefined) status = String(h['grpc-status']) })
    req.on('trailers', (t) => { status = String(t['grpc-status']) })
    req.on('error', () => undefined)
    req.resume()
    req.on('close', () => {
      // The ticket (TLS 1.3) comes after the handshake: give it a moment before the connection ends.
      setTimeout(() => {
        h2.destroy()
        resolve({ status, resumed, ...(ticket !== undefined ? { ticket } : {}) })
      }, 50)
    })
    req.end(frame)
  })
}

const fingerprint = (name: string): string => new X509Certificate(file(name)).fingerprint256

describe.skipIf(!hasOpenssl)('client certificates on the gRPC listener', () => {
  it('client_auth: require serves a client whose certificate chains to ca_file and refuses one without or with another CA\'s at the handshake', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require')
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u1')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt'), 'u2')).toBe(grpc.status.UNAVAILABLE)
    const refusedBefore = await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}') ?? 0
    expect(refusedBefore).toBeGreaterThanOrEqual(1)
    expect(await call(client(r.address, 'server-a.crt', 'stranger'), 'u3')).toBe(grpc.status.UNAVAILABLE)
    expect(await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}')).toBeGreaterThan(refusedBefore)
    // Only the good client's call reached the model.
    expect(await r.metric('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="OK"}')).toBe(1)
  })

  it('client_auth: request serves a client without a certificate and one with a good one, and refuses one with another CA\'s', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: request')
    expect(await call(client(r.address, 'server-a.crt'), 'u1')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u2')).toBe(grpc.status.OK)
    expect(await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}') ?? 0).toBe(0)
    expect(await call(client(r.address, 'server-a.crt', 'stranger'), 'u3')).toBe(grpc.status.UNAVAILABLE)
    expect(await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}')).toBeGreaterThanOrEqual(1)
    expect(await r.metric('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="OK"}')).toBe(2)
  })
})

describe.skipIf(!hasOpenssl)('certificate reload on the gRPC listener', () => {
  const reload = async (adminUrl: string): Promise<{ status: number; body: { result?: string; notes?: string[]; problems?: { file: string; line?: number; path: string; message: string }[] } }> => {
    const res = await fetch(`${adminUrl}/admin/reload`, { method: 'POST' })
    return { status: res.status, body: await res.json() as never }
  }

  it('a reload with the same config text puts a renewed certificate in force for new connections; an open one keeps working', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key' })
    const r = await startRouter(at, '')
    const old = client(r.address, 'server-a.crt')
    expect(await call(old, 'u1')).toBe(grpc.status.OK)
    expect(await servedFingerprint(r.address)).toBe(fingerprint('server-a.crt'))

    // Renewed in place (as cert-manager or certbot do): the config file itself is unchanged.
    await copyFile(join(dir, 'server-b.key'), join(at, 'server.key'))
    await copyFile(join(dir, 'server-b.crt'), join(at, 'server.crt'))
    // Not yet: the files are read by a reload, not by the handshake.
    expect(await servedFingerprint(r.address)).toBe(fingerprint('server-a.crt'))
    const done = await reload(r.adminUrl)
    expect(done.status).toBe(200)
    expect(done.body.result).toBe('success')
    expect(done.body.notes?.join(' ')).toContain('read again')

    expect(await servedFingerprint(r.address)).toBe(fingerprint('server-b.crt'))
    expect(await call(client(r.address, 'server-b.crt'), 'u2')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt'), 'u3')).toBe(grpc.status.UNAVAILABLE) // a new connection trusting only the old one
    // The channel opened before the reload trusts only the old certificate: its call succeeds only
    // on the connection it already had.
    expect(await call(old, 'u4')).toBe(grpc.status.OK)
    // Nothing changed: the next reload does nothing.
    expect((await reload(r.adminUrl)).body.result).toBe('unchanged')
  })

  it('the file watch follows the certificate files: a renewal written in place reloads without being asked', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require', true)
    expect(await servedFingerprint(r.address)).toBe(fingerprint('server-a.crt'))
    await copyFile(join(dir, 'server-b.key'), join(at, 'server.key'))
    await copyFile(join(dir, 'server-b.crt'), join(at, 'server.crt'))
    // Nothing else is done: the watch's reload is awaited by asking until the new certificate is
    // served (bounded; each question is a new TLS connection).
    const until = Date.now() + 30_000
    let served = ''
    while (Date.now() < until && (served = await servedFingerprint(r.address)) !== fingerprint('server-b.crt')) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(served).toBe(fingerprint('server-b.crt'))
    expect(await call(client(r.address, 'server-b.crt', 'client'), 'u1')).toBe(grpc.status.OK)
    expect(await r.metric('modelsplit_config_reloads_total{result="success"}')).toBeGreaterThanOrEqual(1)
  })

  it('a renewal that does not hold together fails the reload with a located problem and the old certificate goes on serving', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require')
    // Half a renewal: the new certificate without its key.
    await copyFile(join(dir, 'server-b.crt'), join(at, 'server.crt'))
    const failed = await reload(r.adminUrl)
    expect(failed.status).toBe(422)
    expect(failed.body.problems).toEqual([expect.objectContaining({ file: r.configFile, line: 1, path: 'listen.grpc.tls' })])
    expect(failed.body.problems?.[0]?.message).toContain('are not a PEM certificate chain and its private key')
    expect(await servedFingerprint(r.address).catch(() => 'refused')).not.toBe(fingerprint('server-b.crt'))
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u1')).toBe(grpc.status.OK)
    expect(await r.metric('modelsplit_config_reloads_total{result="failure"}')).toBe(1)

    // The key follows: the next reload commits both.
    await copyFile(join(dir, 'server-b.key'), join(at, 'server.key'))
    expect((await reload(r.adminUrl)).body.result).toBe('success')
    expect(await call(client(r.address, 'server-b.crt', 'client'), 'u2')).toBe(grpc.status.OK)
  })

  it('a reload from client_auth: require to none lets clients without a certificate in from then on', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require')
    expect(await call(client(r.address, 'server-a.crt'), 'u1')).toBe(grpc.status.UNAVAILABLE)
    const text = await readFile(r.configFile, 'utf8')
    await writeFile(r.configFile, text.replace(', ca_file: ca.crt, client_auth: require', ''))
    const done = await reload(r.adminUrl)
    expect(done.status).toBe(200)
    expect(done.body.result).toBe('success')
    expect(done.body.notes?.join(' ')).toContain('client_auth is now none (was require)')
    expect(await call(client(r.address, 'server-a.crt'), 'u2')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u3')).toBe(grpc.status.OK)
  })

  it('a reload from client_auth: none to require refuses new clients without a certificate and sends GOAWAY to the open ones', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, '')
    // Connected before the reload, without a certificate: served, then held to the new rule.
    const open = client(r.address, 'server-a.crt')
    expect(await call(open, 'u1')).toBe(grpc.status.OK)
    const good = client(r.address, 'server-a.crt', 'client')
    expect(await call(good, 'u2')).toBe(grpc.status.OK)
    const text = await readFile(r.configFile, 'utf8')
    await writeFile(r.configFile, text.replace('key_file: server.key', 'key_file: server.key, ca_file: ca.crt, client_auth: require'))
    const done = await reload(r.adminUrl)
    expect(done.status).toBe(200)
    expect(done.body.notes?.join(' ')).toContain('client_auth is now require (was none)')
    // The open channel's session got GOAWAY; its next call needs a new connection, refused at the handshake.
    expect(await call(open, 'u3')).toBe(grpc.status.UNAVAILABLE)
    expect(await call(client(r.address, 'server-a.crt'), 'u4')).toBe(grpc.status.UNAVAILABLE)
    // A client with a certificate issued under ca_file is served, on its old connection and on a new one.
    expect(await call(good, 'u5')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u6')).toBe(grpc.status.OK)
    expect(await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}')).toBeGreaterThanOrEqual(2)
  })

  it('a reload from client_auth: request to require refuses a client without a certificate that resumes a TLS session from before it', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: request')
    // Under request a client without a certificate is served, and is given a session ticket.
    const first = await callResuming(r.address)
    expect(first.status).toBe('0')
    expect(first.ticket).toBeDefined()
    // A connection that resumed that session stays open across the reload: Node calls it
    // authorized (a TLS 1.3 resumption shows no certificate, so nothing failed to verify).
    const held = h2Connect(`https://${r.address}`, {
      createConnection: () => tlsConnect({
        host: '127.0.0.1',
        port: Number(r.address.split(':')[1]),
        servername: 'localhost',
        ca: file('server-a.crt'),
        ALPNProtocols: ['h2'],
        session: first.ticket,
      }),
    })
    held.on('error', () => undefined)
    cleanups.push(() => { held.destroy() })
    const goaway = new Promise<boolean>((resolve) => {
      held.once('goaway', () => resolve(true))
      held.once('close', () => resolve(true))
    })
    await new Promise<void>((resolve) => held.once('remoteSettings', () => resolve()))
    expect((held.socket as unknown as { isSessionReused(): boolean }).isSessionReused()).toBe(true)
    const text = await readFile(r.configFile, 'utf8')
    await writeFile(r.configFile, text.replace('client_auth: request', 'client_auth: require'))
    expect((await reload(r.adminUrl)).body.result).toBe('success')
    // The open one has no certificate: GOAWAY, as for any other such connection.
    expect(await Promise.race([goaway, new Promise((resolve) => setTimeout(() => resolve(false), 2_000))])).toBe(true)
    // A new connection resuming the ticket from before the reload is not let past the new rule.
    const refusedBefore = await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}') ?? 0
    const again = await callResuming(r.address, first.ticket)
    expect(again.status).toBe('refused')
    expect(await r.metric('modelsplit_grpc_anomalies_total{kind="tls_handshake"}')).toBeGreaterThan(refusedBefore)
    expect(await r.metric('modelsplit_grpc_calls_total{route="infer",model="a",grpc_status="OK"}')).toBe(1)
    // A client with a good certificate still resumes its own session under require.
    const good = await callResuming(r.address, undefined, 'client')
    const resumed = await callResuming(r.address, good.ticket)
    expect([good.status, resumed.status, resumed.resumed]).toEqual(['0', '0', true])
  })

  it('a reload that changes ca_file (with client_auth, or alone) sends GOAWAY to open connections whose certificate the new CA did not issue', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require')
    const good = client(r.address, 'server-a.crt', 'client')
    expect(await call(good, 'u1')).toBe(grpc.status.OK)
    // The clients' CA is replaced by another one and client_auth loosened to request in one reload.
    await copyFile(join(dir, 'other-ca.crt'), join(at, 'ca.crt'))
    const text = await readFile(r.configFile, 'utf8')
    await writeFile(r.configFile, text.replace('client_auth: require', 'client_auth: request'))
    const done = await reload(r.adminUrl)
    expect(done.body.result).toBe('success')
    expect(done.body.notes?.join(' ')).toContain('whose client certificate no CA of the new ca_file issued are sent GOAWAY')
    // Its certificate would now be refused at the handshake: GOAWAY, and its next connection is refused.
    expect(await call(good, 'u2')).toBe(grpc.status.UNAVAILABLE)
    expect(await call(client(r.address, 'server-a.crt', 'stranger'), 'u3')).toBe(grpc.status.OK)
    expect(await call(client(r.address, 'server-a.crt'), 'u4')).toBe(grpc.status.OK)

    // The CA alone, client_auth unchanged: the same holds for the connection issued under the old one.
    const stranger = client(r.address, 'server-a.crt', 'stranger')
    expect(await call(stranger, 'u5')).toBe(grpc.status.OK)
    await copyFile(join(dir, 'clients-ca.crt'), join(at, 'ca.crt'))
    expect((await reload(r.adminUrl)).body.result).toBe('success')
    expect(await call(stranger, 'u6')).toBe(grpc.status.UNAVAILABLE)
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u7')).toBe(grpc.status.OK)
  })

  it('a reload that would turn TLS off is refused whole, located, and the listener keeps TLS and its client_auth', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key', 'ca.crt': 'clients-ca.crt' })
    const r = await startRouter(at, ', ca_file: ca.crt, client_auth: require')
    const text = await readFile(r.configFile, 'utf8')
    await writeFile(r.configFile, text.replace(/, tls: \{[^}]*\}/, ''))
    const refused = await reload(r.adminUrl)
    expect(refused.status).toBe(422)
    expect(refused.body.problems).toEqual([expect.objectContaining({ file: r.configFile, line: 1, path: 'listen.grpc.tls' })])
    expect(refused.body.problems?.[0]?.message).toContain('it still runs TLS, and this file says cleartext')
    expect(await call(client(r.address, 'server-a.crt'), 'u1')).toBe(grpc.status.UNAVAILABLE)
    expect(await call(client(r.address, 'server-a.crt', 'client'), 'u2')).toBe(grpc.status.OK)
  })
})

describe.skipIf(!hasOpenssl)('certificate reload under serve --workers 2', () => {
  it('POST /admin/reload to the primary puts the renewed certificate in every worker\'s listener', async () => {
    const at = await filesDir({ 'server.crt': 'server-a.crt', 'server.key': 'server-a.key' })
    const up = await startGrpcUpstream()
    cleanups.push(() => up.close())
    const configFile = join(at, 'router.yaml')
    await writeFile(configFile, tlsInferConfig(up.url, 'server.crt', 'server.key'))
    const cli = join(import.meta.dirname, '../dist/cli/main.js')
    const child = spawn(process.execPath, [cli, 'serve', '--config', configFile, '--workers', '2', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] })
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
    const m = /admin on (\S+), gRPC on https:\/\/(\S+) \(.*2 workers\)/.exec(banner)
    expect(m, banner).not.toBeNull()
    const [, adminUrl, address] = m as unknown as [string, string, string]

    // The primary hands connections to the workers in turn: six new connections reach both.
    const served = async (): Promise<string[]> => {
      const out: string[] = []
      for (let i = 0; i < 6; i++) out.push(await servedFingerprint(address))
      return out
    }
    expect(new Set(await served())).toEqual(new Set([fingerprint('server-a.crt')]))
    await copyFile(join(dir, 'server-b.key'), join(at, 'server.key'))
    await copyFile(join(dir, 'server-b.crt'), join(at, 'server.crt'))
    const res = await fetch(`${adminUrl}/admin/reload`, { method: 'POST' })
    const body = await res.json() as { result: string; notes?: string[] }
    expect(res.status).toBe(200)
    expect(body.result).toBe('success')
    expect(body.notes).toContain('applied by 2 workers')
    expect(new Set(await served())).toEqual(new Set([fingerprint('server-b.crt')]))
    expect(await call(client(address, 'server-b.crt'), 'u1')).toBe(grpc.status.OK)

    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  }, 60_000)
})
