// The floor modelsplit is measured against: "a bare Node proxy (a node:http server forwarding
// through an undici Pool after a murmur2 split, nothing else)". No metrics, no logging, no config.
// Run as a child process, like the router:
//   node bench/node-floor.mjs PREFIX MODEL_A_URL MODEL_B_URL [SHADOW_URL]
// serves PREFIX/... (e.g. /split/predict), forwards the remainder (/predict) to model_a or model_b
// by murmur2(x-user-id) < 2^31, and with SHADOW_URL also mirrors every request there, reading and
// discarding the answer. Prints `node-floor: listening on URL` once it listens; exits on SIGTERM.
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { fileURLToPath, pathToFileURL } from 'node:url'
import murmurhash from 'murmurhash'
import { Pool } from 'undici'

// Hop-by-hop headers (RFC 9110 §7.6.1) stay on their own connection; host comes from the pool's
// origin. `expect` too: node:http answers 100-continue itself, and undici refuses the header.
const SKIP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect'])
const SKIP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const HALF = 0x80000000 // 50/50: murmur2 hashes below 2^31 go to model_a, as nginx's split_clients 50% does
// murmurhash.v2 given a string builds a TextEncoder per call; one shared encoder gives the same
// hash (MurmurHash2, seed 0, UTF-8 bytes) without that, as modelsplit's own nginxHash does.
const ENCODER = new TextEncoder()

function forwardHeaders(headers) {
  const out = {}
  for (const name in headers) if (!SKIP_REQUEST.has(name)) out[name] = headers[name]
  // RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too (rare; the load sends none).
  const listed = headers.connection
  if (listed !== undefined && !/^(keep-alive|close)$/i.test(listed)) {
    for (const name of listed.split(',')) delete out[name.trim().toLowerCase()]
  }
  return out
}

// `pool.dispatch` with this handler rather than `pool.request` + pipe: request() adds a promise,
// a Readable for the body and a pipe per request; here each chunk goes straight to the client.
// It implements undici's DispatchHandler interface (onRequestStart ... onResponseError).
class ReplyHandler {
  constructor(res) {
    this.res = res
  }

  onRequestStart() {}

  onResponseStart(controller, statusCode, headers) {
    for (const name in headers) if (SKIP_RESPONSE.has(name)) delete headers[name]
    this.res.writeHead(statusCode, headers)
  }

  // Backpressure from a slow client pauses the upstream. (A client that goes away mid-answer is
  // not handled: the load never does that, and the floor does nothing it does not need.)
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause()
      this.res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd() {
    this.res.end()
  }

  onResponseError(_controller, _err) {
    if (this.res.headersSent) this.res.destroy()
    else this.res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"bad gateway"}')
  }
}

// The mirror's answer is read (undici consumes it to reuse the connection) and dropped.
const DISCARD = {
  onRequestStart() {},
  onResponseStart() {},
  onResponseData() {},
  onResponseEnd() {},
  onResponseError() {},
}

/** Starts the floor proxy on 127.0.0.1:0; resolves to the listening server. */
export function serveFloor(prefix, urlA, urlB, shadowUrl) {
  // Pool sizes as modelsplit's: connections: 128 per model (topology.mjs), 256 per shadow.
  const pools = [new Pool(urlA, { connections: 128 }), new Pool(urlB, { connections: 128 })]
  const shadow = shadowUrl === undefined ? undefined : new Pool(shadowUrl, { connections: 256, pipelining: 1 })

  const server = createServer((req, res) => {
    const url = req.url
    const rest = url.slice(prefix.length)
    if (!url.startsWith(prefix) || (rest !== '' && rest[0] !== '/' && rest[0] !== '?')) {
      res.writeHead(404).end()
      return
    }
    const path = rest === '' || rest[0] === '?' ? `/${rest}` : rest
    const id = req.headers['x-user-id']
    // No user id → model_a, as the modelsplit routes' `missing_user_id: model_a`.
    const pool = pools[id === undefined || murmurhash.v2(ENCODER.encode(id), 0) < HALF ? 0 : 1]
    const headers = forwardHeaders(req.headers)
    if (shadow === undefined) {
      // Split only: the body streams through, as modelsplit streams it on a route that never reads it.
      const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined
      pool.dispatch({ method: req.method, path, headers, body: hasBody ? req : null }, new ReplyHandler(res))
      return
    }
    // With a mirror the body goes twice, so it is read once into a Buffer (modelsplit buffers a
    // mirrored body too); the primary goes first and nothing waits for the mirror.
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = chunks.length === 0 ? null : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
      const opts = { method: req.method, path, headers, body }
      pool.dispatch(opts, new ReplyHandler(res))
      shadow.dispatch(opts, DISCARD)
    })
  })
  server.keepAliveTimeout = 75_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

/**
 * Spawns the floor proxy as a child process for `prefix` (e.g. `/split`) in front of `urls.model_a`
 * and `urls.model_b`, mirroring to `shadowUrl` if given (`nodeArgs`: node's own flags, e.g. to
 * profile it). Resolves to `{ url, pid, close() }`.
 */
export function startFloor(prefix, urls, shadowUrl, { nodeArgs = [] } = {}) {
  const args = [...nodeArgs, fileURLToPath(import.meta.url), prefix, urls.model_a, urls.model_b, ...(shadowUrl === undefined ? [] : [shadowUrl])]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return new Promise((resolve, reject) => {
    let out = ''
    void exited.then((code) => reject(new Error(`bench: node-floor exited early (code ${code})`)))
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      out += chunk
      const m = /listening on (\S+)/.exec(out)
      if (m === null) return
      child.stdout.removeAllListeners('data')
      child.stdout.resume()
      resolve({
        url: m[1],
        pid: child.pid,
        async close() {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM')
          await exited
        },
      })
    })
  })
}

/**
 * Sends each user id once through the floor and once through modelsplit (`/split/predict` of
 * both) and compares the model that answered: the floor is only a floor if it splits the same way.
 * Resolves to `{ ids, same, differ: [id...], models: { model: count } }` (counts from the floor).
 */
export async function compareSplit(floorUrl, msUrl, ids) {
  const ask = async (base, id) => {
    const res = await fetch(`${base}/split/predict`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': id }, body: '{"features":[1]}' })
    const text = await res.text()
    try {
      return JSON.parse(text).model ?? `HTTP ${res.status}`
    } catch {
      return `HTTP ${res.status}`
    }
  }
  const out = { ids: ids.length, same: 0, differ: [], models: {} }
  for (let i = 0; i < ids.length; i += 32) {
    await Promise.all(ids.slice(i, i + 32).map(async (id) => {
      const [floor, ms] = await Promise.all([ask(floorUrl, id), ask(msUrl, id)])
      out.models[floor] = (out.models[floor] ?? 0) + 1
      if (floor === ms) out.same++
      else out.differ.push(`${id}: node-floor ${floor}, modelsplit ${ms}`)
    }))
  }
  return out
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [prefix, urlA, urlB, shadowUrl] = process.argv.slice(2)
  const server = await serveFloor(prefix, urlA, urlB, shadowUrl)
  process.stdout.write(`node-floor: listening on http://127.0.0.1:${server.address().port}\n`)
  process.once('SIGTERM', () => process.exit(0))
}
