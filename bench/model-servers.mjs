// Fixed, cheap example prediction servers for the benchmark: plain node:http, JSON in and out.
// Run as a child process (so the load generator and the servers don't share an event loop):
// `node bench/model-servers.mjs fast:model_a fast:model_b slow200:shadow_slow` prints one JSON
// line `{"model_a": port, ...}` once every server listens, and runs until SIGTERM.
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** Starts one model server on 127.0.0.1:0 that answers after `delayMs` (0 = at once). */
export function serveModel(name, delayMs) {
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      let n = 0
      try {
        const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
        n = Array.isArray(input.features) ? input.features.length : 0
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"body is not JSON"}')
        return
      }
      // MLflow's answer shape (`predictions`), the one `prediction: auto` reads first.
      const body = `{"predictions":[0.${(n * 37) % 100}],"model":"${name}","n":${n}}`
      const send = () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
      if (delayMs > 0) setTimeout(send, delayMs)
      else send()
    })
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

/** A 127.0.0.1 port with nothing listening on it: a dead shadow (connections are refused). */
export function closedPort() {
  return new Promise((resolve, reject) => {
    const s = createNetServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/**
 * Starts the servers in a child process; `specs` maps name → delay in ms.
 * Resolves to `{ urls: { name: url }, pid, close() }`.
 */
export function startModelServers(specs) {
  const args = Object.entries(specs).map(([name, delay]) => `${delay}:${name}`)
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    child.once('exit', (code) => reject(new Error(`model servers exited early (code ${code})`)))
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      out += chunk
      const nl = out.indexOf('\n')
      if (nl < 0) return
      const ports = JSON.parse(out.slice(0, nl))
      const urls = Object.fromEntries(Object.entries(ports).map(([n, p]) => [n, `http://127.0.0.1:${p}`]))
      child.removeAllListeners('exit')
      resolve({
        urls,
        pid: child.pid,
        close: () => new Promise((done) => {
          if (child.exitCode !== null) return done()
          child.once('exit', () => done())
          process.kill(child.pid, 'SIGTERM')
        }),
      })
    })
  })
}

async function main(argv) {
  const ports = {}
  const servers = []
  for (const arg of argv) {
    const i = arg.indexOf(':')
    const delay = Number(arg.slice(0, i))
    const name = arg.slice(i + 1)
    const server = await serveModel(name, delay)
    servers.push(server)
    ports[name] = server.address().port
  }
  process.stdout.write(`${JSON.stringify(ports)}\n`)
  process.once('SIGTERM', () => {
    for (const s of servers) s.closeAllConnections?.()
    process.exit(0)
  })
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.slice(2))
}
