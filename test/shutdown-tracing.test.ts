// A hanging OTLP collector must not hold the exit (issue 18 item 16): the last export runs
// inside shutdown_timeout_ms, and a connection still waiting then is cut.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { spawnRouter } from './helpers/router-process.js'
import { upstream } from './helpers/servers.js'

describe('SIGTERM with a hanging OTLP collector', () => {
  it('exits within shutdown_timeout_ms (plus process start-up slack), not after the exporter\'s 10 s', async () => {
    const model = await upstream()
    // Takes the export and never answers.
    const held: IncomingMessage[] = []
    let exported: () => void = () => {}
    const got = new Promise<void>((resolve) => { exported = resolve })
    const otlp = createServer((req) => {
      held.push(req)
      exported()
    })
    await new Promise<void>((resolve) => otlp.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => {
      otlp.closeAllConnections()
      otlp.close(() => resolve())
    }))
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-otlp-hang-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'router.yaml')
    await writeFile(file, `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown_timeout_ms: 1000
tracing: { otlp_endpoint: "http://127.0.0.1:${(otlp.address() as AddressInfo).port}/v1/traces", sample_ratio: 1 }
models:
  a: { url: "${model.url}" }
routes:
  - { name: r, path: /r, split: [{ model: a, weight: 1 }] }
`)
    const r = await spawnRouter(file)
    onTestFinished(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
    expect((await fetch(`${r.url}/r/predict`, { method: 'POST', body: '{}', headers: { 'x-user-id': 'u1' } })).status).toBe(200)
    const t0 = performance.now()
    r.child.kill('SIGTERM')
    // The span is flushed at shutdown, to a collector that never answers.
    await got
    expect(await r.exited).toBe(0)
    const tookMs = performance.now() - t0
    expect(held.length).toBeGreaterThan(0)
    expect(tookMs).toBeLessThan(1000 + 1500)
  }, 30_000)
})
