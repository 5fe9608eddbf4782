// gRPC keys in the one compile path: listen.grpc, routes[].grpc, metadata: sources and
// models.NAME.model_name, each mistake reported with its file, line and key path.
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { compile } from '../src/plan/index.js'

const FILE = 'grpc.yaml'

function problems(text: string): { line: number | undefined; path: string; message: string }[] {
  const r = compile(text, FILE)
  if (r.ok) return []
  for (const p of r.problems) expect(p.file).toBe(FILE)
  return r.problems.map((p) => ({ line: p.line, path: p.path, message: p.message }))
}

const BASE = `listen:
  port: 8080
  grpc: { host: 127.0.0.1, port: 8081 }
models:
  a: { url: "http://127.0.0.1:9001", model_name: iris-a }
  b: { url: "http://127.0.0.1:9002" }
routes:
  - name: infer
    grpc: { method: /inference.GRPCInferenceService/ModelInfer, model_name: iris }
    user_id: [metadata:x-user-id, metadata:x-user-bin]
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
  - name: http
    path: /predict
    split: [{ model: a, weight: 1 }]
`

describe('gRPC config', () => {
  it('compiles a gRPC route beside an HTTP one, with metadata sources and a per-model name', () => {
    const r = compile(BASE, FILE)
    expect(r.ok ? [] : r.problems).toEqual([])
    if (!r.ok) return
    expect(r.plan.config.listen.grpc).toEqual({ host: '127.0.0.1', port: 8081 })
    const route = r.plan.routes.find((x) => x.name === 'infer')
    expect(route?.config.grpc).toEqual({ method: '/inference.GRPCInferenceService/ModelInfer', model_name: 'iris' })
    expect(route?.sources.map((s) => s.spec)).toEqual(['metadata:x-user-id', 'metadata:x-user-bin'])
    expect(route?.targets.map((t) => t.modelName)).toEqual(['iris-a', null])
  })

  it('defaults a gRPC route\'s user id to metadata:x-user-id', () => {
    const r = compile(BASE.replace('    user_id: [metadata:x-user-id, metadata:x-user-bin]\n', ''), FILE)
    expect(r.ok && r.plan.routes.find((x) => x.name === 'infer')?.sourceList).toBe('metadata:x-user-id')
  })

  it.each([
    ['a gRPC route without listen.grpc', BASE.replace('  grpc: { host: 127.0.0.1, port: 8081 }\n', ''), 8, 'routes[0].grpc', 'needs a gRPC listener'],
    ['a method that is not /package.Service/Method', BASE.replace('/inference.GRPCInferenceService/ModelInfer', 'ModelInfer'), 9, 'routes[0].grpc.method', 'full gRPC method path'],
    ['a URL path on a gRPC route', BASE.replace('    user_id: [metadata', '    path: /x\n    user_id: [metadata'), 10, 'routes[0].path', 'leave path out'],
    ['a header source on a gRPC route', BASE.replace('metadata:x-user-bin', 'query:uid'), 10, 'routes[0].user_id[1]', 'write metadata:NAME'],
    ['a metadata source on an HTTP route', BASE.replace('    split: [{ model: a, weight: 1 }]', '    user_id: [metadata:x-user-id]\n    split: [{ model: a, weight: 1 }]'), 14, 'routes[1].user_id[0]', 'metadata: sources are for gRPC routes'],
    ['the gRPC port equal to listen.port', BASE.replace('port: 8081', 'port: 8080'), 3, 'listen.grpc.port', 'must differ from listen.port'],
    ['an unknown key under listen.grpc', BASE.replace('port: 8081 }', 'port: 8081, tls: true }'), 3, 'listen.grpc.tls', ''],
    ['an empty model_name', BASE.replace('model_name: iris-a', 'model_name: ""'), 5, 'models.a.model_name', 'non-empty string'],
    ['a negative compare.rtol', BASE.replace('    split: [{ model: a, weight: 50 }', '    compare: { rtol: -1 }\n    split: [{ model: a, weight: 50 }'), 11, 'routes[0].compare.rtol', '>= 0'],
  ])('refuses %s, at its line and key path', (_what, text, line, path, message) => {
    const found = problems(text)
    expect(found.map((p) => p.path)).toContain(path)
    const p = found.find((x) => x.path === path)
    expect(p?.line).toBe(line)
    expect(p?.message).toContain(message)
  })

  it('refuses two routes that take the same calls, and accepts two told apart by model_name', () => {
    const two = `${BASE}  - name: other
    grpc: { method: /inference.GRPCInferenceService/ModelInfer }
    split: [{ model: b, weight: 1 }]
`
    const found = problems(two)
    expect(found).toHaveLength(1)
    expect(found[0]).toMatchObject({ path: 'routes[2].grpc', line: 16 })
    expect(found[0]?.message).toContain('also taken by routes[0]')
    const apart = two.replace('ModelInfer }', 'ModelInfer, model_name: churn }')
    expect(problems(apart)).toEqual([])
  })
})

it('the README\'s gRPC example compiles', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('## gRPC: Open Inference Protocol'))
  const yaml = section.slice(section.indexOf('```yaml\n') + 8, section.indexOf('```\n', section.indexOf('```yaml\n') + 8))
  const r = compile(yaml, 'README.md')
  expect(r.ok ? [] : r.problems).toEqual([])
  expect(r.ok && r.plan.routes.filter((x) => x.config.grpc !== null).length).toBe(2)
})
