// The decision core (plan/decide.ts) on its own: YAML → compile() → RoutePlan → decide(), with no
// listener, fastify or socket in between. What a request carries is a plain RequestView.
import { describe, expect, it, onTestFinished } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { compile, decide, isShadowed, matchRoute, newDecision, type BodyView, type Plan, type RequestView, type RoutePlan } from '../src/plan/index.js'
import { captureIo, tempConfigFile } from './helpers/cli-io.js'

const FILE = '/virtual/router.yaml'

/** Compiles config text that must be valid and returns its plan. */
function planOf(text: string): Plan {
  const r = compile(text, FILE)
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.problems.map((p) => `${p.line ?? '-'} ${p.path}: ${p.message}`).join('\n')}`)
  return r.plan
}

function routeOf(plan: Plan, name: string): RoutePlan {
  const r = plan.routes.find((x) => x.name === name)
  if (r === undefined) throw new Error(`no route ${name}`)
  return r
}

function view(opts: { headers?: Record<string, string | string[]>; query?: string; body?: string | Buffer; method?: string } = {}): RequestView {
  const raw = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8')
  const body: BodyView = { raw, parsed: undefined, state: 'unparsed', truncated: false }
  return { method: opts.method ?? 'POST', headers: opts.headers ?? {}, query: opts.query ?? '', body }
}

/** Decides one request and returns the decision with the chosen model's name (undefined when rejected). */
function decideOn(route: RoutePlan, v: RequestView, random?: () => number): { model: string | undefined; target: number; source: string; userId: string | undefined; missing: string | null; unknownOverride: boolean } {
  const d = newDecision()
  decide(route, v, d, random)
  return { ...d, model: d.target < 0 ? undefined : route.targets[d.target]?.model }
}

const CONFIG = `
models:
  a:  { url: "http://127.0.0.1:9001" }
  b:  { url: "http://127.0.0.1:9002/" }
  c:  { url: "http://127.0.0.1:9003/v1/models/c" }
  qa: { url: "http://127.0.0.1:9004" }
routes:
  - name: hdr
    path: /hdr
    user_id: header:X-User-Id
    split: [{ model: a, weight: 50 }, { model: b, weight: 50 }]
  - name: qry
    path: /qry
    user_id: [query:user_id]
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }, { model: c, weight: 1 }]
  - name: ck
    path: /ck
    user_id: [cookie:uid]
    split: [{ model: a, weight: 30 }, { model: b, weight: 70 }]
  - name: body
    path: /body
    user_id: [body:/user/id, header:x-user-id]
    missing_user_id: reject
    split: [{ model: a, weight: 1 }, { model: b, weight: 3 }]
  - name: escaped
    path: /escaped
    user_id: [body:/a~1b/c~0d]
    missing_user_id: reject
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
  - name: first
    path: /first
    user_id: [header:x-user-id, query:uid, cookie:uid, body:/uid]
    missing_user_id: reject
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
  - name: qa
    path: /qa
    allow_override: true
    missing_user_id: reject
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
  - name: rnd
    path: /rnd
    missing_user_id: random
    split: [{ model: a, weight: 0 }, { model: b, weight: 30 }, { model: c, weight: 70 }]
  - name: fixed
    path: /fixed
    user_id: [body:/uid]
    missing_user_id: c
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
  - name: ngx
    path: /ngx
    hash: nginx
    salt: x
    split: [{ model: a, weight: 90 }, { model: b, weight: 10 }]
  - name: churn
    path: /models/churn
    salt: churn-2026-11
    split: [{ model: a, weight: 90 }, { model: b, weight: 10 }]
`

const plan = planOf(CONFIG)
const route = (name: string): RoutePlan => routeOf(plan, name)

describe('decide: where the user id comes from', () => {
  it('reads a header by its lower-cased name (the config may write it in any case) and hashes it', () => {
    const r = route('hdr')
    const d = decideOn(r, view({ headers: { 'x-user-id': 'alice' } }))
    expect(d).toMatchObject({ userId: 'alice', source: 'hash', missing: null, unknownOverride: false })
    expect(d.target).toBe(r.assigner.pick('alice'))
    // Repeated headers arrive as a list: the first one is the id.
    expect(decideOn(r, view({ headers: { 'x-user-id': ['bob', 'alice'] } })).userId).toBe('bob')
    // An empty header is no id at all: missing_user_id (random by default) decides.
    expect(decideOn(r, view({ headers: { 'x-user-id': '' } }), () => 0)).toMatchObject({ userId: undefined, source: 'missing_user_id', missing: 'absent', model: 'a' })
  })

  it.each([
    ['a plain value', 'user_id=alice', 'alice'],
    ['+ as a space', 'user_id=alice+smith', 'alice smith'],
    ['percent escapes, UTF-8', 'user_id=caf%C3%A9%20%E2%9C%93', 'café ✓'],
    ['an escaped + stays a +', 'user_id=a%2Bb', 'a+b'],
    ['an escaped name', 'user%5Fid=zed', 'zed'],
    ['the first of two', 'x=1&user_id=first&user_id=second', 'first'],
    ['after an empty pair', '&&user_id=u7&', 'u7'],
    ['an = inside the value', 'user_id=a=b', 'a=b'],
    ['a malformed escape, kept as written', 'user_id=50%ZZ', '50%ZZ'],
  ])('reads query:user_id: %s', (_what, query, id) => {
    const r = route('qry')
    const d = decideOn(r, view({ query }))
    expect(d).toMatchObject({ userId: id, source: 'hash', missing: null })
    expect(d.target).toBe(r.assigner.pick(id))
  })

  it.each([
    ['no such parameter', 'uid=1&user_idx=2&xuser_id=3'],
    ['an empty value', 'user_id=&x=1'],
    ['a bare name', 'user_id'],
    ['no query', ''],
  ])('query:user_id with %s is a missing id', (_what, query) => {
    expect(decideOn(route('qry'), view({ query }), () => 0)).toMatchObject({ userId: undefined, source: 'missing_user_id', missing: 'absent', model: 'a' })
  })

  it.each([
    ['among others', 'a=1; uid=bob; c=3', 'bob'],
    ['first in the header', 'uid=carol', 'carol'],
    ['double-quoted', 'x=1;uid="dave"', 'dave'],
    ['percent-escaped', 'uid=caf%C3%A9', 'café'],
    ['with spaces around the pair', 'x=1;   uid=erin ', 'erin'],
  ])('reads cookie:uid %s', (_what, cookie, id) => {
    const r = route('ck')
    const d = decideOn(r, view({ headers: { cookie } }))
    expect(d).toMatchObject({ userId: id, source: 'hash' })
    expect(d.target).toBe(r.assigner.pick(id))
  })

  it('does not take a cookie whose name only ends or starts with the configured one', () => {
    expect(decideOn(route('ck'), view({ headers: { cookie: 'xuid=1; uidx=2' } }), () => 0.99)).toMatchObject({ userId: undefined, missing: 'absent', model: 'b' })
  })

  it('reads body:/user/id from the raw JSON body; a number is used as its decimal text', () => {
    const r = route('body')
    const s = decideOn(r, view({ body: '{"user":{"id":"carol","x":[1,2]}}' }))
    expect(s).toMatchObject({ userId: 'carol', source: 'hash' })
    expect(s.target).toBe(r.assigner.pick('carol'))
    const n = decideOn(r, view({ body: Buffer.from(' {"user": {"id": 42}} \n') }))
    expect(n).toMatchObject({ userId: '42', source: 'hash' })
    expect(n.target).toBe(r.assigner.pick('42'))
  })

  it('falls through a body without a usable id to the next source', () => {
    const r = route('body')
    for (const body of ['{"user":{"id":true}}', '{"user":{"id":""}}', '{"user":{"id":null}}', '{"user":{"id":{"v":1}}}', '{"user":[]}', '[]', '"str"', '']) {
      expect(decideOn(r, view({ body, headers: { 'x-user-id': 'hdr-id' } })), body).toMatchObject({ userId: 'hdr-id', source: 'hash', missing: null })
      expect(decideOn(r, view({ body })), body).toMatchObject({ target: -1, userId: undefined, source: 'missing_user_id', missing: 'absent' })
    }
    expect(decideOn(r, view({ headers: { 'x-user-id': 'hdr-id' } })).userId).toBe('hdr-id')
  })

  it('says the body was not JSON when no later source had an id, and still uses one that had', () => {
    const r = route('body')
    expect(decideOn(r, view({ body: '{"user":{"id":"carol"' }))).toMatchObject({ target: -1, source: 'missing_user_id', missing: 'body_not_json' })
    expect(decideOn(r, view({ body: 'user=carol' }))).toMatchObject({ target: -1, missing: 'body_not_json' })
    expect(decideOn(r, view({ body: 'not json', headers: { 'x-user-id': 'h' } }))).toMatchObject({ userId: 'h', source: 'hash', missing: null })
    // missing_user_id: MODEL sends a non-JSON body to that model, with the reason kept.
    expect(decideOn(route('fixed'), view({ body: '<xml/>' }))).toMatchObject({ model: 'c', source: 'missing_user_id', missing: 'body_not_json' })
  })

  it('unescapes ~1 and ~0 in the body pointer (RFC 6901)', () => {
    expect(decideOn(route('escaped'), view({ body: '{"a/b":{"c~d":"slashed"}}' }))).toMatchObject({ userId: 'slashed', source: 'hash' })
    expect(decideOn(route('escaped'), view({ body: '{"a":{"b":{"c~d":"x"}},"a~1b":{"c~0d":"y"}}' }))).toMatchObject({ target: -1, missing: 'absent' })
  })

  it('takes the first source that has an id, in the configured order', () => {
    const r = route('first')
    const all = { headers: { 'x-user-id': 'H', cookie: 'uid=C' }, query: 'uid=Q', body: '{"uid":"B"}' }
    expect(decideOn(r, view(all)).userId).toBe('H')
    expect(decideOn(r, view({ ...all, headers: { cookie: 'uid=C' } })).userId).toBe('Q')
    expect(decideOn(r, view({ ...all, headers: { cookie: 'uid=C' }, query: '' })).userId).toBe('C')
    expect(decideOn(r, view({ body: '{"uid":"B"}' })).userId).toBe('B')
    expect(decideOn(r, view({ body: '{"uid":7}' })).userId).toBe('7')
  })

  it('overwrites every field of a reused decision object', () => {
    const r = route('qa')
    const d = newDecision()
    decide(r, view({ headers: { 'x-modelsplit-model': 'nope' } }), d)
    expect(d).toMatchObject({ target: -1, unknownOverride: true, missing: 'absent' })
    decide(r, view({ headers: { 'x-user-id': 'u1' } }), d)
    expect(d).toEqual({ target: r.assigner.pick('u1'), source: 'hash', userId: 'u1', missing: null, unknownOverride: false })
    decide(r, view({ headers: { 'x-modelsplit-model': 'qa', 'x-user-id': 'u1' } }), d)
    expect(d).toEqual({ target: r.targets.findIndex((t) => t.model === 'qa'), source: 'override', userId: undefined, missing: null, unknownOverride: false })
  })
})

describe('decide: override header and missing_user_id', () => {
  it('lets x-modelsplit-model force any defined model where allow_override is true, in the split or not', () => {
    const r = route('qa')
    for (const model of ['a', 'b', 'c', 'qa']) {
      expect(decideOn(r, view({ headers: { 'x-modelsplit-model': model, 'x-user-id': 'u1' } }))).toMatchObject({ model, source: 'override', userId: undefined, missing: null, unknownOverride: false })
    }
    // Models outside the split are reachable targets after the split's own, which pick() indexes.
    expect(r.targets.slice(0, 2).map((t) => t.model)).toEqual(['a', 'b'])
    expect(r.targets.find((t) => t.model === 'c')).toMatchObject({ url: 'http://127.0.0.1:9003/v1/models/c', origin: 'http://127.0.0.1:9003', basePath: '/v1/models/c' })
  })

  it('flags an unknown override and then decides as without one: by the user id, else missing_user_id', () => {
    const r = route('qa')
    const withId = decideOn(r, view({ headers: { 'x-modelsplit-model': 'churn-v9', 'x-user-id': 'u1' } }))
    expect(withId).toMatchObject({ unknownOverride: true, source: 'hash', userId: 'u1', missing: null })
    expect(withId.target).toBe(r.assigner.pick('u1'))
    // missing_user_id: reject on this route.
    expect(decideOn(r, view({ headers: { 'x-modelsplit-model': 'churn-v9' } }))).toMatchObject({ unknownOverride: true, target: -1, source: 'missing_user_id', missing: 'absent' })
    // Names are exact: no case folding, no trimming.
    expect(decideOn(r, view({ headers: { 'x-modelsplit-model': 'A', 'x-user-id': 'u1' } })).unknownOverride).toBe(true)
    // An empty header is no override at all.
    expect(decideOn(r, view({ headers: { 'x-modelsplit-model': '', 'x-user-id': 'u1' } })).unknownOverride).toBe(false)
  })

  it('ignores the override header where allow_override is false', () => {
    const r = route('hdr')
    const d = decideOn(r, view({ headers: { 'x-modelsplit-model': 'qa', 'x-user-id': 'u1' } }))
    expect(d).toMatchObject({ source: 'hash', unknownOverride: false, userId: 'u1' })
    expect(d.target).toBe(r.assigner.pick('u1'))
    expect(r.targets.map((t) => t.model)).toEqual(['a', 'b'])
  })

  it('missing_user_id: random draws by weight and never a weight-0 model', () => {
    const r = route('rnd')
    expect(decideOn(r, view(), () => 0)).toMatchObject({ model: 'b', source: 'missing_user_id', missing: 'absent', userId: undefined })
    expect(decideOn(r, view(), () => 0.2999)).toMatchObject({ model: 'b' })
    expect(decideOn(r, view(), () => 0.3)).toMatchObject({ model: 'c' })
    expect(decideOn(r, view(), () => 0.9999999999999999)).toMatchObject({ model: 'c' })
    const counts = new Map<string, number>()
    let seed = 12345
    const lcg = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    for (let i = 0; i < 10_000; i++) {
      const m = decideOn(r, view(), lcg).model as string
      counts.set(m, (counts.get(m) ?? 0) + 1)
    }
    expect(counts.get('a')).toBeUndefined()
    expect((counts.get('b') ?? 0) / 10_000).toBeGreaterThan(0.28)
    expect((counts.get('b') ?? 0) / 10_000).toBeLessThan(0.32)
  })

  it('missing_user_id: reject leaves no target; missing_user_id: MODEL sends to that model', () => {
    expect(decideOn(route('body'), view())).toMatchObject({ target: -1, model: undefined, source: 'missing_user_id', missing: 'absent' })
    const f = route('fixed')
    expect(decideOn(f, view(), () => 0)).toMatchObject({ model: 'c', source: 'missing_user_id', missing: 'absent' })
    expect(decideOn(f, view({ body: '{"uid":"u1"}' }))).toMatchObject({ target: f.assigner.pick('u1'), source: 'hash' })
    expect(f.missing).toBe(f.targets.findIndex((t) => t.model === 'c'))
  })
})

describe('decide agrees with the assigner and with `modelsplit assign`', () => {
  const ids = Array.from({ length: 500 }, (_, i) => (i % 5 === 0 ? `user-${i}` : i % 5 === 1 ? String(i * 7919) : i % 5 === 2 ? `ü-${i}-✓` : i % 5 === 3 ? `${i}@example.com` : `id ${i}`))

  it.each(['hdr', 'qry', 'ck', 'ngx', 'churn'])('route %s: decide picks assigner.pick(id) for every id', (name) => {
    const r = route(name)
    const source = r.sources[0]
    if (source === undefined) throw new Error('route without a source')
    for (const id of ids) {
      const v = source.kind === 'query'
        ? view({ query: `${encodeURIComponent(source.name)}=${encodeURIComponent(id)}` })
        : source.kind === 'cookie'
          ? view({ headers: { cookie: `${source.name}=${encodeURIComponent(id)}` } })
          : view({ headers: { [source.kind === 'header' ? source.name : 'x-user-id']: id } })
      const d = decideOn(r, v)
      expect(d.userId).toBe(id)
      expect(d.target).toBe(r.assigner.pick(id))
      expect(d.model).toBe(r.assigner.models[r.assigner.pick(id)])
    }
  })

  it('gives each model its share of 10 000 ids (90/10 within 1.5 points)', () => {
    for (const name of ['churn', 'ngx']) {
      const r = route(name)
      let b = 0
      for (let i = 0; i < 10_000; i++) if (decideOn(r, view({ headers: { 'x-user-id': `u${i}` } })).model === 'b') b++
      expect(Math.abs(b / 10_000 - 0.1), name).toBeLessThan(0.015)
    }
  })

  it('matches the README\'s worked example: alice is in churn-v2 under salt churn-2026-11', () => {
    const p = planOf(`models:
  churn-v1: { url: "http://127.0.0.1:9001" }
  churn-v2: { url: "http://127.0.0.1:9002" }
routes:
  - name: churn
    path: /models/churn
    salt: churn-2026-11
    split: [{ model: churn-v1, weight: 90 }, { model: churn-v2, weight: 10 }]
`)
    expect(decideOn(routeOf(p, 'churn'), view({ headers: { 'x-user-id': 'alice' } })).model).toBe('churn-v2')
  })

  it.each(['hdr', 'ngx', 'churn', 'qry'])('route %s: decide picks what `modelsplit assign` prints, text and --json', async (name) => {
    const cfg = await tempConfigFile(CONFIG)
    onTestFinished(() => cfg.remove())
    // `assign` compiles the file itself: compile it the same way here, from the same text.
    const r = routeOf(planOf(CONFIG), name)
    const sample = ids.filter((id) => !id.includes(' ')).slice(0, 200)
    const text = captureIo()
    expect(await runCli(['assign', '--config', cfg.file, '--route', name, ...sample], text.io)).toBe(0)
    expect(text.err()).toBe('')
    const printed = text.out().split('\n').filter((l) => l !== '' && !l.startsWith(' ')).map((l) => l.split('\t'))
    expect(printed.map((p) => p[0])).toEqual(sample)
    const json = captureIo()
    expect(await runCli(['assign', '--config', cfg.file, '--route', name, '--json', ...sample], json.io)).toBe(0)
    const rows = json.out().trim().split('\n').map((l) => JSON.parse(l) as { user_id: string; model: string; route: string })
    sample.forEach((id, i) => {
      const decided = decideOn(r, view({ headers: { 'x-user-id': id }, query: `user_id=${encodeURIComponent(id)}` })).model
      expect(printed[i]?.[1], id).toBe(decided)
      expect(rows[i], id).toMatchObject({ route: name, user_id: id, model: decided })
    })
  })
})

describe('matchRoute', () => {
  it('matches a path prefix on segment boundaries only', () => {
    const routes = [{ path: '/models/churn' }, { path: '/fraud' }]
    const at = (p: string): string | undefined => matchRoute(routes, p)?.path
    expect(at('/models/churn')).toBe('/models/churn')
    expect(at('/models/churn/')).toBe('/models/churn')
    expect(at('/models/churn/invocations')).toBe('/models/churn')
    expect(at('/models/churn/v2/predict')).toBe('/models/churn')
    expect(at('/fraud/x')).toBe('/fraud')
    for (const miss of ['/models/churnx', '/models/chur', '/models', '/models/', '/Models/churn', '/x/models/churn', '', '/', '/fraudulent']) {
      expect(at(miss), miss).toBeUndefined()
    }
  })

  it('lets a route at / take every path', () => {
    expect(matchRoute([{ path: '/' }], '/anything/at/all')?.path).toBe('/')
    expect(matchRoute([{ path: '/' }], '/')?.path).toBe('/')
  })

  it('finds each compiled route from its own paths, whatever order the plan holds them in', () => {
    for (const r of plan.routes) {
      expect(matchRoute(plan.routes, r.path)).toBe(r)
      expect(matchRoute(plan.routes, `${r.path}/predict`)).toBe(r)
      expect(matchRoute(plan.routes, `${r.path}x`)).toBeUndefined()
    }
    // compile() normalises a trailing slash away, so `/p/` in the file matches /p and /p/x.
    const p = planOf(`models: { a: { url: "http://127.0.0.1:1" } }
routes:
  - { name: n, path: /p/, split: [{ model: a, weight: 1 }] }
  - { name: m, path: /p2, split: [{ model: a, weight: 1 }] }
`)
    expect(matchRoute(p.routes, '/p')?.name).toBe('n')
    expect(matchRoute(p.routes, '/p/x')?.name).toBe('n')
    expect(matchRoute(p.routes, '/p2/x')?.name).toBe('m')
  })
})

describe('isShadowed', () => {
  const shadowPlan = (percents: number[], salt = 'exp-1') => planOf(`models:
  a: { url: "http://127.0.0.1:9001" }
${percents.map((_, i) => `  s${i}: { url: "http://127.0.0.1:${9100 + i}" }`).join('\n')}
routes:
  - name: r
    path: /r
    salt: ${salt}
    split: [{ model: a, weight: 1 }]
    shadow:
${percents.map((p, i) => `      - { model: s${i}, percent: ${p} }`).join('\n')}
`)
  const users = Array.from({ length: 10_000 }, (_, i) => `user-${i}`)
  const never = (): number => { throw new Error('a user with an id must not be drawn at random') }

  it('mirrors the same users every time, and about percent of them', () => {
    const [p0, p10, p33, p50, p100] = routeOf(shadowPlan([0, 10, 33.3, 50, 100]), 'r').shadows
    for (const [sh, share] of [[p0, 0], [p10, 0.1], [p33, 0.333], [p50, 0.5], [p100, 1]] as const) {
      if (sh === undefined) throw new Error('missing shadow')
      const first = users.map((u) => isShadowed(sh, u, never))
      const again = users.map((u) => isShadowed(sh, u, never))
      expect(again).toEqual(first)
      const n = first.filter(Boolean).length
      // 5 standard deviations of a binomial share over 10 000 users is at most 0.025.
      expect(Math.abs(n / users.length - share), `${sh.model} at ${share}`).toBeLessThan(0.025)
      if (share === 0) expect(n).toBe(0)
      if (share === 1) expect(n).toBe(users.length)
    }
  })

  it('only adds users when percent is raised, and picks other users under another salt or model', () => {
    const low = routeOf(shadowPlan([10, 10]), 'r').shadows
    const high = routeOf(shadowPlan([50, 50]), 'r').shadows
    const other = routeOf(shadowPlan([10, 10], 'exp-2'), 'r').shadows
    const [l0, l1] = low
    const [h0] = high
    const [o0] = other
    if (l0 === undefined || l1 === undefined || h0 === undefined || o0 === undefined) throw new Error('missing shadow')
    const inLow = users.filter((u) => isShadowed(l0, u, never))
    for (const u of inLow) expect(isShadowed(h0, u, never), u).toBe(true)
    // Independent selections of 10% overlap on about 1% of users, not on all of them.
    const overlapModel = inLow.filter((u) => isShadowed(l1, u, never)).length
    const overlapSalt = inLow.filter((u) => isShadowed(o0, u, never)).length
    expect(overlapModel).toBeLessThan(inLow.length / 3)
    expect(overlapSalt).toBeLessThan(inLow.length / 3)
  })

  it('draws at random with probability percent when there is no user id', () => {
    const sh = routeOf(shadowPlan([30]), 'r').shadows[0]
    if (sh === undefined) throw new Error('missing shadow')
    expect(isShadowed(sh, undefined, () => 0)).toBe(true)
    expect(isShadowed(sh, undefined, () => 0.2999)).toBe(true)
    expect(isShadowed(sh, undefined, () => 0.3001)).toBe(false)
    expect(isShadowed(sh, undefined, () => 0.9999)).toBe(false)
    const all = routeOf(shadowPlan([100]), 'r').shadows[0]
    const none = routeOf(shadowPlan([0]), 'r').shadows[0]
    if (all === undefined || none === undefined) throw new Error('missing shadow')
    expect(isShadowed(all, undefined, () => 0.9999999)).toBe(true)
    expect(isShadowed(none, undefined, () => 0)).toBe(false)
  })
})

// Not committed: these fail against src as it stands (reported with the commit that adds the rest).
describe('decide on plans compile accepts (bugs)', () => {
  it('gives every user a model when the only positive weights are tiny, or compile refuses such weights', () => {
    for (const split of ['[{ model: a, weight: 5e-324 }]', '[{ model: a, weight: 1e-310 }, { model: b, weight: 1e-310 }]', '[{ model: a, weight: 1e-320 }, { model: b, weight: 0 }]']) {
      const text = `models:\n  a: { url: "http://127.0.0.1:9001" }\n  b: { url: "http://127.0.0.1:9002" }\nroutes:\n  - { name: r, path: /r, split: ${split} }\n`
      const compiled = compile(text, FILE)
      if (!compiled.ok) {
        // Refusing them is a fix too, if it says where.
        expect(compiled.problems[0]).toMatchObject({ line: 5, path: expect.stringMatching(/^routes\[0\]\.split/) })
        continue
      }
      const r = compiled.plan.routes[0] as RoutePlan
      for (let i = 0; i < 1000; i++) {
        const d = decideOn(r, view({ headers: { 'x-user-id': `u${i}` } }))
        expect(d.model, `u${i} with split ${split}`).toBeDefined()
        expect(d.source).toBe('hash')
      }
    }
  })

  it('uses a numeric body id above 2^53 as its JSON text, so distinct users stay distinct', () => {
    const r = route('body')
    expect(decideOn(r, view({ body: '{"user":{"id":12345678901234567891}}' })).userId).toBe('12345678901234567891')
    expect(decideOn(r, view({ body: '{"user":{"id":12345678901234567892}}' })).userId).toBe('12345678901234567892')
  })
})
