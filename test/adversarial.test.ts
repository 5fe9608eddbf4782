// Defects found by attacking the prediction data path (listener → Exchange → undici → shadows)
// as a hostile client, a misbehaving model and a flaky network would. Every test here failed
// when it was written; each says what is expected and why. Real servers on 127.0.0.1 only.
import { createServer as createHttpServer } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { closedPort } from './helpers/upstream.js'

const metrics = async (r: RunningRouter): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
const portOf = (url: string): number => Number(new URL(url).port)
/** A bounded wait used only to detect a hang (never to let something else happen first). */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'hung'> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), ms) })]).finally(() => clearTimeout(timer))
}

/** Sends bytes on a fresh connection; resolves with everything read once the router closes it (or after `ms`). */
function rawExchange(url: string, text: string | Buffer, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(portOf(url), '127.0.0.1', () => s.write(text))
    let out = ''
    s.on('data', (d: Buffer) => { out += d.toString('latin1') })
    s.on('error', () => undefined)
    const timer = setTimeout(() => s.destroy(), ms)
    s.on('close', () => { clearTimeout(timer); resolve(out) })
  })
}

/** A "model" that writes `answer(path)` verbatim on its socket for each request (HTTP it would not send itself). */
async function rawModel(answer: (path: string) => Buffer | string): Promise<string> {
  const sockets = new Set<Socket>()
  const srv = createTcpServer((c) => {
    sockets.add(c)
    c.on('close', () => sockets.delete(c))
    c.on('error', () => undefined)
    let buf = ''
    c.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const path = buf.split(' ')[1] ?? '/'
      buf = ''
      c.write(answer(path))
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  onTestFinished(() => new Promise<void>((resolve) => { for (const c of sockets) c.destroy(); srv.close(() => resolve()) }))
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
}

const oneRoute = (modelUrl: string, extra = '', route = '') => `${extra}models:
  a: { url: "${modelUrl}", timeout_ms: 300 }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
${route}`

describe('a model answer node:http cannot write', () => {
  // HIGH. undici hands the reason phrase over as UTF-8 text and accepts bytes node:http refuses to
  // write (anything outside Latin-1, or a control byte such as DEL). onHeaders' res.writeHead throws
  // ERR_INVALID_CHAR after it has stored the bad statusMessage on res; undici turns the throw into
  // onError, whose #send calls res.writeHead again, which throws again on the same statusMessage. So
  // the client never gets an answer (no status, no close), countResponse/#observed never run, the
  // observation stays open, flush() never resolves and close() never returns: shutdown awaits
  // observer.idle() a second time with no deadline. Expected: the model's answer (status 200) or a
  // 502 MS_UPSTREAM_ERROR, a finished record, and a shutdown bounded by shutdown_timeout_ms.
  // Suspect: src/proxy/exchange.ts onHeaders (statusText unchecked) and #send/onError (exception
  // escapes before the exchange is settled); src/server.ts shutdown's second `await observer.idle()`.
  it('still answers, records and shuts down when the reason phrase is not Latin-1', async () => {
    const url = await rawModel(() => Buffer.from('HTTP/1.1 200 Fine \u2713\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"predictions":1}', 'utf8'))
    const r = await startRouter(oneRoute(url, 'shutdown_timeout_ms: 200\nrecording: { path: ./records.jsonl }\n', '    record: true\n'))
    let closed = false
    onTestFinished(async () => {
      if (!closed) await within(r.close(), 2000)
      await r.router.admin.close() // left listening when close() hangs
    })
    const status = await fetch(`${r.url}/r`, { signal: AbortSignal.timeout(2000) }).then((res) => res.status, (err: Error) => err.name)
    expect([200, 502]).toContain(status)
    expect(await within(r.router.flush().then(() => 'flushed'), 1000)).toBe('flushed')
    expect(await within(r.close().then(() => 'closed'), 2000)).toBe('closed')
    closed = true
  })
})

describe('headers a client must not be able to forge', () => {
  // MEDIUM. README: mirrored requests carry `x-modelsplit-shadow: 1` "so model servers can skip side
  // effects". The router never strips a client's own x-modelsplit-shadow, so any client can make the
  // primary model treat a real request as a mirror (skip billing, writes, feature logging), and the
  // shadow gets the header twice ("1, 1"). Expected: the primary sees no x-modelsplit-shadow; the
  // shadow sees exactly the router's "1". Suspect: src/upstream/headers.ts isRouterRequestHeader.
  it('drops a client-sent x-modelsplit-shadow before the primary and the shadow see it', async () => {
    const a = await upstream()
    const s = await upstream()
    const r = await router(`models:
  a: { url: "${a.url}" }
  s: { url: "${s.url}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
    shadow: [{ model: s }]
`)
    const mirrored = s.nextRequest()
    const res = await fetch(`${r.url}/r`, { method: 'POST', headers: { 'x-user-id': 'u1', 'x-modelsplit-shadow': '1' }, body: '{}' })
    expect(res.status).toBe(200)
    expect(a.requests[0]?.headers['x-modelsplit-shadow']).toBeUndefined()
    expect((await mirrored).headers['x-modelsplit-shadow']).toBe('1')
  })
})

describe('limits that hold only for some framings', () => {
  // MEDIUM. README: "limits.max_body_bytes: request bodies over this get 413". A chunked body (no
  // Content-Length) on a route that does not read it is counted only until max_buffered_body_bytes;
  // past that onBodyData switches to streaming and nothing counts again, so any size reaches the
  // model. Here 10 000 bytes pass a 1 000-byte limit with a 200. Expected: 413 MS_BODY_TOO_LARGE (or
  // the upload cut) and no body over 1 000 bytes at the model. Suspect: src/proxy/exchange.ts
  // onBodyData/#streamFrom (the streamed remainder is never counted).
  it('refuses a chunked body over max_body_bytes even once it streams', async () => {
    const a = await upstream()
    const r = await router(oneRoute(a.url, 'limits: { max_body_bytes: 1000, max_buffered_body_bytes: 0 }\n'))
    let chunks = ''
    for (let i = 0; i < 20; i++) chunks += `1f4\r\n${'y'.repeat(500)}\r\n`
    const out = await rawExchange(r.url, `POST /r HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n${chunks}0\r\n\r\n`)
    expect(out).toMatch(/^HTTP\/1\.1 413 /)
    expect(a.requests.filter((q) => q.body.length > 1000)).toHaveLength(0)
  })
})

describe('a streamed body left unread', () => {
  // MEDIUM. When a body streams (over max_buffered_body_bytes) and the exchange ends before the body
  // has been read — the router refuses it (missing user id), the model is unreachable, or the model
  // answers before reading it — the answer goes out keep-alive, the rest of the body is neither
  // drained nor is the connection closed (the req stays piped into a destroyed PassThrough, paused),
  // and the 'timeout' listener Exchange.begin put on req (onBodyTimeout, a no-op once DONE) swallows
  // node's keep-alive timeout (socketOnTimeout destroys only when nobody listens), so the socket stays
  // open until node's requestTimeout (300 s): the client's next request on it hangs, and the socket,
  // its buffers and, at shutdown, up to shutdown_timeout_ms are held. Expected: like listener.reject, close the connection
  // (connection: close) when a body is left unread, or drain it; either way the socket closes within
  // node's keep-alive timeout (300 ms here). Suspect: src/proxy/exchange.ts #fail(…, false) in
  // #dispatch and #send from onError/onComplete while a body streams; req.setTimeout in begin() never
  // removed.
  const bigBody = 1024 * 1024
  it.each([
    ['the router refuses it (missing user id)', 'refuse'],
    ['the model refuses the connection', 'unreachable'],
    ['the model answers before reading it', 'early'],
  ])('closes the connection when %s', async (_name, mode) => {
    let url: string
    if (mode === 'unreachable') url = `http://127.0.0.1:${await closedPort()}`
    else {
      const srv = createHttpServer((_req, res) => { res.writeHead(400, { 'content-type': 'application/json', 'content-length': 2 }); res.end('{}') })
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
      onTestFinished(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()) }))
      url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
    }
    const r = await router(oneRoute(url, 'shutdown_timeout_ms: 200\nlimits: { max_buffered_body_bytes: 0 }\n', mode === 'refuse' ? '    missing_user_id: reject\n' : ''))
    r.router.app.server.keepAliveTimeout = 300
    const s = connect(portOf(r.url), '127.0.0.1')
    onTestFinished(() => { s.destroy() })
    s.on('error', () => undefined)
    let out = ''
    s.on('data', (d: Buffer) => { out += d.toString('latin1') })
    const closed = new Promise<'closed'>((resolve) => s.on('close', () => resolve('closed')))
    s.write(`POST /r HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${bigBody}\r\n\r\n`)
    s.write(Buffer.alloc(bigBody, 'x'))
    expect(await within(closed, 2500)).toBe('closed')
    expect(out).toMatch(/^HTTP\/1\.1 (400|502) /)
  })
})

describe('answers that are legal HTTP', () => {
  // MEDIUM. RFC 9110 §8.6 lets a server send Content-Length on a 304 (the size it would have sent);
  // undici rejects that answer (UND_ERR_RES_CONTENT_LENGTH_MISMATCH) after onHeaders. onHeaders has
  // already called res.writeHead, which sets headersSent although node:http has put nothing on the
  // wire yet, so onError takes the "answer had started" branch and destroys the socket: the client
  // gets an empty reply (no status line at all) while modelsplit_requests_total counts a 304. The
  // same happens whenever a model fails between its headers and its first body byte. Expected: the
  // model's 304 (or, failing that, a 502 JSON error). Suspect: src/proxy/exchange.ts onHeaders
  // (writeHead before anything can be flushed) / onError (`res.headersSent` is not "bytes sent").
  it('passes a 304 with Content-Length through instead of an empty reply', async () => {
    const a = await upstream((_req, res) => { res.writeHead(304, { etag: '"v1"', 'content-length': '25' }); res.end() })
    const r = await router(oneRoute(a.url))
    const out = await rawExchange(r.url, 'GET /r HTTP/1.1\r\nHost: x\r\nif-none-match: "v1"\r\nconnection: close\r\n\r\n')
    expect(out).toMatch(/^HTTP\/1\.1 (304|502) /)
  })

  // LOW. RFC 9110 §15.2: a client "MUST be able to parse one or more 1xx responses received prior to
  // a final response, even if the client does not expect one". A model sending an unsolicited
  // `100 Continue` before its 200 gets the client a 502 MS_UPSTREAM_RESET ("closed the connection",
  // which it did not) and an upstream_errors{reason="reset"}; 103 Early Hints passes. undici's parser
  // refuses it; the router could at least not call it a reset. Suspect: undici client-h1 / onError.
  // undici refuses an unsolicited 100 outright (client-h1: 'bad response'), so the router cannot pass
  // the 200 on; it must at least not call the model's malformed answer a connection reset.
  it('answers 502 MS_UPSTREAM_ERROR, not a reset, when a model sends an unsolicited 100 Continue', async () => {
    const url = await rawModel(() => 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}')
    const r = await router(oneRoute(url))
    const res = await fetch(`${r.url}/r`)
    expect(res.status).toBe(502)
    expect(await res.json()).toMatchObject({ code: 'MS_UPSTREAM_ERROR', model: 'a' })
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_upstream_errors_total{route="r",model="a",reason="other"}')).toBe(1)
    expect(m.get('modelsplit_upstream_errors_total{route="r",model="a",reason="reset"}')).toBeUndefined()
  })
})

describe('client slowness is not a model error', () => {
  // MEDIUM. When the client reads slowly, onData's res.write returns false and the model is paused
  // until 'drain'; no onData means no timer refresh, so timeout_ms fires while the router itself is
  // holding the model back: the client's answer is cut mid-body and the model is charged an
  // upstream_errors{reason="timeout"} (README: client trouble is "never counted against the model").
  // Expected: while waiting for the client's drain the model's timer is stopped (or the drain
  // refreshes it), the whole answer arrives, no upstream error is counted. The client's pause below
  // is the stimulus (3 × timeout_ms), not a synchronisation. Suspect: src/proxy/exchange.ts onData.
  it('does not cut an answer or blame the model when the client reads slowly', async () => {
    const big = Buffer.alloc(24 * 1024 * 1024, 'x')
    const a = await upstream((_req, res) => { res.writeHead(200, { 'content-length': big.length }); res.end(big) })
    const r = await router(oneRoute(a.url).replace('timeout_ms: 300', 'timeout_ms: 200'))
    const s = connect(portOf(r.url), '127.0.0.1')
    onTestFinished(() => { s.destroy() })
    s.on('error', () => undefined)
    s.pause()
    s.write('GET /r HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 600))
    let received = 0
    s.on('data', (d: Buffer) => { received += d.length })
    s.resume()
    await new Promise((resolve) => s.on('close', resolve))
    expect(received).toBeGreaterThan(big.length)
    expect((await metrics(r)).get('modelsplit_upstream_errors_total{route="r",model="a",reason="timeout"}')).toBeUndefined()
  })

  // LOW. With a streamed body (over max_buffered_body_bytes) the model's timer starts at dispatch,
  // while the client is still uploading; a client sending within limits.body_timeout_ms but taking
  // longer than timeout_ms in total gets 504 MS_UPSTREAM_TIMEOUT and the model an
  // upstream_errors{reason="timeout"} although it could not answer before the body ended. The README
  // says the timer runs "from dispatch … to the response headers", but the metric then blames the
  // model for the client. Expected: the timer runs from when the body has been sent (undici's
  // onRequestSent), so a client within body_timeout_ms is answered. Suspect: src/proxy/exchange.ts #dispatch.
  it('does not time the model out while a streamed body is still arriving within body_timeout_ms', async () => {
    const a = await upstream()
    const r = await router(oneRoute(a.url, 'limits: { max_buffered_body_bytes: 0, body_timeout_ms: 5000 }\n').replace('timeout_ms: 300', 'timeout_ms: 150'))
    const s = connect(portOf(r.url), '127.0.0.1')
    onTestFinished(() => { s.destroy() })
    s.on('error', () => undefined)
    let out = ''
    s.on('data', (d: Buffer) => { out += d.toString('latin1') })
    const answered = new Promise<void>((resolve) => s.on('data', () => resolve()))
    s.write('POST /r HTTP/1.1\r\nHost: x\r\ncontent-length: 6\r\n\r\nab')
    // A client sending 2 bytes every 100 ms: never near body_timeout_ms, 300 ms in all.
    for (const part of ['cd', 'ef']) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      if (out === '') s.write(part)
    }
    await answered
    expect(out).toMatch(/^HTTP\/1\.1 200 /)
    expect((await metrics(r)).get('modelsplit_upstream_errors_total{route="r",model="a",reason="timeout"}')).toBeUndefined()
  })
})

describe('paths a model server may normalise out of its base path', () => {
  // LOW. badPath refuses `..` and `%2e%2e` segments, but `..;` (a dot-dot segment with a path
  // parameter) passes; Tomcat/Jetty-based model servers strip `;params` before normalising, so
  // /r/..;/..;/other reaches /other outside the model's base path, the very escape the README says
  // "may not climb out of it" prevents. Expected: 400 MS_BAD_PATH, nothing sent to the model.
  // Suspect: src/upstream/path.ts badPath (compare the segment before any ';').
  it('refuses dot-dot segments carrying ;parameters', async () => {
    const a = await upstream()
    const r = await router(oneRoute(`${a.url}/v1/models/a`))
    const out = await rawExchange(r.url, 'GET /r/..;/..;/b/predict HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n')
    expect(out).toMatch(/^HTTP\/1\.1 400 /)
    expect(out).toContain('MS_BAD_PATH')
    expect(a.requests).toHaveLength(0)
  })
})
