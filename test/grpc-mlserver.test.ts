// The gRPC listener in front of a real Open Inference Protocol server: MLServer (mlserver +
// mlserver-sklearn from PyPI) serving two scikit-learn iris models over gRPC and REST. Needs a
// Python with them installed: MODELSPLIT_MLSERVER_PYTHON=/path/to/venv/bin/python (.ci/run sets
// it); skipped, saying so, without it.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compareTensors, decodeInferResponse, tensorsFromJson } from '../src/compare/index.js'
import { buildServer, type Router } from '../src/server.js'
import { dial, field, grpcCall } from './helpers/grpc.js'
import { parseMetrics } from './helpers/router.js'

const PYTHON = process.env.MODELSPLIT_MLSERVER_PYTHON ?? ''
const available = PYTHON !== '' && existsSync(PYTHON)
if (!available) console.warn('grpc-mlserver: MODELSPLIT_MLSERVER_PYTHON is not set to a Python with mlserver and mlserver-sklearn; skipped')
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const INFER = '/inference.GRPCInferenceService/ModelInfer'

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/** A ModelInferRequest: one FP32 input [n, 4] (typed contents) and predict_proba asked for. */
function inferRequest(modelName: string, id: string, rows: number[][]): Buffer {
  const floats = Buffer.alloc(rows.length * 16)
  rows.flat().forEach((v, i) => floats.writeFloatLE(v, i * 4))
  const shape = Buffer.from([rows.length, 4])
  const input = Buffer.concat([field(1, 'input-0'), field(2, 'FP32'), field(3, shape), field(5, field(6, floats))])
  return Buffer.concat([field(1, modelName), field(3, id), field(5, input), field(6, field(1, 'predict_proba'))])
}

const ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

describe.skipIf(!available)('gRPC in front of MLServer', () => {
  let dir = ''
  let mlserver: ChildProcess | undefined
  let httpPort = 0
  let grpcPort = 0
  let router: Router | undefined
  let routerUrl = ''
  let grpcUrl = ''
  let adminUrl = ''

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelsplit-mlserver-'))
    httpPort = await freePort()
    grpcPort = await freePort()
    execFileSync(PYTHON, [join(ROOT, 'test/fixtures/mlserver/train_iris.py'), join(dir, 'models'), String(httpPort), String(grpcPort)])
    mlserver = spawn(join(dirname(PYTHON), 'mlserver'), ['start', '.'], { cwd: join(dir, 'models'), stdio: 'ignore' })
    // Ready when both models answer over REST (MLServer loads them before it serves).
    for (let i = 0; ; i++) {
      const ok = await fetch(`http://127.0.0.1:${httpPort}/v2/models/iris-v2/ready`).then((r) => r.ok, () => false)
      if (ok) break
      if (i > 240) throw new Error('MLServer did not become ready in 120 s')
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    const config = join(dir, 'router.yaml')
    await writeFile(config, `listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0 } }
admin: { host: 127.0.0.1, port: 0 }
models:
  v1: { url: "http://127.0.0.1:${grpcPort}", model_name: iris-v1 }
  v2: { url: "http://127.0.0.1:${grpcPort}", model_name: iris-v2 }
  v2-shadow: { url: "http://127.0.0.1:${grpcPort}", model_name: iris-v2 }
  rest-v1: { url: "http://127.0.0.1:${httpPort}/v2/models/iris-v1" }
  rest-v2: { url: "http://127.0.0.1:${httpPort}/v2/models/iris-v2" }
routes:
  - name: iris
    grpc: { method: ${INFER}, model_name: iris }
    salt: iris-exp
    split: [{ model: v1, weight: 70 }, { model: v2, weight: 30 }]
    shadow: [{ model: v2-shadow }]
  - name: iris-rest
    path: /iris
    salt: iris-exp
    split: [{ model: rest-v1, weight: 70 }, { model: rest-v2, weight: 30 }]
`)
    router = await buildServer({ configFile: config, watch: false, defaultMetrics: false })
    const urls = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, grpcHost: '127.0.0.1', grpcPort: 0 })
    routerUrl = urls.url
    adminUrl = urls.adminUrl
    grpcUrl = urls.grpcUrl as string
  }, 180_000)

  afterAll(async () => {
    await router?.close()
    mlserver?.kill()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('assigns users as the documented formula does, over gRPC and HTTP alike, on one connection', async () => {
    // 10 000 in the issue; 4 000 by default keeps the file near a minute on a loaded machine.
    const n = Number(process.env.MODELSPLIT_MLSERVER_IDS ?? 4000)
    const ids = Array.from({ length: n }, (_, i) => `user-${i}`)
    // The oracle: scripts/rendezvous_reference.py (pure-Python murmur3 and weighted rendezvous).
    const oracle = (models: string[]): string[] => JSON.parse(execFileSync(PYTHON, ['-c', `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, 'scripts'))})
from rendezvous_reference import rendezvous_pick
ids = json.load(sys.stdin)
models = ${JSON.stringify(models)}
print(json.dumps([models[rendezvous_pick('iris-exp', models, [70, 30], u)] for u in ids]))
`], { input: JSON.stringify(ids), encoding: 'utf8' })) as string[]
    const expected = oracle(['v1', 'v2'])
    const s = dial(grpcUrl)
    try {
      const got: string[] = []
      for (let i = 0; i < n; i += 250) {
        const batch = await Promise.all(ids.slice(i, i + 250).map((u) => grpcCall(s, INFER, [inferRequest('iris', u, ROWS.slice(0, 1))], { 'x-user-id': u })))
        for (const r of batch) {
          expect(r.status, r.message).toBe(0)
          got.push(r.headers['x-modelsplit-model'] as string)
        }
      }
      expect(got).toEqual(expected)
      // Weights hold within binomial noise: 5 sd of Binomial(n, 0.3).
      expect(Math.abs(got.filter((m) => m === 'v2').length - 0.3 * n)).toBeLessThan(5 * Math.sqrt(n * 0.21))
    } finally {
      s.destroy()
    }
    const body = JSON.stringify({ inputs: [{ name: 'input-0', shape: [1, 4], datatype: 'FP32', data: ROWS[0] }] })
    // Over HTTP (MLServer's REST port) the arms are other models, so the formula names them.
    const expectedRest = oracle(['rest-v1', 'rest-v2'])
    for (let i = 0; i < 300; i++) {
      const res = await fetch(`${routerUrl}/iris/infer`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': ids[i] as string }, body })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-modelsplit-model')).toBe(expectedRest[i])
      await res.arrayBuffer()
    }
  }, 120_000)

  it('returns the primary\'s answer byte for byte as a direct call gets it, and compares the shadow\'s tensors', async () => {
    const direct = dial(`http://127.0.0.1:${grpcPort}`)
    const s = dial(grpcUrl)
    try {
      // user-0 goes to v1 (70%); the shadow is iris-v2.
      const routed = await grpcCall(s, INFER, [inferRequest('iris', 'fixed-id', ROWS)], { 'x-user-id': 'user-0' })
      const arm = routed.headers['x-modelsplit-model'] as string
      const served = arm === 'v1' ? 'iris-v1' : 'iris-v2'
      const plain = await grpcCall(direct, INFER, [inferRequest(served, 'fixed-id', ROWS)])
      expect(plain.status).toBe(0)
      expect(routed.messages).toHaveLength(1)
      expect((routed.messages[0] as Buffer).equals(plain.messages[0] as Buffer)).toBe(true)
      expect(routed.trailers['grpc-status']).toBe('0')
      await router?.flush()
      const m = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())
      const compared = ['agree', 'disagree'].map((r) => m.get(`modelsplit_shadow_comparisons_total{route="iris",primary="v1",shadow="v2-shadow",result="${r}"}`) ?? 0)
      expect((compared[0] ?? 0) + (compared[1] ?? 0)).toBeGreaterThan(0)
      expect(m.get('modelsplit_shadow_comparisons_total{route="iris",primary="v1",shadow="v2-shadow",result="error"}') ?? 0).toBe(0)
    } finally {
      s.destroy()
      direct.destroy()
    }
  }, 60_000)

  it('compares the two models alike over REST JSON and gRPC', async () => {
    const direct = dial(`http://127.0.0.1:${grpcPort}`)
    try {
      const over = async (model: string): Promise<{ grpc: Buffer; rest: unknown }> => {
        const g = await grpcCall(direct, INFER, [inferRequest(model, 'x', ROWS)])
        const rest = await (await fetch(`http://127.0.0.1:${httpPort}/v2/models/${model}/infer`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ inputs: [{ name: 'input-0', shape: [4, 4], datatype: 'FP32', data: ROWS.flat() }], outputs: [{ name: 'predict_proba' }] }),
        })).json()
        return { grpc: g.messages[0] as Buffer, rest }
      }
      const a = await over('iris-v1')
      const b = await over('iris-v2')
      const opts = { atol: 0.05, rtol: 0 }
      const viaGrpc = compareTensors(decodeInferResponse(a.grpc), decodeInferResponse(b.grpc), opts)
      const viaRest = compareTensors(tensorsFromJson(a.rest), tensorsFromJson(b.rest), opts)
      expect(viaGrpc.compared).toBe(4)
      expect(viaRest.agree).toBe(viaGrpc.agree)
      expect(viaRest.fraction_agree).toBe(viaGrpc.fraction_agree)
      expect(viaRest.outputs.map((o) => [o.name, o.agreeing, o.argmaxAgreeing])).toEqual(viaGrpc.outputs.map((o) => [o.name, o.agreeing, o.argmaxAgreeing]))
    } finally {
      direct.destroy()
    }
  }, 60_000)
})
