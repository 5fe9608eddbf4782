// A web page the operator has open cannot drive or read the admin API (issue 18, item 6): cross-site
// requests (Origin, Sec-Fetch-Site), a foreign Host (DNS rebinding) and mutations a page could send
// without a CORS preflight are refused, first as raw requests with exactly those headers, then from
// a real browser (Debian's chromium, as in test/console.test.ts).
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

const TOKEN = '0d5c1f7e9a3b4c2d8e6f1a0b9c7d5e3f'

const config = (model: string, admin = '') => `evaluation: { interval: 1h }
${admin}
models:
  v1: { url: "${model}" }
  v2: { url: "${model}" }
routes:
  - name: churn
    path: /churn
    user_id: [header:x-user-id]
    split:
      - { model: v1, weight: 100 }
      - { model: v2, weight: 0 }
    control: v1
    metrics:
      - { name: retained, type: binary, mde: 0.05 }
    rollout: { candidate: v2, steps: [10, 50, 100], step_interval: 1h, min_requests: 20 }
`

interface Answer { status: number; body: Record<string, unknown> }

/** One raw request with exactly these headers (fetch would add or refuse some of them). */
function raw(r: RunningRouter, method: string, path: string, headers: OutgoingHttpHeaders, body?: string): Promise<Answer> {
  const { hostname, port } = new URL(r.adminUrl)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers: { ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}), ...headers }, setHost: headers.host === undefined }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: Record<string, unknown> = {}
        try { parsed = JSON.parse(text) as Record<string, unknown> } catch { parsed = { text } }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

const state = async (r: RunningRouter): Promise<string> => ((await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json()) as { state: string }).state
const sha = async (r: RunningRouter): Promise<string> => ((await (await fetch(`${r.adminUrl}/admin/config`)).json()) as { sha256: string }).sha256

/** The router with its file already edited, so a reload that gets through changes the sha256. */
async function start(admin = ''): Promise<RunningRouter> {
  const u = await upstream()
  const r = await router(config(u.url, admin))
  await r.writeConfig(config(u.url, admin).replace('name: churn', 'name: churn\n    salt: edited'))
  return r
}

const refused = (code: string) => ({ statusCode: 403, code, error: 'Forbidden', message: expect.any(String) })

describe('the default admin (loopback, no token) against web pages, as raw requests', () => {
  it('refuses a request from another origin or site, whatever it asks, and changes nothing', async () => {
    const r = await start()
    const before = await sha(r)
    const { host } = new URL(r.adminUrl)
    // A cross-origin text/plain form POST, a no-cors fetch without a body, a navigation from elsewhere.
    const form = await raw(r, 'POST', '/admin/reload', { origin: 'http://evil.example', 'content-type': 'text/plain', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' }, 'x=y')
    expect(form).toEqual({ status: 403, body: refused('MS_ADMIN_CROSS_SITE') })
    expect(form.body.message).toContain('Origin: http://evil.example')
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' })).body).toMatchObject({ code: 'MS_ADMIN_CROSS_SITE' })
    // Even with a header that would make it non-simple: the origin is what is refused.
    expect((await raw(r, 'POST', '/admin/rollouts/churn/abort', { origin: 'http://evil.example', 'x-modelsplit-admin': '1' })).status).toBe(403)
    // Sec-Fetch-Site alone (a browser that leaves out Origin), and a same-site page on another port.
    expect((await raw(r, 'POST', '/admin/rollouts/churn/promote', { 'sec-fetch-site': 'cross-site' })).body).toMatchObject({ code: 'MS_ADMIN_CROSS_SITE' })
    expect((await raw(r, 'GET', '/admin/config', { 'sec-fetch-site': 'same-site' })).status).toBe(403)
    expect((await raw(r, 'GET', '/admin/config', { origin: `http://${new URL(r.adminUrl).hostname}:1` })).status).toBe(403)
    // A sandboxed frame or a no-referrer form sends Origin: null.
    expect((await raw(r, 'POST', '/admin/reload', { origin: 'null', 'content-type': 'application/json' }, '{}')).body).toMatchObject({ code: 'MS_ADMIN_CROSS_SITE' })
    expect(await state(r)).toBe('running')
    expect(await sha(r)).toBe(before)

    // The admin's own origin (the console), or the operator typing the address, is served.
    expect((await raw(r, 'GET', '/admin/config', { origin: `http://${host}`, 'sec-fetch-site': 'same-origin' })).status).toBe(200)
    expect((await raw(r, 'GET', '/', { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' })).status).toBe(200)
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { origin: `http://${host}`, 'sec-fetch-site': 'same-origin', 'x-modelsplit-admin': '1' })).status).toBe(200)
    expect(await state(r)).toBe('paused')
  })

  it('refuses a Host that is neither loopback, an IP address nor admin.host (DNS rebinding)', async () => {
    const r = await start()
    const { port } = new URL(r.adminUrl)
    for (const path of ['/admin/config', '/admin/rollouts', '/metrics', '/', '/readyz']) {
      const a = await raw(r, 'GET', path, { host: `rebind.evil.example:${port}` })
      expect(a, path).toEqual({ status: 403, body: refused('MS_ADMIN_HOST_REFUSED') })
    }
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { host: `rebind.evil.example:${port}`, 'content-type': 'application/json' }, '{}')).status).toBe(403)
    expect((await raw(r, 'GET', '/admin/config', { host: 'localhost.evil.example' })).status).toBe(403)
    expect(await state(r)).toBe('running')
    // What a browser on this machine, a port-forward or a probe sends.
    for (const host of [`localhost:${port}`, `LOCALHOST:${port}`, 'localhost:8080', `127.0.0.1:${port}`, `[::1]:${port}`, `10.1.2.3:${port}`, 'localhost']) {
      expect((await raw(r, 'GET', '/admin/config', { host })).status, host).toBe(200)
    }
  })

  it('takes a mutation only as a request a page cannot send without a preflight', async () => {
    const r = await start()
    const before = await sha(r)
    // What a form or a no-cors fetch can send: a simple content type, with or without Origin.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      expect(await raw(r, 'POST', '/admin/reload', { 'content-type': type }, '--x--'), type).toEqual({ status: 403, body: refused('MS_ADMIN_SIMPLE_MUTATION') })
    }
    // A body-less POST carrying a browser's Referer but no marker of its own.
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { referer: `${r.adminUrl}/` })).body).toMatchObject({ code: 'MS_ADMIN_SIMPLE_MUTATION', message: expect.stringContaining('X-Modelsplit-Admin: 1') })
    expect(await sha(r)).toBe(before)
    expect(await state(r)).toBe('running')
    // JSON (an empty body too) or the header: applied.
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { 'content-type': 'application/json' })).status).toBe(200)
    expect((await raw(r, 'POST', '/admin/rollouts/churn/resume', { 'content-type': 'application/json; charset=utf-8' }, '{}')).status).toBe(200)
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', { 'content-type': 'application/json' }, 'not json')).body).toMatchObject({ statusCode: 400, code: 'MS_BAD_QUERY' })
    // A body-less POST with no trace of a browser is curl or the CLI: served as before.
    expect((await raw(r, 'POST', '/admin/rollouts/churn/pause', {})).status).toBe(200)
    const reload = await raw(r, 'POST', '/admin/reload', { 'x-modelsplit-admin': '1', 'content-type': 'text/plain' }, 'ignored')
    expect(reload).toMatchObject({ status: 200, body: { result: 'success' } })
  })

  it('with admin.token_file, a request with the token may use any Host (an in-cluster Service name); without it, not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-token-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'token'), TOKEN)
    const r = await start(`admin: { host: 0.0.0.0, token_file: "${join(dir, 'token')}" }`)
    const host = 'modelsplit.ml.svc.cluster.local:9464'
    expect((await raw(r, 'GET', '/healthz', { host })).status).toBe(403)
    expect((await raw(r, 'GET', '/admin/config', { host, authorization: `Bearer ${TOKEN}x` })).status).toBe(403)
    expect((await raw(r, 'GET', '/admin/config', { host, authorization: `Bearer ${TOKEN}` })).status).toBe(200)
    // The token does not excuse another origin.
    expect((await raw(r, 'GET', '/admin/config', { origin: 'http://evil.example', authorization: `Bearer ${TOKEN}` })).status).toBe(403)
  })
})

const CHROMIUM = '/usr/bin/chromium'
const hasChromium = existsSync(CHROMIUM)
if (!hasChromium) console.warn(`browser half of admin-cross-site skipped: ${CHROMIUM} is absent (scripts/install-chromium.sh installs it)`)

describe.skipIf(!hasChromium)('the default admin against web pages, in a real browser', () => {
  let browser: Browser
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Two names for this machine, so a page can be on another site than the admin (and one can rebind).
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
        '--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP rebind.test 127.0.0.1'],
    })
  }, 60_000)
  afterAll(async () => { await browser?.close() })

  /** A page on another site, served by a server of its own. */
  async function attacker(html: string): Promise<string> {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(html)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
    return `http://attacker.test:${(server.address() as AddressInfo).port}/`
  }

  async function newPage() {
    const context = await browser.newContext()
    onTestFinished(() => context.close())
    return context.newPage()
  }

  it('a cross-site text/plain form POST cannot pause the rollout', async () => {
    const r = await start()
    const page = await newPage()
    const url = await attacker(`<form method="post" enctype="text/plain" action="${r.adminUrl}/admin/rollouts/churn/pause"><input name="a" value="b"></form>
      <script>document.forms[0].submit()</script>`)
    const answer = page.waitForResponse(`${r.adminUrl}/admin/rollouts/churn/pause`)
    await page.goto(url)
    const res = await answer
    expect(res.status()).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'MS_ADMIN_CROSS_SITE' })
    expect(await state(r)).toBe('running')
  })

  it('a body-less no-cors fetch cannot reload the config or abort the rollout', async () => {
    const r = await start()
    const before = await sha(r)
    const page = await newPage()
    const url = await attacker(`<script>
      fetch('${r.adminUrl}/admin/reload', { method: 'POST', mode: 'no-cors' });
      fetch('${r.adminUrl}/admin/rollouts/churn/abort', { method: 'POST', mode: 'no-cors' });
    </script>`)
    const reload = page.waitForResponse(`${r.adminUrl}/admin/reload`)
    const abort = page.waitForResponse(`${r.adminUrl}/admin/rollouts/churn/abort`)
    await page.goto(url)
    expect((await reload).status()).toBe(403)
    expect((await abort).status()).toBe(403)
    expect(await sha(r)).toBe(before)
    expect(await state(r)).toBe('running')
  })

  it('a page whose name rebinds to the admin cannot read its answers', async () => {
    const r = await start()
    const admin = new URL(r.adminUrl)
    // rebind.test serves the attacker's document, then its DNS answer "rebinds": every later
    // request to that name reaches the admin, Host and all (a relay stands in for the new answer).
    const relay = createServer((req, res) => {
      if (req.url === '/start') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        res.end(`<script>fetch('/admin/config').then(async (res) => { document.title = res.status + ' ' + (await res.text()) }, (e) => { document.title = 'ERR ' + e })</script>`)
        return
      }
      const out = httpRequest({ host: admin.hostname, port: admin.port, method: req.method, path: req.url, headers: req.headers, setHost: false }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      })
      req.pipe(out)
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => { relay.closeAllConnections(); relay.close(() => resolve()) }))
    const page = await newPage()
    await page.goto(`http://rebind.test:${(relay.address() as AddressInfo).port}/start`)
    await expect.poll(() => page.title()).toMatch(/^(\d{3}|ERR) /)
    const title = await page.title()
    expect(title).toMatch(/^403 /)
    expect(title).toContain('MS_ADMIN_HOST_REFUSED')
    expect(title).not.toContain('sha256')
  })
})
