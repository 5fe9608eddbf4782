// An in-memory MLflow tracking server and Model Registry speaking the REST API the router uses
// (/api/2.0/mlflow/...), on an ephemeral 127.0.0.1 port. It keeps MLflow's rules the router must
// live with: params cannot change, aliases name existing versions, errors carry error_code.
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A request body as the router sends it (the fake trusts its shape: the router is under test, not it). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = Record<string, any>

interface Run {
  run_id: string
  experiment_id: string
  run_name: string
  status: string
  start_time: number
  end_time?: number
  tags: Map<string, string>
  params: Map<string, string>
  metrics: { key: string; value: number; timestamp: number; step: number }[]
  models: string[]
  deleted: boolean
}

export interface FakeMlflow {
  readonly url: string
  /** Registered versions: name → version → { run_id, model_id, tags }. */
  readonly versions: Map<string, Map<string, { run_id: string; model_id: string; tags: Map<string, string> }>>
  readonly aliases: Map<string, Map<string, string>>
  readonly experiments: Map<string, string>
  readonly runs: Map<string, Run>
  /** Every call received, as "METHOD endpoint". */
  readonly calls: string[]
  /** up: answer; down: 503 to everything; hang: never answer. */
  mode: 'up' | 'down' | 'hang'
  /** Resolves when a call to an endpoint matching this arrives (from now on). */
  waitFor(endpoint: string): Promise<void>
  register(name: string, version: string, runId?: string): void
  setAlias(name: string, alias: string, version: string): void
  /** The latest value of each metric of a run. */
  latest(runId: string): Record<string, number>
  close(): Promise<void>
}

export async function startFakeMlflow(): Promise<FakeMlflow> {
  const versions = new Map<string, Map<string, { run_id: string; model_id: string; tags: Map<string, string> }>>()
  const aliases = new Map<string, Map<string, string>>()
  const experiments = new Map<string, string>()
  const runs = new Map<string, Run>()
  const calls: string[] = []
  const waiters: { endpoint: string; resolve: () => void }[] = []
  const hung: ServerResponse[] = []
  let seq = 0

  const fake: FakeMlflow = {
    url: '', versions, aliases, experiments, runs, calls, mode: 'up',
    waitFor: (endpoint) => new Promise((resolve) => waiters.push({ endpoint, resolve })),
    register(name, version, runId = `train-${name}-${version}`) {
      let m = versions.get(name)
      if (m === undefined) versions.set(name, m = new Map())
      m.set(version, { run_id: runId, model_id: `m-${(++seq).toString(16).padStart(8, '0')}`, tags: new Map() })
    },
    setAlias(name, alias, version) {
      let m = aliases.get(name)
      if (m === undefined) aliases.set(name, m = new Map())
      m.set(alias, version)
    },
    latest(runId) {
      const out: Record<string, number> = {}
      for (const m of runs.get(runId)?.metrics ?? []) out[m.key] = m.value
      return out
    },
    close: () => new Promise<void>((resolve) => {
      for (const res of hung) res.destroy()
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }

  const versionBody = (name: string, version: string): unknown => {
    const v = versions.get(name)?.get(version)
    return { model_version: { name, version, run_id: v?.run_id, source: `models:/${v?.model_id}`, status: 'READY', aliases: [...(aliases.get(name) ?? [])].filter(([, x]) => x === version).map(([a]) => a) } }
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const endpoint = url.pathname.replace('/api/2.0/mlflow/', '')
      calls.push(`${req.method} ${endpoint}`)
      for (const w of waiters.splice(0)) {
        if (w.endpoint === endpoint) w.resolve()
        else waiters.push(w)
      }
      if (fake.mode === 'hang') return void hung.push(res)
      const send = (status: number, body: unknown): void => {
        const text = JSON.stringify(body)
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
        res.end(text)
      }
      if (fake.mode === 'down') return send(503, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'down for the test' })
      if (req.method === 'POST' && req.headers['content-type'] !== 'application/json') return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: "Bad Request. Content-Type must be one of ['application/json']." })
      const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body : {}
      const q = Object.fromEntries(url.searchParams)
      const notFound = (message: string): void => send(404, { error_code: 'RESOURCE_DOES_NOT_EXIST', message })
      switch (`${req.method} ${endpoint}`) {
        case 'GET registered-models/alias': {
          const v = aliases.get(q.name ?? '')?.get(q.alias ?? '')
          return v === undefined ? send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: `Registered model alias ${q.alias} not found.` }) : send(200, versionBody(q.name ?? '', v))
        }
        case 'GET model-versions/get':
          return versions.get(q.name ?? '')?.has(q.version ?? '') === true ? send(200, versionBody(q.name ?? '', q.version ?? '')) : notFound(`Model Version (name=${q.name}, version=${q.version}) not found`)
        case 'POST registered-models/alias': {
          if (versions.get(body.name)?.has(body.version) !== true) return notFound(`Model Version (name=${body.name}, version=${body.version}) not found`)
          fake.setAlias(body.name, body.alias, body.version)
          return send(200, {})
        }
        case 'POST model-versions/set-tag': {
          const v = versions.get(body.name)?.get(body.version)
          if (v === undefined) return notFound('no such version')
          v.tags.set(body.key, body.value)
          return send(200, {})
        }
        case 'GET experiments/get-by-name': {
          const id = experiments.get(q.experiment_name ?? '')
          return id === undefined ? notFound(`Could not find experiment with name '${q.experiment_name}'`) : send(200, { experiment: { experiment_id: id, name: q.experiment_name } })
        }
        case 'POST experiments/create': {
          if (experiments.has(body.name)) return send(400, { error_code: 'RESOURCE_ALREADY_EXISTS', message: 'exists' })
          const id = String(experiments.size + 1)
          experiments.set(body.name, id)
          return send(200, { experiment_id: id })
        }
        case 'POST runs/create': {
          const run: Run = { run_id: `run${++seq}`, experiment_id: body.experiment_id, run_name: body.run_name, status: 'RUNNING', start_time: body.start_time, tags: new Map((body.tags ?? []).map((t: { key: string; value: string }) => [t.key, t.value])), params: new Map(), metrics: [], models: [], deleted: false }
          runs.set(run.run_id, run)
          return send(200, { run: { info: { run_id: run.run_id, experiment_id: run.experiment_id, status: run.status, start_time: run.start_time } } })
        }
        case 'GET runs/get': {
          const run = runs.get(q.run_id ?? '')
          return run === undefined ? notFound('no run') : send(200, { run: { info: { run_id: run.run_id, experiment_id: run.experiment_id } } })
        }
        case 'POST runs/search': {
          // Only the filter the router writes: tags.`k` = 'v' and tags.`k` = 'v'.
          const conds = [...String(body.filter).matchAll(/tags\.`([^`]+)` = '((?:[^'\\]|\\.)*)'/g)].map((m) => [m[1], (m[2] as string).replace(/\\(.)/g, '$1')])
          const found = [...runs.values()].filter((r) => !r.deleted && body.experiment_ids.includes(r.experiment_id) && conds.every(([k, v]) => r.tags.get(k as string) === v)).sort((a, b) => b.start_time - a.start_time)
          return send(200, { runs: found.slice(0, body.max_results ?? 1000).map((r) => ({ info: { run_id: r.run_id, status: r.status, start_time: r.start_time } })) })
        }
        case 'POST runs/update': {
          const run = runs.get(body.run_id)
          if (run === undefined) return notFound('no run')
          run.status = body.status ?? run.status
          if (body.end_time !== undefined) run.end_time = body.end_time
          return send(200, { run_info: { run_id: run.run_id, status: run.status } })
        }
        case 'POST runs/delete': {
          const run = runs.get(body.run_id)
          if (run === undefined) return notFound('no run')
          run.deleted = true
          return send(200, {})
        }
        case 'POST runs/log-inputs': {
          const run = runs.get(body.run_id)
          if (run === undefined) return notFound('no run')
          run.models.push(...(body.models ?? []).map((m: { model_id: string }) => m.model_id))
          return send(200, {})
        }
        case 'POST runs/log-batch': {
          const run = runs.get(body.run_id)
          if (run === undefined) return notFound('no run')
          for (const p of body.params ?? []) {
            const old = run.params.get(p.key)
            if (old !== undefined && old !== p.value) return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: `Changing param values is not allowed (${p.key})` })
          }
          if ((body.metrics ?? []).length > 1000 || (body.tags ?? []).length > 100) return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'too many' })
          for (const p of body.params ?? []) run.params.set(p.key, p.value)
          for (const t of body.tags ?? []) run.tags.set(t.key, t.value)
          for (const m of body.metrics ?? []) {
            if (typeof m.value !== 'number' || !Number.isFinite(m.value)) return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: `bad metric ${m.key}` })
            run.metrics.push(m)
          }
          return send(200, {})
        }
        default:
          return send(404, { error_code: 'ENDPOINT_NOT_FOUND', message: `no ${req.method} ${endpoint}` })
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  ;(fake as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return fake
}
