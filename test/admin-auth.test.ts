// Who may use the admin API: admin.token_file, loopback, insecure, protect_metrics.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
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
})
