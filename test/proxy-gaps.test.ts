// The data path's remaining gaps (issue 18, items 17–20): requests HTTP/1.1 refuses, answers a
// model must not relay, a client that leaves mid-answer, the router's own pool saturation, and
// what a capture costs. Real servers on 127.0.0.1 ephemeral ports, no sleeps as synchronisation.
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { Capture, CaptureBudget } from '../src/upstream/capture.js'

const metrics = async (r: RunningRouter): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
const portOf = (url: string): number => Number(new URL(url).port)
/** A bounded wait used only to detect a hang (never to let something else happen first). */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'hung'> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), ms) })]).finally(() => clearTimeout(timer))
}

/** Sends bytes on a fresh connection; resolves with everything read once the router closes it. */
function rawExchange(url: string, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(portOf(url), '127.0.0.1', () => s.write(text))
    let out = ''
    s.on('data', (d: Buffer) => { out += d.toString('latin1') })
    s.on('error', () => undefined)
    const timer = setTimeout(() => s.destroy(), 3000)
    s.on('close', () => { clearTimeout(timer); resolve(out) })
  })
}

/** A "model" that writes `answer` verbatim on its socket for each request head it reads. */
async function rawModel(answer: string): Promise<string> {
  const sockets = new Set<Socket>()
  const srv = createTcpServer((c) => {
    sockets.add(c)
    c.on('close', () => sockets.delete(c))
    c.on('error', () => undefined)
    let buf = ''
    c.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      if (buf.indexOf('\r\n\r\n') < 0) return
      buf = ''
      c.write(answer)
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  onTestFinished(() => new Promise<void>((resolve) => { for (const c of sockets) c.destroy(); srv.close(() => resolve()) }))
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
}

const oneRoute = (modelUrl: string, model = '', extra = '', route = '') => `${extra}models:
  a: { url: "${modelUrl}", timeout_ms: 2000${model} }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
${route}`

describe('requests and answers HTTP does not allow (item 17)', () => {
  it('answers 400 to an HTTP/1.1 request without Host (RFC 9112 §3.2), and still serves HTTP/1.0 without it', async () => {
    const a = await upstream()
    const r = await router(oneRoute(a.url))
    const out = await rawExchange(r.url, 'GET /r HTTP/1.1\r\nconnection: close\r\n\r\n')
    expect(out).toMatch(/^HTTP\/1\.1 400 /)
    expect(out).toContain('"code":"MS_HOST_REQUIRED"')
    expect(a.requests).toHaveLength(0)
    // HTTP/1.0 has no Host requirement.
    const old = await rawExchange(r.url, 'GET /r HTTP/1.0\r\n\r\n')
    expect(old).toMatch(/^HTTP\/1\.1 200 /)
    expect(a.requests).toHaveLength(1)
    expect((await metrics(r)).get('modelsplit_request_errors_total{route="",code="MS_HOST_REQUIRED"}')).toBe(1)
  })

  it.each([
    ['/r/a%zzb'],
    ['/r/a%4'],
    ['/r/a%'],
    ['/r/%g0/x'],
  ])('refuses invalid percent-encoding in %s with 400 MS_BAD_PATH, before the model sees it', async (path) => {
    const a = await upstream()
    const r = await router(oneRoute(a.url))
    const out = await rawExchange(r.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n`)
    expect(out).toMatch(/^HTTP\/1\.1 400 /)
    expect(out).toContain('"code":"MS_BAD_PATH"')
    expect(out).toContain('percent-encoding')
    expect(a.requests).toHaveLength(0)
  })

  it('still forwards valid percent-encoding', async () => {
    const a = await upstream()
    const r = await router(oneRoute(a.url))
    const res = await fetch(`${r.url}/r/a%20b/%C3%A9`)
    expect(res.status).toBe(200)
    expect(a.requests[0]?.url).toBe('/a%20b/%C3%A9')
  })

  it.each([999, 600])('answers 502 MS_UPSTREAM_ERROR when the model answers status %s (outside 100–599)', async (status) => {
    const url = await rawModel(`HTTP/1.1 ${status} Odd\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`)
    const r = await router(oneRoute(url))
    const res = await fetch(`${r.url}/r`)
    expect(res.status).toBe(502)
    const body = await res.json() as { code: string; model: string; message: string }
    expect(body).toMatchObject({ code: 'MS_UPSTREAM_ERROR', model: 'a' })
    expect(body.message).toContain(String(status))
    const m = await metrics(r)
    expect(m.get('modelsplit_upstream_errors_total{route="r",model="a",reason="other"}')).toBe(1)
    expect(m.get('modelsplit_requests_total{route="r",model="a",code="502"}')).toBe(1)
    expect(m.get(`modelsplit_requests_total{route="r",model="a",code="${status}"}`)).toBeUndefined()
  })
})

describe('a client that hangs up mid-answer (item 18)', () => {
  it('closes the model connection at once when the client leaves in the middle of a 64 MB answer', async () => {
    const size = 64 * 1024 * 1024
    const part = Buffer.alloc(1024 * 1024, 'x')
    const modelSockets: Socket[] = []
    const responses: ServerResponse[] = []
    const srv = createHttpServer((_req, res) => {
      responses.push(res)
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
      // Writes as fast as the router reads, so the answer is still going when the client leaves.
      let sent = 0
      const more = (): void => {
        while (sent < size) {
          sent += part.length
          if (!res.write(part)) return void res.once('drain', more)
        }
        res.end()
      }
      more()
    })
    srv.on('connection', (s: Socket) => modelSockets.push(s))
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()) }))
    const r = await router(oneRoute(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`))
    for (let i = 0; i < 3; i++) {
      const before = modelSockets.length
      const client = connect(portOf(r.url), '127.0.0.1')
      onTestFinished(() => { client.destroy() })
      client.on('error', () => undefined)
      let received = 0
      const started = new Promise<void>((resolve) => client.on('data', (d: Buffer) => {
        received += d.length
        if (received > 4 * 1024 * 1024) resolve()
      }))
      client.write('GET /r HTTP/1.1\r\nHost: x\r\n\r\n')
      await started
      const model = modelSockets[modelSockets.length - 1] as Socket
      expect(modelSockets.length).toBeGreaterThan(before - 1)
      const modelClosed = new Promise<'closed'>((resolve) => {
        if (model.destroyed) resolve('closed')
        model.once('close', () => resolve('closed'))
      })
      client.destroy()
      // The router must close (abort) the model's connection as soon as it sees the client gone.
      expect(await within(modelClosed, 500)).toBe('closed')
    }
    const m = await metrics(r)
    expect(m.get('modelsplit_client_aborts_total{route="r"}')).toBe(3)
    expect(m.get('modelsplit_upstream_errors_total{route="r",model="a",reason="reset"}')).toBeUndefined()
  })
})

describe('waiting for a pooled connection is the router\'s saturation (item 19)', () => {
  it('answers 503 MS_OVERLOADED with Retry-After, counts it as the router\'s, and never blames the model', async () => {
    // A model that always answers in 100 ms; the router may open 2 connections to it.
    const answered: (() => void)[] = []
    const a = await upstream((_req, res) => {
      const t = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 })
        res.end('{}')
        answered.shift()?.()
      }, 100)
      res.on('close', () => clearTimeout(t))
    })
    const r = await router(oneRoute(a.url, ', connections: 2').replace('timeout_ms: 2000', 'timeout_ms: 250'))
    const n = 16
    const results = await Promise.all(Array.from({ length: n }, () => new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
      const req = httpRequest(`${r.url}/r`, { agent: false }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }))
      })
      req.on('error', reject)
      req.end()
    })))
    const ok = results.filter((x) => x.status === 200)
    const overloaded = results.filter((x) => x.status === 503)
    // Each request got either the model's answer or the router's own 503: none is a model timeout.
    expect(ok.length + overloaded.length).toBe(n)
    expect(overloaded.length).toBeGreaterThan(0)
    // A request that got its connection late is still given the model's whole timeout_ms.
    expect(ok.length).toBeGreaterThan(4)
    for (const o of overloaded) {
      expect(o.retryAfter).toMatch(/^\d+$/)
      expect(JSON.parse(o.body)).toMatchObject({ statusCode: 503, code: 'MS_OVERLOADED', route: 'r', model: 'a' })
    }
    const m = await metrics(r)
    expect(m.get('modelsplit_overloaded_total{route="r",model="a"}')).toBe(overloaded.length)
    expect(m.get('modelsplit_request_errors_total{route="r",code="MS_OVERLOADED"}')).toBe(overloaded.length)
    // Not the model's: no 5xx in its request counter, no upstream error.
    expect(m.get('modelsplit_requests_total{route="r",model="a",code="200"}')).toBe(ok.length)
    expect(m.get('modelsplit_requests_total{route="r",model="a",code="503"}')).toBeUndefined()
    expect(m.get('modelsplit_requests_total{route="r",model="a",code="504"}')).toBeUndefined()
    expect([...m.keys()].filter((k) => k.startsWith('modelsplit_upstream_errors_total'))).toEqual([])
    // The queued requests the router answered itself are dropped without costing the model a connection.
    expect(a.requests.length).toBe(ok.length)
  })

  it('still blames a model that accepts no connection at all (its timeout, not the router\'s saturation)', async () => {
    // A model that takes the connection and never reads from it.
    const sockets: Socket[] = []
    const srv = createTcpServer({ pauseOnConnect: true }, (c) => { sockets.push(c) })
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => { for (const c of sockets) c.destroy(); srv.close(() => resolve()) }))
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
    const r = await router(oneRoute(url, ', connections: 1').replace('timeout_ms: 2000', 'timeout_ms: 200'))
    const [first, second] = await Promise.all([fetch(`${r.url}/r`), fetch(`${r.url}/r`)])
    // The model got the connection and never answered: its timeout, whoever waited behind it.
    expect(first?.status).toBe(504)
    expect([503, 504]).toContain(second?.status)
  })
})

describe('what a capture costs (item 20)', () => {
  it('counts in the budget every byte the capture holds, its answer as one buffer included', () => {
    const budget = new CaptureBudget(10 * 1024 * 1024)
    const c = new Capture()
    const chunk = Buffer.alloc(64 * 1024, 'y')
    for (let i = 0; i < 16; i++) c.add(chunk, 4 * 1024 * 1024, budget)
    const body = c.body() as Buffer
    expect(body.length).toBe(16 * chunk.length)
    // Whatever the capture keeps alive (chunks and the joined answer) is what the budget counts.
    expect(budget.used).toBe(c.cost)
    expect(c.cost).toBeGreaterThanOrEqual(body.buffer.byteLength)
    // The answer is held once: the chunks are not kept beside their joined copy.
    expect(c.cost).toBeLessThan(2 * body.length)
    // Chunks the parser hands over may be reused: the capture keeps its own bytes.
    chunk.fill('n')
    expect(body.every((b) => b === 0x79)).toBe(true)
    c.release(budget)
    expect(budget.used).toBe(0)
  })

  it('does not keep alive a larger buffer than the bytes it counts', () => {
    const budget = new CaptureBudget(1024 * 1024)
    const c = new Capture()
    // A 10-byte view of a 512 KiB buffer (as a parser's slice of a socket read can be).
    const big = Buffer.alloc(512 * 1024, 'z')
    c.add(big.subarray(0, 10), 1024 * 1024, budget)
    const body = c.body() as Buffer
    expect(body.toString()).toBe('zzzzzzzzzz')
    expect(body.buffer.byteLength).toBeLessThanOrEqual(budget.used + 8192)
    c.release(budget)
  })

  it('sizes its buffer from the declared length once, and counts it', () => {
    const budget = new CaptureBudget(10 * 1024 * 1024)
    const c = new Capture()
    c.expect(3 * 1024 * 1024)
    const chunk = Buffer.alloc(64 * 1024, 'w')
    c.add(chunk, 4 * 1024 * 1024, budget)
    expect(c.cost).toBe(3 * 1024 * 1024)
    expect(budget.used).toBe(3 * 1024 * 1024)
    for (let i = 1; i < 48; i++) c.add(chunk, 4 * 1024 * 1024, budget)
    expect(c.cost).toBe(3 * 1024 * 1024)
    expect((c.body() as Buffer).length).toBe(3 * 1024 * 1024)
    c.release(budget)
    expect(budget.used).toBe(0)
  })

  it('stops when what it costs would pass the budget, and gives it all back', () => {
    const budget = new CaptureBudget(100 * 1024)
    const c = new Capture()
    const chunk = Buffer.alloc(30 * 1024, 'q')
    for (let i = 0; i < 5; i++) c.add(chunk, 1024 * 1024, budget)
    expect(c.skipped).toBe('capture_budget')
    expect(c.body()).toBeUndefined()
    expect(budget.used).toBe(0)
  })
})
