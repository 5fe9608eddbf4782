// llama.cpp's server for the tests (test/fixtures/llamacpp/serve.py: xllamacpp, which embeds
// llama.cpp's own C++ server, with tiny random-weight models the script writes with gguf-py), and
// a recording tap to put between the router and it: a plain HTTP relay that keeps the bytes of
// each request body and each answer body exactly as they crossed it.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const SERVE = fileURLToPath(new URL('../fixtures/llamacpp/serve.py', import.meta.url))

export interface LlamaServers {
  /** One base URL per seed, in order (http://127.0.0.1:PORT). */
  readonly urls: readonly string[]
  close(): Promise<void>
}

/** Starts one llama.cpp server per seed (each its own tiny model) with `python`; resolves when all listen. */
export async function startLlamaServers(python: string, dir: string, seeds: readonly number[]): Promise<LlamaServers> {
  const child: ChildProcess = spawn(python, [SERVE, dir, ...seeds.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-4000)
  })
  const urls = await new Promise<string[]>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.once('line', (line) => {
      lines.close()
      resolve((JSON.parse(line) as { servers: string[] }).servers)
    })
    child.once('exit', (code) => reject(new Error(`serve.py exited (${String(code)}) before listening:\n${stderr}`)))
  })
  return {
    urls,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) {
        resolve()
        return
      }
      child.once('exit', () => resolve())
      child.stdin?.end() // serve.py serves until its standard input closes
      setTimeout(() => child.kill('SIGKILL'), 5000).unref()
    }),
  }
}

export interface Exchange {
  readonly path: string
  /** The request body as the tap received it (from the router). */
  readonly requestBody: string
  status: number
  headers: IncomingHttpHeaders
  /** The answer's header lines as the server wrote them (name, value, name, value, ...). */
  rawHeaders: string[]
  /** The answer body's bytes as the server sent them (transfer coding removed), in arrival order. */
  readonly chunks: Buffer[]
  /** The server's answer ended (it closed its body). */
  ended: boolean
  /** The router closed its side before the answer ended. */
  cutByRouter: boolean
  /** Resolves when the exchange is over, either way. */
  readonly done: Promise<void>
}

export interface Tap {
  readonly url: string
  readonly exchanges: Exchange[]
  /** Resolves with the first exchange from index `from` on that `match` accepts, as soon as its request is in. */
  waitFor(from: number, match: (ex: Exchange) => boolean): Promise<Exchange>
  close(): Promise<void>
}

/** A relay to `target` that records every exchange; closing its client's side closes the server's. */
export async function startTap(target: string): Promise<Tap> {
  const exchanges: Exchange[] = []
  const waiters = new Set<() => void>()
  const to = new URL(target)
  const server = createServer((req, res) => {
    const body: Buffer[] = []
    req.on('data', (c: Buffer) => body.push(c))
    req.on('end', () => {
      let finish = (): void => {}
      const ex: Exchange = {
        path: req.url ?? '',
        requestBody: Buffer.concat(body).toString('utf8'),
        status: 0,
        headers: {},
        rawHeaders: [],
        chunks: [],
        ended: false,
        cutByRouter: false,
        done: new Promise<void>((resolve) => {
          finish = resolve
        }),
      }
      exchanges.push(ex)
      for (const w of waiters) w()
      const up = httpRequest({
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: to.host },
        agent: false,
      }, (upRes) => {
        ex.status = upRes.statusCode ?? 0
        ex.headers = upRes.headers
        ex.rawHeaders = upRes.rawHeaders
        res.writeHead(ex.status, upRes.headers)
        upRes.on('data', (c: Buffer) => {
          ex.chunks.push(c)
          res.write(c)
        })
        upRes.on('end', () => {
          ex.ended = true
          res.end()
          finish()
        })
        upRes.on('error', () => finish())
      })
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502)
        res.end()
        finish()
      })
      res.on('close', () => {
        if (!ex.ended) {
          ex.cutByRouter = true
          up.destroy()
          finish()
        }
      })
      up.end(Buffer.concat(body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    exchanges,
    waitFor: (from, match) => new Promise<Exchange>((resolve) => {
      const check = (): void => {
        const ex = exchanges.slice(from).find(match)
        if (ex === undefined) return
        waiters.delete(check)
        resolve(ex)
      }
      waiters.add(check)
      check()
    }),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** The answer body an exchange carried, as text. */
export function answerText(ex: Exchange): string {
  return Buffer.concat(ex.chunks).toString('utf8')
}
