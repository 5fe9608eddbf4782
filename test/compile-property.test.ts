// One compile path, checked as a property over many generated config files: compile() never throws
// and locates every problem; `modelsplit validate` says ok exactly when compile() does; and a
// running router's POST /admin/reload applies exactly those files, counting each refusal once.
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import yaml from 'js-yaml'
import { describe, expect, it, onTestFinished } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { formatProblem, type ConfigProblem } from '../src/errors.js'
import { compile, type CompileResult } from '../src/plan/index.js'
import { captureIo, tempConfigFile } from './helpers/cli-io.js'
import { configText, type ConfigUrls } from './helpers/config-arbitrary.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { closedPort, jsonEcho } from './helpers/upstream.js'

/** FC_SEED=<seed> replays a failing run that fast-check reported. */
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

/** Whether the text is something other than one YAML mapping: the only case a problem may have no place. */
function isNotOneMapping(text: string): boolean {
  try {
    const v = yaml.load(text)
    return v === null || typeof v !== 'object' || Array.isArray(v)
  } catch {
    return true
  }
}

/** compile() must not throw, must be deterministic, and must locate every problem it reports. */
function compileChecked(text: string, file: string): CompileResult {
  const result = compile(text, file)
  expect(JSON.stringify(compile(text, file))).toBe(JSON.stringify(result))
  if (result.ok) {
    expect(result.plan.loaded.sha256).toBe(sha256(text))
    expect(Object.isFrozen(result.plan) && Object.isFrozen(result.plan.routes)).toBe(true)
    return result
  }
  expect(result.problems.length).toBeGreaterThan(0)
  const lines = text.split(/\r\n|\r|\n/).length
  for (const p of result.problems) expectLocated(p, file, text, lines)
  return result
}

function expectLocated(p: ConfigProblem, file: string, text: string, lines: number): void {
  expect(p.file).toBe(file)
  expect(typeof p.message).toBe('string')
  expect(p.message.trim()).not.toBe('')
  // compile() turns its own exceptions into this problem so it never throws; seeing it means a bug.
  expect(p.message).not.toMatch(/^cannot compile the config/)
  expect(typeof p.path).toBe('string')
  if (p.line !== undefined) {
    expect(Number.isInteger(p.line)).toBe(true)
    expect(p.line).toBeGreaterThanOrEqual(1)
    expect(p.line).toBeLessThanOrEqual(lines + 1)
  }
  if (p.path === '' && p.line === undefined) {
    // Neither a key path nor a line: acceptable only for the document as a whole.
    expect(isNotOneMapping(text), `unlocated problem "${p.message}"`).toBe(true)
  }
}

describe('compile, validate and reload agree on every config', () => {
  it('compile never throws and locates every problem; `modelsplit validate` exits 0 exactly when compile is ok (300 configs)', async () => {
    const cfg = await tempConfigFile()
    onTestFinished(() => cfg.remove())
    const urls: ConfigUrls = { good: 'http://127.0.0.1:18001', dead: 'http://127.0.0.1:18002', port: 18001 }
    let valid = 0
    await fc.assert(fc.asyncProperty(configText(urls), async (text) => {
      const compiled = compileChecked(text, cfg.file)
      if (compiled.ok) valid++
      await cfg.write(text)
      const v = captureIo()
      const code = await runCli(['validate', cfg.file], v.io)
      if (compiled.ok) {
        expect(code).toBe(0)
        expect(v.out()).toContain(`${cfg.file}: ok (`)
        expect(v.out()).toContain(`sha256 ${sha256(text)}`)
        expect(v.err()).toBe('')
      } else {
        expect(code).toBe(1)
        expect(v.out()).toBe('')
        // Every problem compile found, as file:line: path: message, and nothing else.
        expect(v.err()).toContain(`invalid config (${compiled.problems.length} problem`)
        for (const p of compiled.problems) expect(v.err()).toContain(formatProblem(p))
      }
    }), { numRuns: 300, seed })
    // The generator must actually reach both sides of the property.
    // The generator must produce a real mix (tiny weights are invalid since the 1e-9 minimum).
    expect(valid).toBeGreaterThan(15)
    expect(valid).toBeLessThan(270)
  })

  it('a running router reloads exactly what compile accepts, keeps answering, and counts each failed reload once (100 reloads)', async () => {
    const up = await upstream(jsonEcho('up'))
    const dead = `http://127.0.0.1:${await closedPort()}`
    const initial = `models:\n  a: { url: "${up.url}" }\nroutes:\n  - { name: r0, path: /p0, split: [{ model: a, weight: 1 }] }\n`
    const r = await router(initial)
    const metric = async (result: 'success' | 'failure'): Promise<number> =>
      parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text()).get(`modelsplit_config_reloads_total{result="${result}"}`) ?? 0
    const reload = async (): Promise<{ status: number; body: { result?: string; sha256?: string; code?: string; problems?: unknown } }> => {
      const res = await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })
      return { status: res.status, body: await res.json() as { result?: string; sha256?: string; code?: string; problems?: unknown } }
    }
    let failures = 0
    let successes = 0
    let reloads = 0
    // The admin listener's settings are fixed at start: a file that compiles but changes them is
    // refused by a reload (with a located problem per changed key), and nothing else of it applies.
    const startAdmin = JSON.stringify(r.router.current().config.admin)
    // Each run starts from the initial config, so a failure replays (and shrinks) on its own; a run
    // reloads a short sequence of files, so valid files also replace one another.
    await fc.assert(fc.asyncProperty(fc.array(configText({ good: up.url, dead, port: up.port }), { minLength: 1, maxLength: 3 }), async (texts) => {
      await r.writeConfig(initial)
      const reset = await reload()
      expect(reset.status).toBe(200)
      if (reset.body.result === 'success') successes++
      for (const text of texts) {
        const before = r.router.current().loaded.sha256
        const [failedBefore, succeededBefore] = [await metric('failure'), await metric('success')]
        await r.writeConfig(text)
        const compiled = compileChecked(text, r.configFile)
        const { status, body } = await reload()
        reloads++
        const adminChanged = compiled.ok && JSON.stringify(compiled.plan.config.admin) !== startAdmin
        if (adminChanged) {
          expect(status, JSON.stringify(body)).toBe(422)
          expect(body).toMatchObject({ code: 'MS_CONFIG_INVALID', sha256: before })
          const paths = (body.problems as { path: string }[]).map((p) => p.path)
          expect(paths.length).toBeGreaterThan(0)
          for (const path of paths) expect(path).toMatch(/^admin\./)
          expect(r.router.current().loaded.sha256).toBe(before)
          failures++
        } else if (compiled.ok) {
          expect(status, JSON.stringify(body)).toBe(200)
          expect(body).toMatchObject({ result: sha256(text) === before ? 'unchanged' : 'success', sha256: sha256(text) })
          expect(r.router.current().loaded.sha256).toBe(sha256(text))
          if (body.result === 'success') successes++
        } else {
          expect(status, JSON.stringify(body)).toBe(422)
          expect(body).toMatchObject({ code: 'MS_CONFIG_INVALID', sha256: before })
          // The router's problems are compile's, to the letter: one compile path.
          expect(body.problems).toEqual(JSON.parse(JSON.stringify(compiled.problems)))
          expect(r.router.current().loaded.sha256).toBe(before)
          failures++
        }
        expect(await metric('failure')).toBe(failedBefore + (compiled.ok && !adminChanged ? 0 : 1))
        expect(await metric('success')).toBe(succeededBefore + (body.result === 'success' ? 1 : 0))
        await expectAnswering(r)
      }
    }), { numRuns: 100, seed })
    expect(reloads).toBeGreaterThanOrEqual(100)
    expect(failures).toBeGreaterThan(10)
    expect(successes).toBeGreaterThan(10)
    // And back to a known config: served by the real model server again.
    await r.writeConfig(initial)
    const back = await reload()
    expect(back.status).toBe(200)
    if (back.body.result === 'success') successes++
    const res = await fetch(`${r.url}/p0/predict`, { method: 'POST', headers: { 'x-user-id': 'u1', 'content-type': 'application/json' }, body: '{"inputs":[1]}' })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ predictions: ['up'] })
    expect(await metric('failure')).toBe(failures)
    expect(await metric('success')).toBe(successes)
  })
})

/** Health is 200 and a prediction on the config in force gets an answer (its status depends on that config). */
async function expectAnswering(r: RunningRouter): Promise<void> {
  expect((await fetch(`${r.adminUrl}/healthz`)).status).toBe(200)
  const path = r.router.current().plan.routes[0]?.path ?? '/p0'
  const res = await fetch(`${r.url}${path === '/' ? '' : path}/predict?user_id=u1&uid=u1`, {
    method: 'POST',
    headers: { 'x-user-id': 'u1', 'x-req-user': 'u1', cookie: 'uid=u1', 'content-type': 'application/json' },
    body: '{"user":{"id":"u1"},"uid":"u1","a/b":"u1"}',
  })
  // 200 from the model; 400 without a usable id; 413 under a tiny max_body_bytes; 502/504 from a
  // dead or slow model; 404 for a route path no request-target can spell (such as "/ü", which
  // clients send percent-encoded).
  expect([200, 400, 404, 413, 502, 504], `${res.status} on ${path}`).toContain(res.status)
  const body = await res.json() as { predictions?: unknown; code?: string }
  if (res.status === 200) expect(body).toEqual({ predictions: ['up'] })
  else expect(body.code).toMatch(/^MS_/)
}

// Not committed: these fail against src as it stands (reported with the commit that adds the rest).
describe('what validate accepts is what the router can do (bugs)', () => {
  const FILE = '/virtual/router.yaml'

  it.each(['toString', 'valueOf', 'constructor', '__proto__', 'hasOwnProperty'])('says model "%s" is not defined under models, at its key path', (name) => {
    const cases: [string, string][] = [
      [`split: [{ model: ${name}, weight: 1 }]`, 'routes[0].split[0].model'],
      [`missing_user_id: ${name}, split: [{ model: a, weight: 1 }]`, 'routes[0].missing_user_id'],
      [`split: [{ model: a, weight: 1 }], shadow: [{ model: ${name} }]`, 'routes[0].shadow[0].model'],
    ]
    for (const [route, path] of cases) {
      const r = compile(`models:\n  a: { url: "http://127.0.0.1:9001" }\nroutes:\n  - { name: r, path: /r, ${route} }\n`, FILE)
      expect(r.ok).toBe(false)
      if (!r.ok) expect(r.problems, route).toEqual([expect.objectContaining({ path, line: 4, message: expect.stringContaining(`"${name}" is not defined under models`) })])
    }
  })

  it('waits timeout_ms: 3000000000 for a model (or refuses a timeout a timer cannot hold)', async () => {
    const up = await upstream((req, res, raw) => { setTimeout(() => jsonEcho('a')(req, res, raw), 20) })
    const text = `models:\n  a: { url: "${up.url}", timeout_ms: 3000000000 }\nroutes:\n  - { name: r, path: /r, split: [{ model: a, weight: 1 }] }\n`
    const compiled = compile(text, FILE)
    if (!compiled.ok) return void expect(compiled.problems[0]).toMatchObject({ line: 2, path: 'models.a.timeout_ms' })
    const r = await router(text)
    const res = await fetch(`${r.url}/r`, { headers: { 'x-user-id': 'u' } })
    expect(res.status).toBe(200)
  })

  it('lets a request finish on close with shutdown_timeout_ms: 3000000000 (or refuses it)', async () => {
    let answer: () => void = () => undefined
    const up = await upstream((req, res, raw) => { answer = () => jsonEcho('a')(req, res, raw) })
    const text = `shutdown_timeout_ms: 3000000000\nmodels:\n  a: { url: "${up.url}" }\nroutes:\n  - { name: r, path: /r, split: [{ model: a, weight: 1 }] }\n`
    const compiled = compile(text, FILE)
    if (!compiled.ok) return void expect(compiled.problems[0]).toMatchObject({ line: 1, path: 'shutdown_timeout_ms' })
    const r = await router(text)
    const arrived = up.nextRequest()
    const inFlight = fetch(`${r.url}/r`, { headers: { 'x-user-id': 'u' } }).then((res) => res.status, (err: Error) => err.message)
    await arrived
    const closed = r.router.close()
    answer()
    expect(await inFlight).toBe(200)
    await closed
  })

  it('routes a path written with non-ASCII characters (clients send it percent-encoded), or refuses it', async () => {
    const up = await upstream(jsonEcho('a'))
    const text = `models:\n  a: { url: "${up.url}" }\nroutes:\n  - { name: r, path: "/modèles/churn", split: [{ model: a, weight: 1 }] }\n`
    const compiled = compile(text, FILE)
    if (!compiled.ok) return void expect(compiled.problems[0]).toMatchObject({ line: 4, path: 'routes[0].path' })
    const r = await router(text)
    const res = await fetch(`${r.url}/modèles/churn/predict`, { headers: { 'x-user-id': 'u' } })
    expect(res.status).toBe(200)
  })
})
