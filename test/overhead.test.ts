import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parseConfig } from '../src/config/index.js'
import { ConfigError } from '../src/errors.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router } from './helpers/servers.js'

// The router's own time per answer (overhead: metric | header), checked against a measurement
// made outside it: the client's time to the answer head minus the time the model held the request,
// both read on this process's clock (router, model and client share it in these tests).

/** What the model saw of one request: when it arrived and when the first byte of its body left. */
interface Held { readonly arrived: number; readonly answered: number }

/**
 * A model that holds each request `holdMs` before its body; with `headFirst` it sends its head at
 * once and only the body after the hold (the router keeps the head until that first body byte).
 */
async function sleepyModel(holdMs: number, headFirst = false): Promise<{ url: string; held: Held[] }> {
  const held: Held[] = []
  const server = createServer((req, res) => {
    const arrived = performance.now()
    req.resume()
    req.on('end', () => {
      if (headFirst) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.flushHeaders()
      }
      setTimeout(() => {
        const body = '{"predictions":[1]}'
        if (!headFirst) res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
        held.push({ arrived, answered: performance.now() })
      }, holdMs)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, held }
}

interface Timed { readonly headers: IncomingHttpHeaders; readonly headMs: number; readonly body: string }

/** POSTs a small JSON body and times the answer head from just before the request is sent. */
function timedPost(url: string, agent: Agent, userId: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const body = '{"inputs":[1,2,3]}'
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-user-id': userId } }, (res) => {
      const headMs = performance.now() - sent
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ headers: res.headers, headMs, body: text }))
    })
    req.on('error', reject)
    const sent = performance.now()
    req.end(body)
  })
}

/** `modelsplit;dur=X, upstream;dur=Y` → { modelsplit: X, upstream: Y }; throws on any other shape. */
function serverTiming(value: string | string[] | undefined): { modelsplit: number; upstream: number } {
  const m = typeof value === 'string' ? /^modelsplit;dur=(\d+\.\d{3}), upstream;dur=(\d+\.\d{3})$/.exec(value) : null
  if (m === null) throw new Error(`not a modelsplit server-timing header: ${JSON.stringify(value)}`)
  return { modelsplit: Number(m[1]), upstream: Number(m[2]) }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

function config(models: Record<string, string>, routes: string, top = ''): string {
  const m = Object.entries(models).map(([name, url]) => `  ${name}: { url: "${url}", timeout_ms: 5000 }`).join('\n')
  return `${top}models:\n${m}\nroutes:\n${routes}\n`
}

async function scrape(r: RunningRouter): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
}

function keepAlive(): Agent {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  onTestFinished(() => agent.destroy())
  return agent
}

const HOLD_MS = 40
const REQUESTS = 7
/** How far the router's own numbers may be from the outside measurement: loopback hops and parsing. */
const TOLERANCE_MS = 5

describe('overhead: header', () => {
  it.each([
    ['answers its head with its body', false],
    ['sends its head first and its body after the hold', true],
  ])('says in server-timing what the router added when the model %s, within a few ms of the outside measurement', async (_name, headFirst) => {
    const model = await sleepyModel(HOLD_MS, headFirst)
    const r = await router(config({ a: model.url }, `  - name: churn
    path: /p
    overhead: header
    split: [{ model: a, weight: 1 }]`))
    const agent = keepAlive()
    // The first request opens both connections.
    const warmUp = serverTiming((await timedPost(`${r.url}/p`, agent, 'warm-up')).headers['server-timing'])
    const outside: number[] = []
    const upstreamGaps: number[] = []
    const routerMs: number[] = []
    for (let i = 0; i < REQUESTS; i++) {
      const got = await timedPost(`${r.url}/p`, agent, `u${i}`)
      expect(got.body).toBe('{"predictions":[1]}')
      const timing = serverTiming(got.headers['server-timing'])
      const held = model.held[i + 1] as Held
      const modelMs = held.answered - held.arrived
      expect(modelMs).toBeGreaterThanOrEqual(HOLD_MS - 1)
      // One clock, so these hold for every request whatever the load: the router's wait on the
      // model contains the model's hold, and the router's time and that wait are apart and both
      // inside the client's wait for the head (0.01 ms: the header's rounding).
      expect(timing.upstream).toBeGreaterThanOrEqual(modelMs - 0.01)
      expect(timing.modelsplit).toBeGreaterThanOrEqual(0)
      expect(timing.modelsplit + timing.upstream).toBeLessThanOrEqual(got.headMs + 0.01)
      // What is left is the loopback hops and the parsing at both ends, plus whatever pauses the
      // shared machine puts in them: a few ms at most when it lets the request through unpaused.
      outside.push(got.headMs - modelMs - timing.modelsplit)
      upstreamGaps.push(timing.upstream - modelMs)
      routerMs.push(timing.modelsplit)
    }
    expect(Math.min(...outside)).toBeLessThan(TOLERANCE_MS)
    expect(Math.min(...upstreamGaps)).toBeLessThan(TOLERANCE_MS)
    // Not the model's hold counted as the router's (nor the head held for the first body byte).
    expect(median(routerMs)).toBeLessThan(HOLD_MS / 4)

    // The histogram has one observation per answer, each at least the header's part of it.
    const m = await scrape(r)
    const labels = '{route="churn",model="a"}'
    expect(m.get(`modelsplit_overhead_seconds_count${labels}`)).toBe(REQUESTS + 1)
    const sum = m.get(`modelsplit_overhead_seconds_sum${labels}`) as number
    const headerSum = routerMs.reduce((a, b) => a + b, warmUp.modelsplit) / 1000
    expect(sum).toBeGreaterThanOrEqual(headerSum - 0.0001)
    // On top: writing each head and the end of each answer, well under a few ms each.
    expect(sum).toBeLessThan(headerSum + (REQUESTS + 1) * TOLERANCE_MS / 1000)
  })

  it('keeps a model\'s own server-timing entries beside the router\'s', async () => {
    const server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'server-timing': 'inference;dur=12' })
        res.end('{"predictions":[1]}')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }))
    const r = await router(config({ a: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }, `  - name: churn
    path: /p
    overhead: header
    split: [{ model: a, weight: 1 }]`))
    const res = await fetch(`${r.url}/p`, { method: 'POST', body: '{}', headers: { 'x-user-id': 'u' } })
    const value = res.headers.get('server-timing') ?? ''
    expect(value.startsWith('inference;dur=12, modelsplit;dur=')).toBe(true)
    serverTiming(value.slice('inference;dur=12, '.length))
  })
})

describe('overhead: metric and off', () => {
  it('metric: the histogram per route and model, and no header', async () => {
    const model = await sleepyModel(5)
    const r = await router(config({ a: model.url }, `  - name: churn
    path: /p
    split: [{ model: a, weight: 1 }]`, 'overhead: metric\n'))
    const agent = keepAlive()
    for (let i = 0; i < 3; i++) {
      const got = await timedPost(`${r.url}/p`, agent, `u${i}`)
      expect(got.headers['server-timing']).toBeUndefined()
    }
    const m = await scrape(r)
    expect(m.get('modelsplit_overhead_seconds_count{route="churn",model="a"}')).toBe(3)
    const sum = m.get('modelsplit_overhead_seconds_sum{route="churn",model="a"}') as number
    expect(sum).toBeGreaterThan(0)
    expect(sum).toBeLessThan(3 * 0.005 * 4) // nowhere near the model's 5 ms per request
  })

  it('off (the default) and a route that turns it off: no header and no series for them', async () => {
    const model = await sleepyModel(1)
    const r = await router(config({ a: model.url }, `  - name: plain
    path: /plain
    split: [{ model: a, weight: 1 }]
  - name: quiet
    path: /quiet
    overhead: off
    split: [{ model: a, weight: 1 }]
  - name: timed
    path: /timed
    split: [{ model: a, weight: 1 }]`, 'overhead: header\n'))
    const agent = keepAlive()
    const quiet = await timedPost(`${r.url}/quiet`, agent, 'u')
    expect(quiet.headers['server-timing']).toBeUndefined()
    serverTiming((await timedPost(`${r.url}/timed`, agent, 'u')).headers['server-timing'])
    serverTiming((await timedPost(`${r.url}/plain`, agent, 'u')).headers['server-timing'])
    const m = await scrape(r)
    expect(m.get('modelsplit_overhead_seconds_count{route="timed",model="a"}')).toBe(1)
    expect([...m.keys()].filter((k) => k.includes('route="quiet"') && k.startsWith('modelsplit_overhead'))).toEqual([])

    const off = await router(config({ a: model.url }, `  - name: plain
    path: /plain
    split: [{ model: a, weight: 1 }]`))
    expect((await timedPost(`${off.url}/plain`, keepAlive(), 'u')).headers['server-timing']).toBeUndefined()
    expect([...(await scrape(off)).keys()].filter((k) => k.startsWith('modelsplit_overhead'))).toEqual([])
  })
})

describe('overhead: config', () => {
  it.each([
    ['at the top', 'overhead: yes\n', '', 1, 'overhead'],
    ['on a route', '', '    overhead: true\n', 6, 'routes[0].overhead'],
  ])('refuses a value that is not off, metric or header %s, with file, line and key path', (_name, top, line, lineNo, path) => {
    const text = `${top}models:\n  a: { url: "http://127.0.0.1:9001" }\nroutes:\n  - name: r\n    path: /p\n${line}    split: [{ model: a, weight: 1 }]\n`
    let err: unknown
    try {
      parseConfig(text, 'f.yaml')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    const e = err as ConfigError
    expect(e.code).toBe('MS_CONFIG_INVALID')
    expect(e.problems).toEqual([expect.objectContaining({ file: 'f.yaml', line: lineNo, path, message: expect.stringContaining('must be one of off, metric, header') })])
  })

  it('a route takes the top-level value unless it sets its own', () => {
    const text = `overhead: metric\nmodels:\n  a: { url: "http://127.0.0.1:9001" }\nroutes:\n  - { name: r, path: /r, split: [{ model: a, weight: 1 }] }\n  - { name: s, path: /s, overhead: header, split: [{ model: a, weight: 1 }] }\n`
    const { config: c } = parseConfig(text, 'f.yaml')
    expect(c.overhead).toBe('metric')
    expect(c.routes.map((x) => x.overhead)).toEqual(['metric', 'header'])
    expect(parseConfig(text.replace('overhead: metric\n', ''), 'f.yaml').config.routes.map((x) => x.overhead)).toEqual(['off', 'header'])
  })
})
