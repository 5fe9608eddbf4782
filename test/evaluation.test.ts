import { join, dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { jsonEcho } from './helpers/upstream.js'
import { parseMetrics, type RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { readRecords } from '../src/record/index.js'
import { runCli } from '../src/cli/run.js'
import { PassThrough } from 'node:stream'


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

  it('flags a sample ratio mismatch when traffic does not follow the configured weights', async () => {
    const r = await setup(90, 10)
    for (let i = 0; i < 600; i++) await predict(r, `user-${i}`)
    // Mid-experiment the weights change to 50/50: the 90/10 assignments so far no longer fit.
    await r.writeConfig(config(new URL(r.router.current().config.models.a!.url).origin, new URL(r.router.current().config.models.b!.url).origin, 50, 50))
    expect((await fetch(`${r.adminUrl}/admin/reload`, { method: 'POST' })).status).toBe(200)
    const e = await experiment(r)
    expect(e.metrics.converted?.srm.mismatch).toBe(true)
    expect(e.metrics.converted?.verdict).toBe('sample ratio mismatch: investigate')
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
