// The router and MLflow: registered versions behind models (pinned or by alias, followed as the
// alias moves), one online run per route experiment with the numbers analysts compare against the
// training runs, the registry following promotions and rollbacks, and MLflow down or hanging
// never reaching a prediction. The tracking server is a real HTTP server speaking MLflow's REST API.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { mlflowKey } from '../src/mlflow/reporter.js'
import { compile } from '../src/plan/index.js'
import { buildServer, type Router } from '../src/server.js'
import { startFakeMlflow, type FakeMlflow } from './helpers/fake-mlflow.js'
import { parseMetrics } from './helpers/router.js'
import { upstream } from './helpers/servers.js'
import { jsonEcho } from './helpers/upstream.js'

/** A record line (shape asserted by the tests). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Rec = Record<string, any>

interface Running { router: Router; url: string; adminUrl: string; dir: string }

async function start(dir: string, yaml: string, logLines?: string[]): Promise<Running> {
  const configFile = join(dir, 'router.yaml')
  await writeFile(configFile, yaml)
  const logger = logLines === undefined ? false : { level: 'info', stream: { write: (line: string) => { logLines.push(line) } } }
  const router = await buildServer({ configFile, watch: false, defaultMetrics: false, logger })
  const { url, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0 })
  let closed = false
  onTestFinished(async () => { if (!closed) await router.close() })
  return { router: Object.assign(Object.create(router) as Router, { close: async () => { closed = true; await router.close() } }), url, adminUrl, dir }
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-mlflow-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function fake(): Promise<FakeMlflow> {
  const f = await startFakeMlflow()
  onTestFinished(() => f.close())
  f.register('churn', '1')
  f.register('churn', '2')
  f.register('churn', '3')
  f.setAlias('churn', 'challenger', '2')
  return f
}

const config = (mlflowUrl: string, v1: string, v2: string, v3: string, extra = { route: '', mlflow: '' }) => `recording: { path: ./records.jsonl }
evaluation: { interval: 1h }
mlflow:
  tracking_uri: ${mlflowUrl}
  log_interval: 1h
  refresh: 1h
  timeout_ms: 300
${extra.mlflow}
models:
  v1: { url: "${v1}", mlflow: { model: churn, version: 1 } }
  v2: { url: "${v2}", mlflow: { model: churn, alias: challenger } }
  v3: { url: "${v3}", mlflow: { model: churn, version: 3 } }
routes:
  - name: churn
    path: /churn
    record: true
    split: [{ model: v1, weight: 50 }, { model: v2, weight: 50 }]
    shadow: [{ model: v3 }]
    metrics: [{ name: retained, type: binary }]
${extra.route}`

async function send(r: Running, users: number, from = 0): Promise<{ ids: Map<string, string>; bodies: string[] }> {
  const ids = new Map<string, string>()
  const bodies: string[] = []
  for (let i = from; i < from + users; i++) {
    const res = await fetch(`${r.url}/churn`, { method: 'POST', headers: { 'x-user-id': `u${i}`, 'content-type': 'application/json' }, body: '{"inputs":[[1,2]]}' })
    bodies.push(await res.text())
    ids.set(res.headers.get('x-request-id') as string, res.headers.get('x-modelsplit-model') as string)
  }
  return { ids, bodies }
}

function feedback(r: Running, outcomes: object[]): Promise<Response> {
  return fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(outcomes.map((o) => ({ route: 'churn', ...o }))) })
}

async function records(r: Running): Promise<Rec[]> {
  await r.router.flush()
  return (await readFile(join(r.dir, 'records.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Rec)
}

describe('mlflow keys', () => {
  it('turns characters MLflow refuses in a metric or param key into _', () => {
    expect(mlflowKey('churn-v1.retained.mean')).toBe('churn-v1.retained.mean')
    expect(mlflowKey('churn@v1:é.requests')).toBe('churn_v1__.requests')
    expect(mlflowKey('x'.repeat(300))).toHaveLength(250)
  })
})

describe('mlflow config', () => {
  const base = (models: string, top = 'mlflow: { tracking_uri: "http://127.0.0.1:5000" }') => `${top}
models:
${models}
routes: [{ name: r, path: /r, split: [{ model: a, weight: 1 }] }]
`
  const problems = (text: string): string[] => {
    const r = compile(text, 'c.yaml')
    return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`)
  }

  it('names the key and the fix for each mistake', () => {
    expect(problems(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn, version: 1, alias: x } }'))).toEqual([expect.stringMatching(/^models\.a\.mlflow: has both version and alias/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn } }'))).toEqual([expect.stringMatching(/^models\.a\.mlflow: needs version .* or alias/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn, version: 0 } }'))).toEqual([expect.stringMatching(/^models\.a\.mlflow\.version: must be a registered model version number/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn, alias: latest } }'))).toEqual([expect.stringMatching(/^models\.a\.mlflow\.alias: must be an MLflow alias name/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn, alias: champion } }', ''))).toEqual([expect.stringMatching(/^models\.a\.mlflow\.alias: needs the top-level mlflow block/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1" }', 'mlflow: { tracking_uri: "databricks" }'))).toEqual([expect.stringMatching(/^mlflow\.tracking_uri: must be the tracking server's http/)])
    expect(problems(base('  a: { url: "http://127.0.0.1:1" }', 'mlflow: { tracking_uri: "http://m:5000", log_interval: 5, write_alias: true }'))).toEqual([
      expect.stringMatching(/^mlflow\.write_alias: unknown key; allowed keys here: tracking_uri, experiment, log_interval, refresh, write_aliases/),
      expect.stringMatching(/^mlflow\.log_interval: must be a duration/),
    ])
  })

  it('pins a version without a tracking server, and fills the defaults', () => {
    const r = compile(base('  a: { url: "http://127.0.0.1:1", mlflow: { model: churn, version: "2" } }', ''), 'c.yaml')
    expect(r.ok && r.plan.routes[0]?.targets[0]?.registry).toEqual({ model: 'churn', version: '2' })
    const d = compile(base('  a: { url: "http://127.0.0.1:1" }'), 'c.yaml')
    expect(d.ok && d.plan.config.mlflow).toEqual({ tracking_uri: 'http://127.0.0.1:5000', experiment: 'modelsplit-online', log_interval_ms: 300_000, refresh_ms: 60_000, write_aliases: false, promote_alias: 'champion', token_file: null, timeout_ms: 5000 })
  })
})

describe('registered versions behind models', () => {
  it('resolves aliases at load, records model_version, and shows them in /admin/config and /metrics', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url))
    await send(r, 40)
    const preds = (await records(r)).filter((x) => x.type === 'prediction')
    expect(preds).toHaveLength(40)
    for (const p of preds) {
      expect(p.primary.model_version).toBe(p.primary.model === 'v1' ? '1' : '2')
      expect(p.shadows[0]).toMatchObject({ model: 'v3', model_version: '3' })
    }
    const cfg = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { mlflow: { models: Record<string, unknown> } }
    expect(cfg.mlflow.models.v2).toMatchObject({ registered_model: 'churn', alias: 'challenger', version: '2', run_id: 'train-churn-2', error: null })
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_model_version_info{model="v2",registered_model="churn",version="2"}')).toBe(1)
    expect(m.get('modelsplit_mlflow_requests_total{result="success"}')).toBeGreaterThanOrEqual(3)
  })

  it('follows an alias that moves: new version in records, a new experiment, a new run; the old run finished', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url))
    const { ids } = await send(r, 60)
    expect((await feedback(r, [...ids].map(([request_id]) => ({ request_id, metric: 'retained', value: 1 })))).status).toBe(200)
    await r.router.mlflow.logNow()
    const first = [...f.runs.values()]
    expect(first).toHaveLength(1)
    f.setAlias('churn', 'challenger', '3')
    await r.router.mlflow.refreshNow()
    // The experiment of v1 against version 2 is over: its numbers stay in its run, and start over.
    const exp = await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json() as { metrics: { retained: { models: Record<string, { assignments: number; outcomes: number }> } } }
    expect(exp.metrics.retained.models.v1).toMatchObject({ assignments: 0, outcomes: 0 })
    // A late outcome of a request version 2 answered is recorded with its version, and counted
    // in no experiment of version 3; one of v1 (unchanged) still counts.
    const oldV2 = [...ids].find(([, m]) => m === 'v2')?.[0] as string
    const oldV1 = [...ids].find(([, m]) => m === 'v1')?.[0] as string
    const late = await feedback(r, [{ request_id: oldV2, metric: 'retained', value: 1 }, { request_id: oldV1, metric: 'retained', value: 1 }])
    expect(await late.json()).toMatchObject({ accepted: 2, not_counted: 1, outcomes: [{ model: 'v2', model_version: '2', counted: false }, { model: 'v1', model_version: '1' }] })
    const after = await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json() as typeof exp
    expect(after.metrics.retained.models.v2?.outcomes).toBe(0)
    expect(after.metrics.retained.models.v1?.outcomes).toBe(1)
    const lateRecords = (await records(r)).filter((x) => x.type === 'outcome').slice(-2)
    expect(lateRecords).toEqual([
      expect.objectContaining({ request_id: oldV2, model: 'v2', model_version: '2', counted: false }),
      expect.objectContaining({ request_id: oldV1, model: 'v1', model_version: '1' }),
    ])
    expect(lateRecords[1]).not.toHaveProperty('counted')
    await send(r, 10, 1000)
    const preds = (await records(r)).filter((x) => x.type === 'prediction' && x.primary.model === 'v2')
    expect(preds.at(-1)?.primary.model_version).toBe('3')
    const cfg = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { mlflow: { models: Record<string, { version: string }> } }
    expect(cfg.mlflow.models.v2?.version).toBe('3')
    await r.router.mlflow.logNow()
    const runs = [...f.runs.values()]
    expect(runs).toHaveLength(2)
    expect(runs[0]).toMatchObject({ status: 'FINISHED' })
    expect(runs[1]?.params.get('model.v2')).toBe('churn/3')
    expect(f.latest(runs[0]?.run_id as string)['v1.retained.n']).toBeGreaterThan(0)
    expect(f.latest(runs[1]?.run_id as string)['v1.retained.n']).toBe(1) // the late v1 outcome above, and no earlier one
    expect(f.latest(runs[1]?.run_id as string)['v2.retained.n']).toBe(0)
  })
})

describe('reloads', () => {
  it('resolves a new alias while the reload is applied, and keeps the versions it knows when MLflow hangs', async () => {
    const f = await fake()
    f.setAlias('churn', 'staging', '3')
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const dir = await tempDir()
    const yaml = config(f.url, a.url, b.url, c.url)
    const r = await start(dir, yaml)
    await writeFile(join(dir, 'router.yaml'), yaml.replace('alias: challenger', 'alias: staging'))
    expect(await r.router.reload()).toMatchObject({ result: 'success' })
    await send(r, 30)
    expect((await records(r)).filter((x) => x.type === 'prediction' && x.primary.model === 'v2').at(-1)?.primary.model_version).toBe('3')
    // MLflow hangs: the reload waits at most mlflow.timeout_ms per model, then applies the file.
    f.mode = 'hang'
    await writeFile(join(dir, 'router.yaml'), yaml.replace('alias: challenger', 'alias: staging').replace('weight: 50 }, { model: v2, weight: 50', 'weight: 40 }, { model: v2, weight: 60'))
    const began = Date.now()
    expect(await r.router.reload()).toMatchObject({ result: 'success' })
    expect(Date.now() - began).toBeLessThan(3000)
    await send(r, 30, 100)
    expect((await records(r)).filter((x) => x.type === 'prediction' && x.primary.model === 'v2').at(-1)?.primary.model_version).toBe('3')
  })
})

describe('online runs', () => {
  it('logs one run per route with its params, numbers, verdict and linked versions, resumed after a restart', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const dir = await tempDir()
    const yaml = config(f.url, a.url, b.url, c.url, { route: '', mlflow: '  experiment: churn-online' })
    const r = await start(dir, yaml)
    const { ids } = await send(r, 100)
    // v2 keeps 3 users in 4, v1 1 in 4.
    expect((await feedback(r, [...ids].map(([request_id, model], i) => ({ request_id, metric: 'retained', value: (model === 'v2') === (i % 4 !== 0) ? 1 : 0 })))).status).toBe(200)
    await r.router.mlflow.logNow()
    expect(f.experiments.get('churn-online')).toBeDefined()
    const [run] = [...f.runs.values()]
    if (run === undefined) throw new Error('no run')
    expect(run.experiment_id).toBe(f.experiments.get('churn-online'))
    expect(run.run_name).toBe('churn: v1 vs v2')
    expect(run.tags.get('modelsplit.route')).toBe('churn')
    expect(Object.fromEntries(run.params)).toMatchObject({ split: 'v1:50,v2:50', salt: 'churn', hash: 'rendezvous', control: 'v1', 'model.v1': 'churn/1', 'model.v2': 'churn/2', 'model.v3': 'churn/3' })
    expect(run.models.sort()).toEqual(['churn/1', 'churn/2', 'churn/3'].map((v) => `m-${f.versions.get('churn')?.get(v.split('/')[1] as string)?.model_id.slice(2)}`).sort())
    expect(run.tags.get('mlflow.note.content')).toContain('[churn version 2](#/models/churn/versions/2)')
    const latest = f.latest(run.run_id)
    const v1n = [...ids.values()].filter((m) => m === 'v1').length
    expect(latest['v1.requests']).toBe(v1n)
    expect(latest['v2.requests']).toBe(100 - v1n)
    expect(latest['v1.error_rate']).toBe(0)
    expect(latest['v1.latency_p99_ms']).toBeGreaterThan(0)
    expect(latest['v1.share']).toBe(50)
    expect(latest['v1.retained.mean']).toBeCloseTo(0.25, 1)
    expect(latest['v2.retained.mean']).toBeCloseTo(0.75, 1)
    expect(latest['v2.retained.lift']).toBeCloseTo((latest['v2.retained.mean'] as number) - (latest['v1.retained.mean'] as number), 12)
    expect(latest['v1.retained.ci_low']).toBeLessThan(latest['v1.retained.mean'] as number)
    expect(latest['v1.retained.n'] as number + (latest['v2.retained.n'] as number)).toBe(100)
    // The same numbers, verdict included, as /admin/experiments shows.
    const exp = await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json() as { metrics: { retained: { verdict: string; srm: { p_value: number }; models: Record<string, { rate: number; ci: number[] }>; comparisons: Record<string, { p_value_sequential: number; abs_lift: number }> } } }
    const ret = exp.metrics.retained
    expect(latest['v2.retained.p_value']).toBe(ret.comparisons.v2?.p_value_sequential)
    expect(latest['v2.retained.lift']).toBe(ret.comparisons.v2?.abs_lift)
    expect([latest['v1.retained.mean'], latest['v1.retained.ci_low'], latest['v1.retained.ci_high']]).toEqual([ret.models.v1?.rate, ...(ret.models.v1?.ci ?? [])])
    expect(latest['retained.srm_p']).toBe(ret.srm.p_value)
    expect(run.tags.get('modelsplit.verdict.retained')).toBe(ret.verdict)
    expect(latest['v3.compared']).toBe(100)
    expect(latest['v3.agreement']).toBe(0) // v3 answers ["v3"], never the primary's prediction
    expect(JSON.parse(run.tags.get('modelsplit.versions') as string)).toEqual({ v1: 'churn/1', v2: 'churn/2', v3: 'churn/3' })
    await r.router.close()
    // A restart finds the run by its tags and goes on logging to it.
    const again = await start(dir, yaml)
    await send(again, 5, 500)
    await again.router.mlflow.logNow()
    expect(f.runs.size).toBe(1)
    expect(f.latest(run.run_id)['v1.requests'] as number + (f.latest(run.run_id)['v2.requests'] as number)).toBe(5)
  })

  it('creates its run a moment after start, not a whole log_interval later', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const created = f.waitFor('runs/create')
    await start(await tempDir(), config(f.url, a.url, b.url, c.url)) // log_interval: 1h
    await created
    expect([...f.runs.values()].map((r) => r.tags.get('modelsplit.route'))).toEqual(['churn'])
  })

  it('keeps one run per experiment when replicas start together', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const yaml = config(f.url, a.url, b.url, c.url)
    const replicas = await Promise.all([start(await tempDir(), yaml), start(await tempDir(), yaml), start(await tempDir(), yaml)])
    await Promise.all(replicas.map((r) => r.router.mlflow.logNow()))
    const live = [...f.runs.values()].filter((r) => !r.deleted)
    expect(live).toHaveLength(1)
    const ids = await Promise.all(replicas.map(async (r) => ((await (await fetch(`${r.adminUrl}/admin/config`)).json()) as { mlflow: { runs: { churn: string } } }).mlflow.runs.churn))
    expect(ids).toEqual([live[0]?.run_id, live[0]?.run_id, live[0]?.run_id])
    expect(live[0]?.params.get('split')).toBe('v1:50,v2:50')
  })

  it('moves the alias on a promotion and tags a rolled-back version, with write_aliases', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const rollout = `    control: v1
    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 1 }`
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url, { route: rollout, mlflow: '  write_aliases: true' }))
    expect((await fetch(`${r.adminUrl}/admin/rollouts/churn/promote`, { method: 'POST' })).status).toBe(200)
    await r.router.mlflow.logNow()
    expect(f.aliases.get('churn')?.get('champion')).toBe('2')
    const tags = f.versions.get('churn')?.get('2')?.tags
    expect(tags?.get('modelsplit.route')).toBe('churn')
    expect(Date.parse(tags?.get('modelsplit.promoted_at') as string)).toBeGreaterThan(Date.now() - 60_000)
    const [run] = [...f.runs.values()]
    expect(run?.tags.get('modelsplit.rollout.state')).toBe('promoted')
  })

  it('champion and challenger: a promotion moves champion to the candidate\'s version, and the next challenger starts its own rollout', async () => {
    const f = await fake()
    f.setAlias('churn', 'champion', '1')
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const rollout = `    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 1 }`
    const yaml = config(f.url, a.url, b.url, c.url, { route: rollout, mlflow: '  write_aliases: true' }).replace('mlflow: { model: churn, version: 1 }', 'mlflow: { model: churn, alias: champion }')
    const r = await start(await tempDir(), yaml)
    const rolloutStatus = async () => (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json() as Promise<{ state: string; percent: number }>
    await fetch(`${r.adminUrl}/admin/rollouts/churn/promote`, { method: 'POST' })
    await r.router.mlflow.logNow() // writes the alias, then follows it
    await r.router.mlflow.refreshNow()
    expect(f.aliases.get('churn')?.get('champion')).toBe('2')
    const cfg = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { mlflow: { models: Record<string, { version: string }> } }
    expect([cfg.mlflow.models.v1?.version, cfg.mlflow.models.v2?.version]).toEqual(['2', '2'])
    // Both arms serve version 2 now; the next challenger starts from the first step.
    f.setAlias('churn', 'challenger', '3')
    await r.router.mlflow.refreshNow()
    expect(await rolloutStatus()).toMatchObject({ state: 'running', percent: 50 })
    await send(r, 40)
    const preds = (await records(r)).filter((x) => x.type === 'prediction')
    expect(new Set(preds.map((p) => `${p.primary.model}@${p.primary.model_version}`))).toEqual(new Set(['v1@2', 'v2@3']))
  })

  it('moves the alias to a bandit\'s winner when it stops', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const bandit = `    bandit: { metric: retained, stop_when: { probability_best: 0.9 } }`
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url, { route: bandit, mlflow: '  write_aliases: true' }))
    // The record the engine writes when a bandit stops on a winner.
    r.router.mlflow.onDecision({ type: 'decision', schema: 1, ts: '2026-11-30T20:00:00.000Z', route: 'churn', kind: 'bandit', result: 'stop', reason: 'v2 is best', bandit: { winner: 'v2', shares: { v1: 0, v2: 1 } } })
    await r.router.mlflow.logNow()
    expect(f.aliases.get('churn')?.get('champion')).toBe('2')
    expect(f.versions.get('churn')?.get('2')?.tags.get('modelsplit.promoted_at')).toBe('2026-11-30T20:00:00.000Z')
    // A hold names no winner: nothing moves.
    f.setAlias('churn', 'champion', '1')
    r.router.mlflow.onDecision({ type: 'decision', schema: 1, ts: '2026-11-30T20:01:00.000Z', route: 'churn', kind: 'bandit', result: 'hold', reason: 'stopped', bandit: { winner: 'v2' } })
    await r.router.mlflow.logNow()
    expect(f.aliases.get('churn')?.get('champion')).toBe('1')
  })

  it('tags the candidate version when a rollout is aborted', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const rollout = `    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 1 }`
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url, { route: rollout, mlflow: '  write_aliases: true' }))
    const { ids } = await send(r, 40)
    expect((await fetch(`${r.adminUrl}/admin/rollouts/churn/abort`, { method: 'POST' })).status).toBe(200)
    await r.router.mlflow.logNow()
    // The abort rebound the plan with v2 at 0%: what v2 answered before it still counts.
    const [run] = [...f.runs.values()]
    expect(f.latest(run?.run_id as string)['v2.requests']).toBe([...ids.values()].filter((m) => m === 'v2').length)
    expect([...ids.values()].filter((m) => m === 'v2').length).toBeGreaterThan(0)
    expect(f.versions.get('churn')?.get('2')?.tags.get('modelsplit.rolled_back')).toMatch(/abort by an operator/)
    expect(f.aliases.get('churn')?.has('champion')).toBe(false)
  })
})

describe('MLflow down or hanging', () => {
  it('starts within mlflow.timeout_ms, serves every prediction, counts the failures, and retries the alias write later', async () => {
    const f = await fake()
    f.mode = 'hang'
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const began = Date.now()
    const rollout = `    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 1 }`
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url, { route: rollout, mlflow: '  write_aliases: true' }))
    expect(Date.now() - began).toBeLessThan(5000)
    const { bodies } = await send(r, 30)
    expect(bodies.every((x) => /^\{"predictions":\["v[12]"\]\}$/.test(x))).toBe(true)
    const preds = (await records(r)).filter((x) => x.type === 'prediction')
    // Never resolved: the alias's version is unknown, and says so.
    expect(preds.find((p) => p.primary.model === 'v2')?.primary.model_version).toBeNull()
    f.mode = 'down'
    await fetch(`${r.adminUrl}/admin/rollouts/churn/promote`, { method: 'POST' })
    await r.router.mlflow.logNow()
    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_mlflow_requests_total{result="timeout"}')).toBeGreaterThanOrEqual(3)
    expect(m.get('modelsplit_mlflow_requests_total{result="error"}')).toBeGreaterThanOrEqual(3)
    const pending = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { mlflow: { pending_alias_writes: string[] } }
    // v2's version was never known, so there is nothing the registry could be told.
    expect(pending.mlflow.pending_alias_writes).toEqual([])
  }, 30_000)

  it('logs MLflow problems at most once per log_interval', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const lines: string[] = []
    const r = await start(await tempDir(), config(f.url, a.url, b.url, c.url), lines)
    f.mode = 'down'
    for (let i = 0; i < 3; i++) await r.router.mlflow.logNow()
    await r.router.mlflow.refreshNow()
    const warned = lines.filter((l) => l.includes('MLflow:'))
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatch(/HTTP 503 TEMPORARILY_UNAVAILABLE/)
  }, 30_000)

  it('keeps the last versions it resolved across a restart while MLflow is down, and writes queued alias moves once it is back', async () => {
    const f = await fake()
    const [a, b, c] = [await upstream(jsonEcho('v1')), await upstream(jsonEcho('v2')), await upstream(jsonEcho('v3'))]
    const dir = await tempDir()
    const rollout = `    rollout: { candidate: v2, steps: [50, 100], step_interval: 1s, min_requests: 1 }`
    const yaml = config(f.url, a.url, b.url, c.url, { route: rollout, mlflow: '  write_aliases: true' })
    const first = await start(dir, yaml)
    await first.router.close()
    f.mode = 'down'
    const r = await start(dir, yaml)
    await send(r, 20)
    const preds = (await records(r)).filter((x) => x.type === 'prediction' && x.primary.model === 'v2')
    expect(preds.at(-1)?.primary.model_version).toBe('2')
    await fetch(`${r.adminUrl}/admin/rollouts/churn/promote`, { method: 'POST' })
    await r.router.mlflow.logNow()
    const pending = await (await fetch(`${r.adminUrl}/admin/config`)).json() as { mlflow: { pending_alias_writes: string[] } }
    expect(pending.mlflow.pending_alias_writes).toEqual(['set churn@champion to version 2 (route churn promoted v2)'])
    expect(f.aliases.get('churn')?.has('champion')).toBe(false)
    f.mode = 'up'
    await r.router.mlflow.logNow()
    expect(f.aliases.get('churn')?.get('champion')).toBe('2')
  }, 30_000)
})
