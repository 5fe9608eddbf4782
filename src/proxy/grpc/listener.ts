import { X509Certificate } from 'node:crypto'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { requestIdOf } from '../listener.js'
import { GrpcOnlyError } from '../../errors.js'
import type { ClientAuth, GrpcTlsMaterial } from '../../config/types.js'
import { pemCertificates, sameClientCa } from '../../config/load.js'
import type { Runtime } from '../runtime.js'
import { GrpcCall, type GrpcAnomaly, type GrpcContext } from './call.js'
import { UNAVAILABLE, UNIMPLEMENTED, encodeMessage } from '../../upstream/grpc-wire.js'

export interface GrpcListenerDeps {
  /** The runtime in force; read once per call and kept to its end. */
  current(): Runtime
  readonly ctx: GrpcContext
  /**
   * TLS (ALPN h2) with the certificate, key and CA the compile read (`useTls` swaps them on a
   * reload); with client_auth, client certificates checked against the CA. Absent: h2c.
   */
  readonly tls?: { readonly material: GrpcTlsMaterial; readonly clientAuth: ClientAuth }
}

/** What the listener counts in modelsplit_grpc_anomalies_total: the calls' kinds and its own. */
type ListenerAnomaly = GrpcAnomaly | 'tls_handshake'

/** The HTTP/2 connection preface (RFC 9113 §3.4): what every h2c client sends first. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

const HTTP1_ANSWER = (() => {
  const err = new GrpcOnlyError()
  const body = JSON.stringify({ statusCode: err.statusCode, code: err.code, error: 'HTTP Version Not Supported', message: err.message })
  return `HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
})()

/**
 * The gRPC listener: HTTP/2 cleartext, each call (stream) decided on its own by the same plan as
 * HTTP, so one connection carrying many users spreads them by weight. Thin glue: what to do is
 * the plan's (plan/decide.ts), how to forward is GrpcCall's.
 */
export class GrpcListener {
  readonly #deps: GrpcListenerDeps
  readonly #h2: Http2Server
  readonly #net: NetServer | TlsServer
  readonly #scheme: 'http' | 'https'
  readonly #sessions = new Set<Http2Session>()
  /** The client_auth in force (`none` without TLS); a reload may change it (useTls). */
  #clientAuth: ClientAuth = 'none'
  /** The certificate, key and CA in force (undefined without TLS). */
  #material: GrpcTlsMaterial | undefined

  constructor(deps: GrpcListenerDeps) {
    this.#deps = deps
    this.#h2 = createH2Server()
    this.#h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onStream(stream, headers))
    this.#h2.on('session', (s: Http2Session) => {
      this.#sessions.add(s)
      s.once('close', () => this.#sessions.delete(s))
    })
    // A peer that breaks the protocol ends its own session; the router goes on.
    this.#h2.on('sessionError', () => this.#anomaly('session_error'))
    if (deps.tls === undefined) {
      // The first bytes tell an HTTP/2 client from an HTTP/1.1 one, which gets a readable answer
      // instead of a GOAWAY frame it cannot parse.
      this.#net = createNetServer((socket) => this.#onSocket(socket))
      this.#scheme = 'http'
      return
    }
    // Over TLS, ALPN tells them apart (RFC 7301; gRPC clients offer h2, PROTOCOL-HTTP2.md). An
    // HTTP/1.1 client, or one that offers no protocol, is let through the handshake (`http/1.1` is
    // offered too) so it can be told why.
    // client_auth (as nginx's ssl_verify_client on | optional): `require` lets OpenSSL refuse a
    // client without a certificate that chains to ca_file at the handshake; `request` asks for
    // one, lets a client without any through, and refuses one whose certificate does not verify.
    const clientAuth = deps.tls.clientAuth
    this.#clientAuth = clientAuth
    this.#net = createTlsServer({
      ...contextOptions(deps.tls.material),
      ALPNProtocols: ['h2', 'http/1.1'],
      requestCert: clientAuth !== 'none',
      rejectUnauthorized: clientAuth === 'require',
    }, (socket) => this.#onTlsSocket(socket))
    this.#net.on('tlsClientError', () => this.#anomaly('tls_handshake'))
    this.#scheme = 'https'
    this.#material = deps.tls.material
  }

  /**
   * Puts a reloaded certificate, key and CA, and client_auth, in force for the handshakes that
   * follow. Open connections keep the certificate they were made with; when client_auth or the
   * clients' CA changes, those the new setting would have refused at their handshake (no
   * certificate, one that did not verify, or one no CA of the new ca_file issued) are sent GOAWAY,
   * so their calls under way finish and the client's next connection meets the new rule. Called
   * once a reload has committed, with what its compile read and checked. False when the listener
   * has no TLS (a restart adds it).
   */
  useTls(material: GrpcTlsMaterial, clientAuth: ClientAuth): boolean {
    const net = this.#net
    if (this.#scheme !== 'https' || !('setSecureContext' in net)) return false
    const caChanged = !sameClientCa(this.#material, material)
    if (material.sha256 !== this.#material?.sha256) {
      net.setSecureContext(contextOptions(material))
      this.#material = material
    }
    if (clientAuth === this.#clientAuth && !caChanged) return true
    if (clientAuth !== this.#clientAuth) {
      // What tls.Server reads for every connection it accepts (node:_tls_wrap's
      // tlsConnectionListener), set from the same-named options when it was made.
      const server = net as unknown as { requestCert: boolean; rejectUnauthorized: boolean }
      server.requestCert = clientAuth !== 'none'
      server.rejectUnauthorized = clientAuth === 'require'
      this.#clientAuth = clientAuth
    }
    // A connection's `authorized` was decided against the CA of its handshake: with a new one its
    // certificate is checked again against the new ca_file.
    const cas = caChanged && material.ca !== undefined ? certificatesOf(material.ca) : undefined
    for (const s of this.#sessions) {
      // A session already ending has no socket to ask (and takes no new calls).
      if (s.destroyed || s.closed) continue
      const socket = s.socket as TLSSocket
      if (isRefusedBy(clientAuth, socket) || (cas !== undefined && !isIssuedUnder(socket, cas))) s.close()
    }
    return true
  }

  /** Starts listening; resolves with the `http://host:port` clients dial (h2c), `https://` with TLS. */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#net.once('error', reject)
      this.#net.listen(port, host, () => {
        this.#net.off('error', reject)
        const a = this.#net.address() as AddressInfo
        resolve(`${this.#scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`)
      })
    })
  }

  /** Stops accepting; open sessions get GOAWAY and finish their calls. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()))
    for (const s of this.#sessions) s.close()
    await closed
  }

  /** Ends every session at once (shutdown past its deadline). */
  destroyAll(): void {
    for (const s of this.#sessions) s.destroy()
  }

  #onSocket(socket: Socket): void {
    socket.on('error', noop)
    socket.once('data', (chunk: Buffer) => {
      socket.pause()
      const n = Math.min(chunk.length, PREFACE.length)
      if (chunk.subarray(0, n).equals(PREFACE.subarray(0, n))) {
        socket.unshift(chunk)
        this.#h2.emit('connection', socket)
        return
      }
      this.#anomaly('http1_client')
      endHttp1(socket)
    })
  }

  #onTlsSocket(socket: TLSSocket): void {
    socket.on('error', noop)
    if (isRefusedBy(this.#clientAuth, socket)) {
      // `request`: presented, and not issued under ca_file (or expired): refused as `require` would
      // have. `require`: OpenSSL refused the rest, but not a TLS 1.3 resumption of a session
      // without a certificate (a ticket from before a reload tightened client_auth).
      this.#anomaly('tls_handshake')
      socket.destroy()
      return
    }
    if (socket.alpnProtocol === 'h2') {
      this.#h2.emit('connection', socket)
      return
    }
    this.#anomaly('http1_client')
    endHttp1(socket)
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', noop) // a reset stream's error is handled by its close
    const requestId = requestIdOf(headers['x-request-id'])
    const ctx = this.#deps.ctx
    const type = headers['content-type']
    if (headers[':method'] !== 'POST' || typeof type !== 'string' || !type.startsWith('application/grpc')) {
      // PROTOCOL-HTTP2.md: a request that is not gRPC gets 415, so a browser or curl sees why.
      this.#anomaly('not_grpc')
      if (!stream.destroyed) stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8', 'x-request-id': requestId }, { endStream: false })
      stream.end('this port takes gRPC calls only (POST, content-type application/grpc)\n')
      return
    }
    if (ctx.isShuttingDown()) return status(stream, requestId, UNAVAILABLE, 'the router is shutting down', this, 'shutting_down')
    const runtime = this.#deps.current()
    const path = headers[':path'] ?? ''
    const candidates = runtime.grpcByMethod.get(path)
    if (candidates === undefined) return status(stream, requestId, UNIMPLEMENTED, `no route for method ${path}`, this, 'unimplemented')
    new GrpcCall(ctx, stream, headers, runtime, candidates, path, requestId).begin()
  }

  /** @internal */ anomaly(kind: GrpcAnomaly): void {
    this.#anomaly(kind)
  }

  #anomaly(kind: ListenerAnomaly): void {
    this.#deps.ctx.metrics.grpcAnomalies.labels({ kind }).inc()
  }
}

/**
 * Whether `clientAuth` refuses a connection whose handshake showed what `socket` did: `require`
 * one without a certificate or with one not issued under ca_file, `request` one that presented a
 * certificate that did not verify; `none` refuses none. Node calls a TLS 1.3 resumption without a
 * certificate authorized (its VerifyPeerCertificate has nothing to check), so that is not asked alone.
 */
function isRefusedBy(clientAuth: ClientAuth, socket: TLSSocket): boolean {
  if (clientAuth === 'none') return false
  const presented = socket.getPeerX509Certificate() !== undefined
  return clientAuth === 'require' ? !presented || !socket.authorized : presented && !socket.authorized
}

/**
 * Whether the certificate a connection's peer presented, or one of the chain it showed, is one of
 * `cas` or was issued (names and signature) by one; true when it presented none (that is for
 * client_auth to judge).
 */
function isIssuedUnder(socket: TLSSocket, cas: readonly X509Certificate[]): boolean {
  const chain: X509Certificate[] = []
  let c = socket.getPeerCertificate(true)
  for (; c?.raw !== undefined && chain.length < 10; c = c.issuerCertificate) {
    const x = new X509Certificate(c.raw)
    if (chain.some((y) => y.fingerprint256 === x.fingerprint256)) break // a self-signed root is its own issuer
    chain.push(x)
  }
  if (chain.length === 0) return true
  const issues = (ca: X509Certificate, x: X509Certificate): boolean =>
    ca.fingerprint256 === x.fingerprint256 || (x.checkIssued(ca) && x.verify(ca.publicKey))
  return chain.some((x) => cas.some((ca) => issues(ca, x)))
}

/** The certificates of a PEM bundle the compile has checked. */
function certificatesOf(pem: Buffer): X509Certificate[] {
  return pemCertificates(pem).map((b) => new X509Certificate(b))
}

/** A call the router answers itself, trailers-only (PROTOCOL-HTTP2.md: status in the headers). */
function status(stream: ServerHttp2Stream, requestId: string, code: number, message: string, listener: GrpcListener, kind: GrpcAnomaly): void {
  listener.anomaly(kind)
  if (stream.destroyed || stream.closed) return
  stream.respond({
    ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeMessage(message), 'x-request-id': requestId,
  }, { endStream: true })
  // What the client still sends is not read: the call is over.
  stream.resume()
}

/**
 * Answers an HTTP/1.1 client and lets the socket close: what it still sends is read and dropped,
 * so its FIN is seen and the socket does not linger half-open (holding close() until the deadline).
 */
function endHttp1(socket: Socket): void {
  socket.end(HTTP1_ANSWER)
  socket.resume()
}

function contextOptions(m: GrpcTlsMaterial): { cert: Buffer; key: Buffer; ca?: Buffer } {
  return m.ca !== undefined ? { cert: m.cert, key: m.key, ca: m.ca } : { cert: m.cert, key: m.key }
}

function noop(): void {}
