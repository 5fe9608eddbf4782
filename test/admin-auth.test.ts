// Who may use the admin API: admin.token_file, loopback, insecure, protect_metrics.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { compile } from '../src/plan/index.js'
import { router, upstream } from './helpers/servers.js'

const TOKEN = 'b1946ac92492d2347c6235b4d2611184'

async function tokenFile(content = TOKEN): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-token-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'token')
  await writeFile(file, `${content}\n`)
  return file
}

const config = (model: string, admin: string) => `admin: ${admin}
models:
  a: { url: "${model}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
`

describe('admin API access', () => {
  it('refuses an admin listener off loopback without a token unless insecure says so', () => {
    const r = compile(config('http://127.0.0.1:1', '{ host: 0.0.0.0, port: 9464 }'), 'router.yaml')
    expect(r.ok ? [] : r.problems).toEqual([{ file: 'router.yaml', line: 1, path: 'admin.host', message: expect.stringContaining('set admin.token_file to a file holding a bearer token, or admin.insecure: true') }])
    expect(compile(config('http://127.0.0.1:1', '{ host: 0.0.0.0, port: 9464, insecure: true }'), 'router.yaml').ok).toBe(true)
  })

  it('names an unreadable or short token file with its key path', async () => {
    const missing = compile(config('http://127.0.0.1:1', '{ token_file: /nonexistent/token }'), 'router.yaml')
    expect(missing.ok ? [] : missing.problems).toEqual([{ file: 'router.yaml', line: 1, path: 'admin.token_file', message: 'cannot read /nonexistent/token (ENOENT)' }])
    const short = compile(config('http://127.0.0.1:1', `{ token_file: "${await tokenFile('abc')}" }`), 'router.yaml')
    expect(short.ok ? '' : short.problems[0]?.message).toMatch(/a token under 16 characters/)
  })

  it('asks for the bearer token on every mutation, compared whole, never from a cookie; reads stay open on loopback', async () => {
    const u = await upstream()
    const file = await tokenFile()
    const r = await router(config(u.url, `{ token_file: "${file}" }`))
    const reload = (headers: Record<string, string>) => fetch(`${r.adminUrl}/admin/reload`, { method: 'POST', headers })
    const refused = await reload({})
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toContain('Bearer')
    expect(await refused.json()).toMatchObject({ statusCode: 401, code: 'MS_UNAUTHORIZED' })
    expect((await reload({ authorization: `Bearer ${TOKEN}x` })).status).toBe(401)
    expect((await reload({ authorization: `Bearer ${TOKEN.slice(0, -1)}` })).status).toBe(401)
    expect((await reload({ cookie: `token=${TOKEN}` })).status).toBe(401)
    expect((await reload({ authorization: `Bearer ${TOKEN}` })).status).toBe(200)
    expect((await fetch(`${r.adminUrl}/admin/config`)).status).toBe(200)
    expect((await fetch(`${r.adminUrl}/metrics`)).status).toBe(200)
    // The CLI sends it from --token-file.
    const out: string[] = []
    const err: string[] = []
    const io = { out: { write: (x: string) => out.push(x) }, err: { write: (x: string) => err.push(x) } } as never
    expect(await runCli(['rollout', 'pause', 'r', '--admin', r.adminUrl], io)).toBe(1)
    expect(err.join('')).toContain('401 MS_UNAUTHORIZED')
  })

  it('off loopback asks for it everywhere but health (and /metrics unless protect_metrics)', async () => {
    const u = await upstream()
    const file = await tokenFile()
    // Listening on every interface; the test reaches it through 127.0.0.1.
    const r = await router(config(u.url, `{ host: 0.0.0.0, token_file: "${file}", protect_metrics: true }`))
    const auth = { authorization: `Bearer ${TOKEN}` }
    expect((await fetch(`${r.adminUrl}/healthz`)).status).toBe(200)
    expect((await fetch(`${r.adminUrl}/readyz`)).status).toBe(200)
    expect((await fetch(`${r.adminUrl}/admin/config`)).status).toBe(401)
    expect((await fetch(`${r.adminUrl}/metrics`)).status).toBe(401)
    expect((await fetch(`${r.adminUrl}/admin/config`, { headers: auth })).status).toBe(200)
    expect((await fetch(`${r.adminUrl}/metrics`, { headers: auth })).status).toBe(200)
  })

  it('authorises /metrics on the path the router serves: /%6detrics and /metrics#x are /metrics (protect_metrics on loopback)', async () => {
    const u = await upstream()
    const file = await tokenFile()
    const r = await router(config(u.url, `{ token_file: "${file}", protect_metrics: true }`))
    for (const path of ['/metrics', '/%6detrics', '/%6D%65trics', '/metrics#x', '/metrics?x=1', '/%6detrics#%23']) {
      const res = await rawGet(r.adminUrl, path)
      expect(res.status, path).toBe(401)
      expect(JSON.parse(res.body), path).toMatchObject({ statusCode: 401, code: 'MS_UNAUTHORIZED' })
      const authed = await rawGet(r.adminUrl, path, { authorization: `Bearer ${TOKEN}` })
      expect(authed.status, path).toBe(200)
      expect(authed.body, path).toContain('modelsplit_')
    }
    // What stays open stays open however it is spelt.
    expect((await rawGet(r.adminUrl, '/%68ealthz')).status).toBe(200)
    expect((await rawGet(r.adminUrl, '/admin/config')).status).toBe(200)
  })

  it('refuses a reload that changes the admin listener\'s settings, each with file, line and key path, and keeps the old config', async () => {
    const u = await upstream()
    const file = await tokenFile()
    const start = `admin:\n  host: 0.0.0.0\n  token_file: "${file}"\n` + config(u.url, '{}').replace('admin: {}\n', '')
    // Listening on every interface, as the file says; the test reaches it through 127.0.0.1.
    const r = await router(start)
    const auth = { authorization: `Bearer ${TOKEN}` }
    const sha = async () => ((await (await fetch(`${r.adminUrl}/admin/config`, { headers: auth })).json()) as { sha256: string }).sha256
    const before = await sha()
    // One edit moves the listener to loopback and drops the token: with both applied to the check
    // only, the socket on 0.0.0.0 would answer anyone.
    await r.writeConfig(start.replace('  host: 0.0.0.0', '  host: 127.0.0.1').replace(/ {2}token_file: .*\n/, ''))
    const res = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST', headers: auth })
    expect(res.status).toBe(422)
    const body = await res.json() as { statusCode: number; code: string; message: string; sha256: string; problems: unknown[] }
    expect(body).toMatchObject({ statusCode: 422, code: 'MS_CONFIG_INVALID', sha256: before })
    expect(body.problems).toEqual([
      { file: r.configFile, line: 2, path: 'admin.host', message: expect.stringContaining('fixed at start: it still runs with host: "0.0.0.0"') },
      { file: r.configFile, line: 1, path: 'admin.token_file', message: expect.stringContaining('restart the router to change it') },
    ])
    expect(body.message).toContain(`${r.configFile}:2: admin.host: `)
    // The old config serves on, token check included; the watcher's and SIGHUP's reload say the same.
    expect(await sha()).toBe(before)
    expect((await fetch(`${r.adminUrl}/admin/config`)).status).toBe(401)
    expect((await r.router.reload()).result).toBe('failure')
    const metrics = await (await fetch(`${r.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(/modelsplit_config_reloads_total\{result="failure"\} 2/)

    // protect_metrics and insecure are the listener's too; the port as well.
    for (const [edit, path] of [['  protect_metrics: true\n', 'admin.protect_metrics'], ['  port: 9999\n', 'admin.port']] as const) {
      await r.writeConfig(start.replace('admin:\n', `admin:\n${edit}`))
      const refused = await r.router.reload()
      expect(refused.problems, path).toEqual([{ file: r.configFile, line: 2, path, message: expect.stringContaining('fixed at start') }])
    }
    // Anything else reloads as before.
    await r.writeConfig(start.replace('name: r', 'name: r\n    salt: other'))
    expect((await r.router.reload()).result).toBe('success')
  })
})

/** A GET with the path exactly as given (fetch would normalise it or drop the fragment). */
function rawGet(base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.end()
  })
}
