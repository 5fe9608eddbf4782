import { writeFile, unlink } from 'node:fs/promises'
import { join, dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { jsonEcho } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { MAX_OUTCOME_VALUE, readRecords, type RecordSink } from '../src/record/index.js'
import { runCli } from '../src/cli/run.js'
import { PassThrough } from 'node:stream'
import { request } from 'undici'
import type { Config, MetricConfig } from '../src/config/index.js'
import { AssignmentMemory, Tally, handleFeedback, type FeedbackDeps } from '../src/evaluation/index.js'
import { analyseExperiment } from '../src/experiment/index.js'
import { MAX_NESTING } from '../src/evaluation/feedback.js'
import { Metrics } from '../src/metrics/index.js'
import type { RouteRuntime, Runtime } from '../src/proxy/runtime.js'
import { ExperimentAccumulator } from '../src/report/index.js'
import { welchTTest } from '../src/stats/index.js'


const config = (a: string, b: string, wa = 50, wb = 50) => `recording: { path: ./records.jsonl }
models:
  a: { url: "${a}" }
  b: { url: "${b}" }
routes:
  - name: churn
    path: /models/churn
    record: true
    split: [{ model: a, weight: ${wa} }, { model: b, weight: ${wb} }]
    metrics:
      - { name: converted, type: binary, mde: 0.05 }
      - { name: revenue, type: continuous }
  - name: other
    path: /other
    split: [{ model: a, weight: 1 }]
`

async function setup(wa = 50, wb = 50): Promise<RunningRouter> {
  const a = await upstream(jsonEcho('a'))
  const b = await upstream(jsonEcho('b'))
  return router(config(a.url, b.url, wa, wb))
}

async function predict(r: RunningRouter, user: string): Promise<{ model: string; requestId: string }> {
  const res = await fetch(`${r.url}/models/churn/predict`, { method: 'POST', headers: { 'x-user-id': user, 'content-type': 'application/json' }, body: '{}' })
  await res.text()
  return { model: res.headers.get('x-modelsplit-model') as string, requestId: res.headers.get('x-request-id') as string }
}

async function feedback(r: RunningRouter, body: unknown, path = '/feedback', contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(r.url + path, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

async function metrics(r: RunningRouter): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
}

describe('POST /feedback', () => {
  it('attributes an outcome by model, by request id, or by user id, and says which', async () => {
    const r = await setup()
    const p = await predict(r, 'alice')
    const other = p.model === 'a' ? 'b' : 'a'
    const byModel = await feedback(r, { route: 'churn', model: other, user_id: 'alice', metric: 'converted', value: 1 })
    expect(byModel).toMatchObject({ status: 200, body: { accepted: 1, outcomes: [{ model: other, attributed_by: 'model' }] } })
    const byRequest = await feedback(r, { route: 'churn', request_id: p.requestId, metric: 'converted', value: 0 })
    expect(byRequest.body).toMatchObject({ accepted: 1, outcomes: [{ model: p.model, attributed_by: 'request_id' }] })
    const byUser = await feedback(r, { route: 'churn', user_id: 'alice', metric: 'revenue', value: 12.5 })
    expect(byUser.body).toMatchObject({ outcomes: [{ model: p.model, attributed_by: 'user_id' }] })
    // The route-scoped form takes the route from the path.
    const scoped = await feedback(r, { request_id: p.requestId, metric: 'converted', value: true }, '/models/churn/feedback')
    expect(scoped.body).toMatchObject({ outcomes: [{ route: 'churn', model: p.model, attributed_by: 'request_id' }] })
    const m = await metrics(r)
    expect(m.get(`modelsplit_outcomes_total{route="churn",model="${p.model}",metric="converted"}`)).toBe(2)
    expect(m.get(`modelsplit_outcome_value_sum{route="churn",model="${p.model}",metric="converted"}`)).toBe(1)
    expect(m.get(`modelsplit_outcome_value_sum{route="churn",model="${p.model}",metric="revenue"}`)).toBe(12.5)
    expect(m.get(`modelsplit_outcome_value_squares_sum{route="churn",model="${p.model}",metric="revenue"}`)).toBe(156.25)
  })

  it('accepts batches as a JSON array and as NDJSON', async () => {
    const r = await setup()
    const array = Array.from({ length: 50 }, (_, i) => ({ route: 'churn', user_id: `u${i}`, metric: 'converted', value: i % 2 }))
    expect((await feedback(r, array)).body).toMatchObject({ accepted: 50, attributed_by: { user_id: 50, model: 0, request_id: 0 } })
    const ndjson = array.map((o) => JSON.stringify({ ...o, metric: 'revenue', value: 2 })).join('\n') + '\n'
    expect((await feedback(r, ndjson, '/feedback', 'application/x-ndjson')).body).toMatchObject({ accepted: 50 })
    const m = await metrics(r)
    const total = (metric: string) => (m.get(`modelsplit_outcomes_total{route="churn",model="a",metric="${metric}"}`) ?? 0) + (m.get(`modelsplit_outcomes_total{route="churn",model="b",metric="${metric}"}`) ?? 0)
    expect(total('converted')).toBe(50)
    expect(total('revenue')).toBe(50)
  })

  it.each([
    ['not JSON', '{oops', 400, 'body', 'not JSON'],
    ['a value that is not a number', { route: 'churn', user_id: 'u', metric: 'converted', value: 'yes' }, 400, 'value', 'must be a number'],
    ['an unknown field', { route: 'churn', user_id: 'u', metric: 'converted', value: 1, colour: 'red' }, 400, 'colour', 'allowed'],
    ['a missing metric', { route: 'churn', user_id: 'u', value: 1 }, 400, 'metric', 'is required'],
    ['an unknown route', { route: 'nope', user_id: 'u', metric: 'converted', value: 1 }, 404, 'route', 'no route named "nope"'],
    ['an undeclared metric', { route: 'churn', user_id: 'u', metric: 'clicks', value: 1 }, 422, 'metric', 'declared: converted, revenue'],
    ['a binary value of 2', { route: 'churn', user_id: 'u', metric: 'converted', value: 2 }, 422, 'value', 'must be 0 or 1'],
    ['a negative value', { route: 'churn', user_id: 'u', metric: 'revenue', value: -3 }, 422, 'value', 'must be >= 0'],
    ['a model outside the split', { route: 'churn', model: 'zzz', metric: 'converted', value: 1 }, 422, 'model', 'not in route "churn"'],
    ['nothing to attribute by', { route: 'churn', metric: 'converted', value: 1 }, 422, 'model', 'give model'],
    ['a forgotten request id', { route: 'churn', request_id: 'never-seen', metric: 'converted', value: 1 }, 422, 'request_id', 'not remembered'],
  ])('rejects %s with the field at fault', async (_name, body, status, at, message) => {
    const r = await setup()
    const res = await feedback(r, body)
    expect(res.status).toBe(status)
    expect(res.body).toMatchObject({ statusCode: status, code: 'MS_FEEDBACK_INVALID', problems: [{ at, message: expect.stringContaining(message) }] })
  })

  it('applies nothing from a batch with one bad item', async () => {
    const r = await setup()
    const res = await feedback(r, [
      { route: 'churn', user_id: 'u1', metric: 'converted', value: 1 },
      { route: 'churn', user_id: 'u2', metric: 'converted', value: 7 },
    ])
    expect(res.status).toBe(422)
    expect(res.body.problems).toEqual([{ at: '[1].value', message: expect.stringContaining('0 or 1') }])
    const m = await metrics(r)
    expect([...m.keys()].filter((k) => k.startsWith('modelsplit_outcomes_total'))).toEqual([])
  })

  it('appends each outcome to the record file, ready to join with predictions', async () => {
    const r = await setup()
    const p = await predict(r, 'bob')
    await feedback(r, { route: 'churn', request_id: p.requestId, metric: 'converted', value: 1 })
    await r.router.flush()
    const recs: Record<string, unknown>[] = []
    for await (const rec of readRecords(join(dirname(r.configFile), 'records.jsonl'))) recs.push(rec)
    expect(recs.filter((x) => x.type === 'prediction').map((x) => x.request_id)).toEqual([p.requestId])
    expect(recs.filter((x) => x.type === 'outcome')).toEqual([
      expect.objectContaining({ type: 'outcome', route: 'churn', request_id: p.requestId, user_id: 'bob', model: p.model, metric: 'converted', value: 1, attributed_by: 'request_id' }),
    ])
  })

  it('forwards <route>/feedback to the model on routes without metrics', async () => {
    const r = await setup()
    const res = await fetch(`${r.url}/other/feedback`, { method: 'POST', body: '{}' })
    expect(await res.json()).toEqual({ predictions: ['a'] })
  })
})

describe('/admin/experiments', () => {
  const experiment = async (r: RunningRouter) => (await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json()) as {
    control: string
    metrics: Record<string, { verdict: string; srm: { mismatch: boolean; p_value: number }; models: Record<string, { assignments: number; outcomes: number; rate: number }>; comparisons: Record<string, { abs_lift: number; p_value: number }> }>
  }

  it('says the candidate is better when it truly converts more, with a fair split', async () => {
    const r = await setup()
    const outcomes: unknown[] = []
    for (let i = 0; i < 2000; i++) {
      const user = `user-${i}`
      const { model, requestId } = await predict(r, user)
      // A deterministic stand-in for users: b converts 40% of the time, a 25%.
      const converted = (i * 7919) % 100 < (model === 'b' ? 40 : 25) ? 1 : 0
      outcomes.push({ route: 'churn', request_id: requestId, metric: 'converted', value: converted })
    }
    expect((await feedback(r, outcomes)).body.accepted).toBe(2000)
    const e = await experiment(r)
    const c = e.metrics.converted
    expect(e.control).toBe('a')
    expect(c?.srm.mismatch).toBe(false)
    expect((c?.models.a?.assignments ?? 0) + (c?.models.b?.assignments ?? 0)).toBe(2000)
    expect(c?.models.b?.rate).toBeCloseTo(0.4, 1)
    expect(c?.comparisons.b?.abs_lift).toBeGreaterThan(0.1)
    expect(c?.verdict).toBe('candidate better')
    const all = await (await fetch(`${r.adminUrl}/admin/experiments`)).json() as { routes: { route: string }[] }
    expect(all.routes.map((x) => x.route)).toEqual(['churn'])
    expect((await fetch(`${r.adminUrl}/admin/experiments/nope`)).status).toBe(404)
  })

  it('flags a sample ratio mismatch when traffic does not follow the weights in force', async () => {
    const r = await setup(90, 10)
    // Only users the split sends to b: 600 requests where 10% were expected.
    const plan = r.router.current().plan.routes.find((x) => x.name === 'churn')
    let sent = 0
    for (let i = 0; sent < 600; i++) {
      if (plan?.assigner.models[plan.assigner.pick(`user-${i}`)] !== 'b') continue
      await predict(r, `user-${i}`)
      sent++
    }
    const e = await experiment(r)
    expect(e.metrics.converted?.srm.mismatch).toBe(true)
    expect(e.metrics.converted?.verdict).toBe('sample ratio mismatch: investigate')
  })

  it('compares assignments with the weights in force when they were made, so changing the weights does not trip it', async () => {
    const r = await setup(90, 10)
    for (let i = 0; i < 600; i++) await predict(r, `user-${i}`)
    // Mid-experiment the weights change to 50/50 (as a rollout's step would): a new period.
    await r.writeConfig(config(new URL(r.router.current().config.models.a!.url).origin, new URL(r.router.current().config.models.b!.url).origin, 50, 50))
    expect((await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })).status).toBe(200)
    for (let i = 600; i < 1200; i++) await predict(r, `user-${i}`)
    const e = await experiment(r)
    expect(e.metrics.converted?.srm.mismatch).toBe(false)
    // Against the 50/50 in force now alone, 1 200 assignments made mostly at 90/10 would be a mismatch.
    expect(e.metrics.converted?.srm.p_value).toBeGreaterThan(0.001)
  })

  it('modelsplit report --config gives the same statistics from the record file', async () => {
    const r = await setup()
    const outcomes: unknown[] = []
    for (let i = 0; i < 600; i++) {
      const { model, requestId } = await predict(r, `user-${i}`)
      outcomes.push({ route: 'churn', request_id: requestId, metric: 'converted', value: (i * 13) % 100 < (model === 'b' ? 30 : 22) ? 1 : 0 })
      if (i % 3 === 0) outcomes.push({ route: 'churn', request_id: requestId, metric: 'revenue', value: (i % 7) * 3.5 })
    }
    expect((await feedback(r, outcomes)).status).toBe(200)
    await r.router.flush()
    const live = await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json() as Record<string, unknown>
    const out = new PassThrough()
    let text = ''
    out.on('data', (c: Buffer) => { text += c.toString() })
    const code = await runCli(['report', '--json', '--config', r.configFile, join(dirname(r.configFile), 'records.jsonl')], { out, err: new PassThrough() })
    expect(code).toBe(0)
    const offline = JSON.parse(text) as { experiments: Record<string, unknown>[] }
    expect(offline.experiments).toHaveLength(1)
    const { scope: _scope, ...liveStats } = live
    expect(offline.experiments[0]).toEqual(liveStats)
  })

  it('keeps collecting data while there is too little of it', async () => {
    const r = await setup()
    for (let i = 0; i < 20; i++) await predict(r, `user-${i}`)
    expect((await experiment(r)).metrics.converted?.verdict).toBe('collecting data')
  })
})

async function records(r: RunningRouter): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = []
  for await (const rec of readRecords(join(dirname(r.configFile), 'records.jsonl'))) out.push(rec)
  return out
}

const outcomeKeys = (m: Map<string, number>) => [...m.keys()].filter((k) => k.startsWith('modelsplit_outcome'))

describe('POST /feedback: nothing accepted is lost or half-applied', () => {
  it('15 000 outcomes in one NDJSON batch (945 kB): every outcome record reaches the file', async () => {
    const r = await setup()
    const lines = Array.from({ length: 15_000 }, (_, i) => JSON.stringify({ route: 'churn', user_id: `user-${String(i).padStart(5, '0')}`, metric: 'revenue', value: i % 50 }))
    const body = lines.join('\n') + '\n'
    expect(body.length).toBeGreaterThan(900_000)
    const res = await feedback(r, body, '/feedback', 'application/x-ndjson')
    expect(res).toMatchObject({ status: 200, body: { accepted: 15_000 } })
    await r.router.flush()
    const outcomes = (await records(r)).filter((x) => x.type === 'outcome')
    expect(outcomes).toHaveLength(15_000)
    expect(outcomes[0]).toMatchObject({ schema: 1, route: 'churn', metric: 'revenue', value: 0, attributed_by: 'user_id' })
    expect(new Set(outcomes.map((o) => o.user_id)).size).toBe(15_000)
    const m = await metrics(r)
    expect(m.get('modelsplit_records_total{result="dropped"}')).toBe(0)
  })

  it('a batch with a value whose square overflows answers 422 and applies none of it', async () => {
    const r = await setup()
    const res = await feedback(r, [5, 1e200, 7].map((value, i) => ({ route: 'churn', user_id: `u${i}`, metric: 'revenue', value })))
    expect(res.status).toBe(422)
    expect(res.body.problems).toEqual([{ at: '[1].value', message: expect.stringContaining(`at most ${MAX_OUTCOME_VALUE}`) }])
    await r.router.flush()
    expect(outcomeKeys(await metrics(r))).toEqual([])
    expect((await records(r).catch(() => [])).filter((x) => x.type === 'outcome')).toEqual([])
  })

  it('values are bounded, so the sum of squares can never reach +Inf', async () => {
    const r = await setup()
    const huge = await feedback(r, [{ route: 'churn', model: 'a', metric: 'revenue', value: 1.2e154 }, { route: 'churn', model: 'a', metric: 'revenue', value: 1.2e154 }])
    expect(huge.status).toBe(422)
    expect(huge.body.problems).toHaveLength(2)
    const largest = await feedback(r, [{ route: 'churn', model: 'a', metric: 'revenue', value: MAX_OUTCOME_VALUE }, { route: 'churn', model: 'a', metric: 'revenue', value: MAX_OUTCOME_VALUE }])
    expect(largest.status).toBe(200)
    const squares = (await metrics(r)).get('modelsplit_outcome_value_squares_sum{route="churn",model="a",metric="revenue"}')
    expect(squares).toBe(2e30)
    expect(Number.isFinite(squares)).toBe(true)
  })

  it.each([
    ['a single object', (deep: string) => `{"route":"churn","user_id":"u","metric":"revenue","value":${deep}}`, 'value'],
    ['a JSON array', (deep: string) => `[{"route":"churn","user_id":"u","metric":"revenue","value":1},{"route":"churn","value":${deep}}]`, '[1].value'],
    ['NDJSON', (deep: string) => `{"route":"churn","user_id":"u","metric":"revenue","value":1}\n{"route":"churn","extra":${deep}}\n`, '[1].extra'],
  ])('a value nested 10 000 levels deep in %s answers 400 naming the field', async (_form, body, at) => {
    const r = await setup()
    const res = await feedback(r, body('['.repeat(10_000) + ']'.repeat(10_000)))
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ code: 'MS_FEEDBACK_INVALID', problems: [{ at, message: expect.stringContaining(`nested more than ${MAX_NESTING} levels`) }] })
    expect(outcomeKeys(await metrics(r))).toEqual([])
  })

  it.each([
    ['an unterminated string', '{"route":"churn","metric":"rev', 'body'],
    ['an unterminated array', '[{"route":"churn"}', 'body'],
    ['text after the array', '[{"route":"churn"}] x', 'body'],
    ['a missing comma', '[{"a":1} {"b":2}]', '[0]'],
    ['a trailing comma', '[{"a":1},]', '[1]'],
    ['a stray bracket', '{"value":1}}', 'line 1'],
    ['an outcome of 70 000 characters', `{"route":"churn","user_id":"${'x'.repeat(70_000)}","metric":"revenue","value":1}`, 'body'],
    ['a bare number', '42', 'body'],
    ['an empty array', '[]', 'body'],
  ])('hostile JSON: %s answers 400, never 500', async (_name, body, at) => {
    const r = await setup()
    const res = await feedback(r, body)
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ statusCode: 400, code: 'MS_FEEDBACK_INVALID', problems: [{ at }] })
  })

  it('while the record file cannot be written, a batch waits, then answers 503 with Retry-After and applies nothing', async () => {
    const a = await upstream(jsonEcho('a'))
    const b = await upstream(jsonEcho('b'))
    const r = await router(config(a.url, b.url).replace('./records.jsonl', './blocked/records.jsonl'))
    const blocker = join(dirname(r.configFile), 'blocked')
    await writeFile(blocker, 'a file where the recording directory should be')
    // The first record written finds the file unwritable.
    await predict(r, 'alice')
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = performance.now()
    const res = await fetch(`${r.url}/feedback`, { method: 'POST', body: JSON.stringify({ route: 'churn', model: 'a', metric: 'converted', value: 1 }) })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('2')
    expect(await res.json()).toMatchObject({ statusCode: 503, code: 'MS_FEEDBACK_UNAVAILABLE', message: expect.stringContaining('no outcome applied') })
    expect(performance.now() - started).toBeGreaterThanOrEqual(1900)
    expect(outcomeKeys(await metrics(r))).toEqual([])

    // The directory comes back: the same batch is taken, and its record is written after the prediction's.
    await unlink(blocker)
    expect((await feedback(r, { route: 'churn', model: 'a', metric: 'converted', value: 1 })).status).toBe(200)
    await r.router.flush()
    const recs: Record<string, unknown>[] = []
    for await (const rec of readRecords(join(blocker, 'records.jsonl'))) recs.push(rec)
    expect(recs.map((x) => x.type)).toEqual(['prediction', 'outcome'])
    expect((await metrics(r)).get('modelsplit_outcomes_total{route="churn",model="a",metric="converted"}')).toBe(1)
  })

  it('predictions keep flowing (longest wait under 400 ms, p99 under 150 ms, or 30× / 10× an unloaded baseline) while a 10 MB batch is parsed, validated, recorded and applied', async () => {
    const r = await setup()
    const items: string[] = []
    let size = 2
    for (let i = 0; size < 10_000_000; i++) {
      const line = JSON.stringify({ route: 'churn', user_id: `u${i}`, metric: 'revenue', value: i % 100 })
      items.push(line)
      size += line.length + 1
    }
    const count = items.length
    // Encoded up front: this process is the client too, and should not stall itself while measuring.
    const body = Buffer.from(`[${items.join(',')}]`)
    items.length = 0
    expect(body.length).toBeLessThanOrEqual(10 * 1024 * 1024)
    for (let i = 0; i < 50; i++) await predict(r, `warm-${i}`)

    // undici's request rather than fetch: this process is the client as well, so keep its share small.
    const p99Of = (xs: number[]): number => {
      xs.sort((x, y) => x - y)
      return xs[Math.ceil(xs.length * 0.99) - 1] ?? Infinity
    }
    const run = (stop: () => boolean, latencies: number[]) => async (id: number): Promise<void> => {
      for (let i = 0; !stop(); i++) {
        const t = performance.now()
        const res = await request(`${r.url}/models/churn/predict`, { method: 'POST', headers: { 'x-user-id': `user-${id}-${i}`, 'content-type': 'application/json' }, body: '{}' })
        await res.body.text()
        expect(res.statusCode).toBe(200)
        if (!stop()) latencies.push(performance.now() - t)
      }
    }
    // The same clients without the batch first: on a loaded machine (CI shares its cores) every
    // latency is higher, so the stall is judged against this baseline as well as the 50 ms target (the issue's
    // figure is the bench's to measure; the defect this catches held predictions ~800 ms).
    const baseline: number[] = []
    await Promise.all([0, 1, 2, 3].map(run(() => baseline.length >= 400, baseline)))
    let done = false
    const latencies: number[] = []
    const clients = [0, 1, 2, 3].map(run(() => done, latencies))
    const res = await fetch(`${r.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    // The answer is in once its headers are: stop measuring before this process parses 15 MB of it.
    done = true
    await Promise.all(clients)
    const answer = await res.json() as { accepted: number }
    expect(res.status).toBe(200)
    expect(answer.accepted).toBe(count)
    const p99 = p99Of(latencies)
    const base = p99Of(baseline)
    expect(latencies.length).toBeGreaterThan(100)
    // Processed in one turn, the batch held every prediction in flight for ~800 ms; in slices they
    // keep flowing. The longest wait is what that defect shows (a p99 over ~500 predictions may
    // miss the four clients' one stalled request each); the p99 bounds the rest. Both leave room
    // for the other test files this run shares two cores with.
    const max = latencies.at(-1) as number
    const seen = `p99 ${p99.toFixed(1)} ms (baseline ${base.toFixed(1)} ms), max ${max.toFixed(1)} ms over ${latencies.length} predictions`
    expect(max, seen).toBeLessThan(Math.max(400, 30 * base))
    expect(p99, seen).toBeLessThan(Math.max(150, 10 * base))
    await r.router.flush()
    const m = await metrics(r)
    expect((m.get('modelsplit_outcomes_total{route="churn",model="a",metric="revenue"}') ?? 0) + (m.get('modelsplit_outcomes_total{route="churn",model="b",metric="revenue"}') ?? 0)).toBe(count)
    expect(m.get('modelsplit_records_total{result="dropped"}')).toBe(0)
  }, 120_000)
})

describe('handleFeedback', () => {
  const metricsOf = (...defs: [string, 'binary' | 'continuous'][]): MetricConfig[] => defs.map(([name, type]) => ({ name, type, mde: null, higher_is_better: true }) as MetricConfig)
  const route = { name: 'churn', metrics: metricsOf(['converted', 'binary'], ['revenue', 'continuous']), arms: [{ model: 'a' }, { model: 'b' }], assigner: { pick: (id: string) => id.length % 2 } } as unknown as RouteRuntime
  const runtime = { routes: [route] } as unknown as Runtime

  function deps(sink: RecordSink | undefined): FeedbackDeps & { tally: Tally; metrics: Metrics } {
    const metrics = new Metrics({ defaultMetrics: false })
    return { memory: new AssignmentMemory(100, 60_000), tally: new Tally(metrics), metrics, sink: () => sink, sinkWaitMs: 50 }
  }

  it('counts outcomes with no sink configured, and answers JSON', async () => {
    const d = deps(undefined)
    const a = await handleFeedback(Buffer.from('{"route":"churn","model":"b","metric":"revenue","value":4}\n{"route":"churn","model":"b","metric":"revenue","value":6}'), runtime, undefined, d)
    expect(a.status).toBe(200)
    expect(a.headers['content-type']).toMatch(/^application\/json/)
    expect(JSON.parse(a.body.toString())).toMatchObject({ accepted: 2, attributed_by: { model: 2 }, outcomes: [{ route: 'churn', model: 'b', metric: 'revenue', attributed_by: 'model' }, { model: 'b' }] })
    expect(d.tally.outcomes('churn', 'b', 'revenue')).toMatchObject({ n: 2, sum: 10 })
  })

  it('answers 503 with Retry-After and counts nothing when the sink refuses the batch', async () => {
    const offered: number[] = []
    const refusing: RecordSink = {
      write: () => false,
      writeBatch: async (records) => { offered.push([...records].length); return false },
      flush: async () => {},
      close: async () => {},
      reopen: async () => {},
    }
    const d = deps(refusing)
    const a = await handleFeedback(Buffer.from('[{"route":"churn","model":"a","metric":"converted","value":1},{"route":"churn","model":"b","metric":"converted","value":0}]'), runtime, undefined, d)
    expect(a).toMatchObject({ status: 503, headers: { 'retry-after': '2' } })
    expect(offered).toEqual([2])
    expect(d.tally.outcomes('churn', 'a', 'converted').n).toBe(0)
    expect(await d.metrics.registry.getSingleMetricAsString('modelsplit_outcomes_total')).not.toMatch(/churn/)
  })

  it('hands the sink one versioned outcome record per outcome, all at once', async () => {
    const batches: object[][] = []
    const sink: RecordSink = {
      write: () => true,
      writeBatch: async (records) => { batches.push([...records]); return true },
      flush: async () => {},
      close: async () => {},
      reopen: async () => {},
    }
    const a = await handleFeedback(Buffer.from('[{"route":"churn","user_id":"ab","metric":"converted","value":true},{"route":"churn","user_id":"abc","metric":"converted","value":false}]'), runtime, route, deps(sink))
    expect(a.status).toBe(200)
    expect(batches).toEqual([[
      { type: 'outcome', schema: 1, ts: expect.any(String), route: 'churn', request_id: null, user_id: 'ab', model: 'a', metric: 'converted', value: 1, attributed_by: 'user_id', bucket: expect.any(Number) },
      expect.objectContaining({ user_id: 'abc', model: 'b', value: 0 }),
    ]])
  })

  it('lists at most 100 problems of a bad batch, and counts them all', async () => {
    const bad = Array.from({ length: 5000 }, (_, i) => ({ route: 'churn', model: 'a', metric: 'revenue', value: -i - 1 }))
    const a = await handleFeedback(Buffer.from(JSON.stringify(bad)), runtime, undefined, deps(undefined))
    const body = JSON.parse(a.body.toString()) as { message: string; problems: unknown[] }
    expect(a.status).toBe(422)
    expect(body.problems).toHaveLength(100)
    expect(body.message).toContain('5000 problems')
  })

  it('the live tally and the report agree bit for bit, and with a two-pass reference to 1e-9, for values near 1e6', async () => {
    let state = 3
    const uniform = (): number => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648 + 1e-12
    const draw = (mean: number): number => mean + 0.25 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())
    const values = { a: [] as number[], b: [] as number[] }
    const d = deps(undefined)
    const analysis = { unit: 'request', buckets: 64, correction: 'holm', alpha: 0.05 } as const
    const config = { routes: [{ name: 'churn', control: 'a', split: [{ model: 'a', weight: 1 }, { model: 'b', weight: 1 }], metrics: route.metrics, analysis }] } as unknown as Config
    d.tally.observe('churn', 'test', ['a', 'b'], [0.5, 0.5], { control: 'a', analysis, metrics: route.metrics })
    const report = new ExperimentAccumulator(config)
    for (let batch = 0; batch < 20; batch++) {
      const outcomes = Array.from({ length: 500 }, (_, i) => ({ model: i % 2 === 0 ? 'a' : 'b', value: draw(i % 2 === 0 ? 1e6 : 1e6 + 0.01) }))
      const body = outcomes.map((o) => JSON.stringify({ route: 'churn', model: o.model, metric: 'revenue', value: o.value })).join('\n')
      expect((await handleFeedback(Buffer.from(body), runtime, undefined, d)).status).toBe(200)
      for (const o of outcomes) {
        values[o.model as 'a' | 'b'].push(o.value)
        report.add({ type: 'outcome', schema: 1, route: 'churn', model: o.model, metric: 'revenue', value: o.value })
      }
    }
    const live = analyseExperiment(d.tally.route('churn')?.input() as NonNullable<ReturnType<Tally['input']>>)
    expect(report.result(config)[0]).toEqual(live)

    // Two passes over values shifted by the first: the mean of the small differences, then Σ(x − mean)².
    const twoPass = (xs: number[]) => {
      const shift = xs[0] ?? 0
      let s = 0
      for (const x of xs) s += x - shift
      const offset = s / xs.length
      let m2 = 0
      for (const x of xs) m2 += (x - shift - offset) ** 2
      return { n: xs.length, sum: 0, shift, offset, m2 }
    }
    const want = welchTTest(twoPass(values.a), twoPass(values.b))
    const got = live.metrics.revenue?.comparisons.b
    expect(Math.abs((got?.p_value ?? 0) / want.pValue - 1)).toBeLessThan(1e-9)
    const half = ((got?.abs_lift_ci[1] ?? 0) - (got?.abs_lift_ci[0] ?? 0)) / 2
    expect(Math.abs(half / (want.absLiftHigh - want.absLift) - 1)).toBeLessThan(1e-9)
  })
})
