// gRPC over raw node:http2 for tests: a fake model server that records what it receives, and a
// client that sends length-prefixed messages and reads back headers, messages and trailers.
import { connect, createServer, constants, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream, type OutgoingHttpHeaders } from 'node:http2'
import type { AddressInfo } from 'node:net'

export interface GrpcReceived {
  readonly headers: IncomingHttpHeaders
  /** The request's bytes as they arrived (prefixes included). */
  readonly body: Buffer
  readonly stream: ServerHttp2Stream
}

export interface GrpcUpstream {
  readonly url: string
  readonly received: GrpcReceived[]
  /** Resolves with the next call not yet claimed (a call is handed over once its body ended, or at once with `early`). */
  next(): Promise<GrpcReceived>
  close(): Promise<void>
}

/** What a fake model does with a call: by default, answers one message (the request's payload) and OK. */
export type GrpcHandler = (call: GrpcReceived) => void

export function frame(payload: Buffer, compressed = false): Buffer {
  const p = Buffer.alloc(5)
  p[0] = compressed ? 1 : 0
  p.writeUInt32BE(payload.length, 1)
  return Buffer.concat([p, payload])
}

/** Splits a stream of length-prefixed messages into their payloads. */
export function unframe(body: Buffer): Buffer[] {
  const out: Buffer[] = []
  let i = 0
  while (i + 5 <= body.length) {
    const n = body.readUInt32BE(i + 1)
    out.push(body.subarray(i + 5, i + 5 + n))
    i += 5 + n
  }
  return out
}

/** Answers the call with these messages and trailers. */
export function answer(stream: ServerHttp2Stream, messages: Buffer[], trailers: OutgoingHttpHeaders = { 'grpc-status': '0' }, headers: OutgoingHttpHeaders = {}): void {
  if (stream.destroyed) return
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...headers }, { waitForTrailers: true })
  stream.once('wantTrailers', () => stream.sendTrailers(trailers))
  for (const m of messages) stream.write(frame(m))
  stream.end()
}

export const echo: GrpcHandler = (call) => answer(call.stream, unframe(call.body), { 'grpc-status': '0', 'x-trailer': 'kept' }, { 'x-served-by': 'upstream' })

/** A gRPC model server on an ephemeral 127.0.0.1 port. `early`: hand calls over at their headers. */
export async function startGrpcUpstream(handler: GrpcHandler = echo, opts: { early?: boolean } = {}): Promise<GrpcUpstream> {
  const received: GrpcReceived[] = []
  const waiters: ((r: GrpcReceived) => void)[] = []
  let claimed = 0
  const server = createServer()
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined)
    const chunks: Buffer[] = []
    const r: { headers: IncomingHttpHeaders; body: Buffer; stream: ServerHttp2Stream } = { headers, body: Buffer.alloc(0), stream }
    const hand = (): void => {
      received.push(r)
      const w = waiters.shift()
      if (w !== undefined) { claimed++; w(r) }
      handler(r)
    }
    stream.on('data', (c: Buffer) => { chunks.push(c); r.body = Buffer.concat(chunks) })
    if (opts.early === true) hand()
    else stream.on('end', hand)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    next: () => new Promise((resolve) => {
      if (claimed < received.length) resolve(received[claimed++] as GrpcReceived)
      else waiters.push(resolve)
    }),
    close: () => new Promise((resolve) => {
      server.close(() => resolve())
      // Sessions the router keeps open would hold close() forever.
      for (const s of sessions(server)) s.destroy()
    }),
  }
}

function sessions(server: ReturnType<typeof createServer>): { destroy(): void }[] {
  const out: { destroy(): void }[] = []
  const sym = Object.getOwnPropertySymbols(server).find((s) => s.description === 'sessions')
  const set = sym === undefined ? undefined : (server as unknown as Record<symbol, Set<{ destroy(): void }>>)[sym]
  if (set !== undefined) for (const s of set) out.push(s)
  return out
}

export interface GrpcResult {
  readonly headers: IncomingHttpHeaders
  readonly messages: Buffer[]
  readonly trailers: IncomingHttpHeaders
  /** grpc-status from the trailers (or the headers of a trailers-only answer); -1 if the stream was reset. */
  readonly status: number
  readonly message: string
  readonly rstCode: number
}

/** One call: sends the messages (or raw bytes) with metadata, waits for the end. */
export function grpcCall(session: ClientHttp2Session, path: string, body: Buffer[] | Buffer, metadata: OutgoingHttpHeaders = {}): Promise<GrpcResult> {
  return new Promise((resolve) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...metadata })
    req.on('error', () => undefined)
    let headers: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    req.on('response', (h) => { headers = h })
    req.on('trailers', (t) => { trailers = t })
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('close', () => {
      const s = trailers['grpc-status'] ?? headers['grpc-status']
      const m = trailers['grpc-message'] ?? headers['grpc-message']
      resolve({
        headers, trailers, messages: unframe(Buffer.concat(chunks)),
        status: s === undefined ? -1 : Number(s),
        message: typeof m === 'string' ? decodeURIComponent(m) : '',
        rstCode: req.rstCode ?? constants.NGHTTP2_NO_ERROR,
      })
    })
    req.end(Array.isArray(body) ? Buffer.concat(body.map((m) => frame(m))) : body)
  })
}

export function dial(url: string): ClientHttp2Session {
  const s = connect(url)
  s.on('error', () => undefined)
  return s
}

// --- protobuf, as the tests need it -------------------------------------------------------------

function varint(n: number): Buffer {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 128) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Buffer.from(out)
}

/** A length-delimited field. */
export function field(number: number, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  return Buffer.concat([varint(number * 8 + 2), varint(v.length), v])
}

/** A ModelInferRequest with model_name (1), id (3) and some opaque bytes standing for inputs (5). */
export function inferRequest(modelName: string, id = 'req-1', inputs: Buffer = Buffer.from([1, 2, 3, 250])): Buffer {
  return Buffer.concat([field(1, modelName), field(3, id), field(5, inputs)])
}
