import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

export interface Upstream {
  readonly url: string
  readonly port: number
  readonly requests: Received[]
  /** Resolves with the next request not yet claimed by an earlier call (one request per call). */
  nextRequest(): Promise<Received>
  close(): Promise<void>
}

type Handler = (req: Received, res: ServerResponse, raw: IncomingMessage) => void

/** A real HTTP server on an ephemeral 127.0.0.1 port that records what it receives. */
export async function startUpstream(handler: Handler = jsonEcho('model')): Promise<Upstream> {
  const requests: Received[] = []
  const waiters: ((r: Received) => void)[] = []
  const server = createServer((raw, res) => {
    const chunks: Buffer[] = []
    raw.on('data', (c: Buffer) => chunks.push(c))
    raw.on('end', () => {
      const r: Received = { method: raw.method ?? '', url: raw.url ?? '', headers: raw.headers, body: Buffer.concat(chunks).toString('utf8') }
      requests.push(r)
      waiters.shift()?.(r)
      handler(r, res, raw)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    nextRequest: () => new Promise((resolve) => waiters.push(resolve)),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** Answers {"predictions":[name]} with the request echoed in headers, like a model server would. */
export function jsonEcho(name: string, status = 200): Handler {
  return (_req, res) => {
    const body = JSON.stringify({ predictions: [name] })
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-served-by': name })
    res.end(body)
  }
}

/** A 127.0.0.1 port nothing listens on right now (bound to port 0, then closed): free to listen on, or refusing connections. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** A port that refuses connections: bound, then closed. */
export const closedPort = freePort
