// The remote sinks inside a running router without a broker: the HTTP (CloudEvents) sink against a
// small collector that goes down and comes back, and the Kafka sink with nothing to talk to, whose
// spool fills up while the router keeps serving and says so in /readyz.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { parseMetrics, startRouter, type RunningRouter } from './helpers/router.js'
import { closedPort, startUpstream, type Upstream } from './helpers/upstream.js'

const cleanup: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c()
})

interface CloudEvent { specversion: string; id: string; source: string; type: string; time: string; partitionkey?: string; datacontenttype: string; data: Record<string, unknown> }

/** A CloudEvents batch collector; answers 503 while `isDown`. */
async function startCollector(): Promise<{ url: string; events: CloudEvent[]; contentTypes: string[]; headers: Array<Record<string, unknown>>; isDown: boolean; close(): Promise<void> }> {
  const state = {
    url: '', events: [] as CloudEvent[], contentTypes: [] as string[], headers: [] as Array<Record<string, unknown>>, isDown: false,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (state.isDown) {
        res.writeHead(503).end()
        return
      }
      state.contentTypes.push(String(req.headers['content-type']))
      state.headers.push(req.headers)
      state.events.push(...JSON.parse(Buffer.concat(chunks).toString('utf8')) as CloudEvent[])
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/records`
  return state
}

async function model(): Promise<Upstream> {
  const m = await startUpstream((_req, res) => {
    const body = '{"predictions":[0.5]}'
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  cleanup.push(() => m.close())
  return m
}

function config(modelUrl: string, recording: string): string {
  return `
shutdown_timeout_ms: 500
models:
  a: { url: "${modelUrl}" }
routes:
  - name: r
    path: /r
    split: [{ model: a, weight: 1 }]
    record: true
    metrics: [{ name: converted, type: binary }]
recording:
${recording}
`
}

async function predict(r: RunningRouter, id: string, body = '{"x":1}'): Promise<number> {
  const res = await fetch(`${r.url}/r/predict`, { method: 'POST', headers: { 'x-user-id': id, 'x-request-id': id, 'content-type': 'application/json' }, body })
  await res.arrayBuffer()
  return res.status
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('HTTP sink (CloudEvents batches)', () => {
  it('posts every record as a CloudEvent, keeps them in the spool while the collector is down, and loses none', async () => {
    const m = await model()
    const collector = await startCollector()
    cleanup.push(() => collector.close())
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-http-sink-'))
    cleanup.push(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'headers'), '# the collector wants a token\nAuthorization: Bearer t0ken\n')
    const r = await startRouter(config(m.url, `  sink: http
  http: { url: "${collector.url}", headers_file: ${join(dir, 'headers')}, timeout_ms: 2000 }
  spool: { path: ${join(dir, 'spool')} }`))
    cleanup.push(() => r.close())

    for (let i = 0; i < 20; i++) expect(await predict(r, `h-${i}`)).toBe(200)
    await r.router.flush()
    collector.isDown = true
    for (let i = 20; i < 60; i++) expect(await predict(r, `h-${i}`)).toBe(200)
    // Feedback is answered once its record is in the spool, the collector being down.
    const fb = await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ route: 'r', request_id: 'h-25', metric: 'converted', value: 1 }) })
    expect(fb.status).toBe(200)
    await until('records in the spool', async () => ((await (await fetch(`${r.adminUrl}/readyz`)).json()) as { sink: { spooled_bytes: number } }).sink.spooled_bytes > 0)
    const ready = await fetch(`${r.adminUrl}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'ready', sink: { sink: 'http', state: 'spooling', reachable: false } })
    collector.isDown = false
    await r.router.flush()

    const predictions = collector.events.filter((e) => e.type === 'org.modelsplit.prediction')
    expect(predictions.map((e) => e.partitionkey)).toEqual(Array.from({ length: 60 }, (_, i) => `h-${i}`))
    const outcome = collector.events.find((e) => e.type === 'org.modelsplit.outcome')
    expect(outcome).toMatchObject({ specversion: '1.0', datacontenttype: 'application/json', partitionkey: 'h-25', data: { type: 'outcome', request_id: 'h-25', model: 'a', metric: 'converted', value: 1 } })
    const first = predictions[0] as CloudEvent
    expect(first.data).toMatchObject({ type: 'prediction', schema: 1, request_id: 'h-0', route: 'r', primary: { model: 'a', status: 200, prediction: [0.5] }, input: { x: 1 } })
    expect(first.time).toBe(first.data.ts)
    expect(new Set(collector.events.map((e) => e.id)).size).toBe(collector.events.length)
    expect(collector.contentTypes[0]).toBe('application/cloudevents-batch+json; charset=utf-8')
    expect(collector.headers[0]?.authorization).toBe('Bearer t0ken')
    const metrics = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(metrics.get('modelsplit_records_total{result="written"}')).toBe(61)
    expect(metrics.get('modelsplit_sink_errors_total{sink="http",reason="rejected"}')).toBeGreaterThan(0)
    expect(metrics.get('modelsplit_records_spooled_bytes')).toBe(0)
  }, 60_000)
})

describe('Kafka sink with no broker', () => {
  it('starts, serves, fills its spool, then drops and counts records; /readyz stays ready and says why', async () => {
    const m = await model()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-spool-full-'))
    cleanup.push(() => rm(dir, { recursive: true, force: true }))
    const port = await closedPort()
    const r = await startRouter(config(m.url, `  sink: kafka
  kafka: { brokers: [127.0.0.1:${port}], topic: records }
  spool: { path: ${join(dir, 'spool')}, max_bytes: 1048576 }`))
    cleanup.push(() => r.close())
    const body = JSON.stringify({ x: 'y'.repeat(20_000) })
    const started = performance.now()
    for (let i = 0; i < 150; i++) expect(await predict(r, `k-${i}`, body)).toBe(200)
    // Nothing on the request path waits for the broker.
    expect((performance.now() - started) / 150).toBeLessThan(100)
    await until('records dropped', async () => (parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text()).get('modelsplit_records_total{result="dropped"}') ?? 0) > 0)
    const metrics = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(metrics.get('modelsplit_records_spooled_bytes')).toBeLessThanOrEqual(1_048_576)
    expect(metrics.get('modelsplit_records_spooled_bytes')).toBeGreaterThan(900_000)
    expect(metrics.get('modelsplit_sink_errors_total{sink="kafka",reason="unreachable"}')).toBeGreaterThan(0)
    expect(metrics.get('modelsplit_records_total{result="written"}')).toBe(0)
    const ready = await fetch(`${r.adminUrl}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'ready', sink: { sink: 'kafka', state: 'spooling', reachable: false, last_error: expect.stringContaining('') } })
    expect(await predict(r, 'k-last')).toBe(200)
  }, 60_000)
})
