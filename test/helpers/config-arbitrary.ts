// A fast-check generator of router config files: mostly well-formed documents built from valid and
// invalid pieces, some of them then damaged as text (truncated, re-indented, re-encoded…).
import fc from 'fast-check'

/** A YAML node: a raw scalar as written in the file, a mapping or a list (block or flow style). */
export type Node =
  | { readonly kind: 'raw'; readonly text: string }
  | { readonly kind: 'map'; readonly entries: readonly (readonly [string, Node])[]; readonly flow: boolean }
  | { readonly kind: 'list'; readonly items: readonly Node[]; readonly flow: boolean }

const raw = (text: string): Node => ({ kind: 'raw', text })

/** Renders a node as the value after `key:` or `- `, at an indentation of `indent` spaces. */
function renderValue(node: Node, indent: number): string {
  if (node.kind === 'raw') return ` ${node.text}`
  if (node.flow || (node.kind === 'map' ? node.entries.length === 0 : node.items.length === 0)) return ` ${renderFlow(node)}`
  return `\n${renderBlock(node, indent + 2)}`
}

function renderFlow(node: Node): string {
  if (node.kind === 'raw') return node.text
  if (node.kind === 'list') return `[${node.items.map(renderFlow).join(', ')}]`
  return `{ ${node.entries.map(([k, v]) => `${k}: ${renderFlow(v)}`).join(', ')} }`
}

function renderBlock(node: Node, indent: number): string {
  const pad = ' '.repeat(indent)
  if (node.kind === 'raw') return pad + node.text
  if (node.kind === 'map') return node.entries.map(([k, v]) => `${pad}${k}:${renderValue(v, indent)}`).join('\n')
  return node.items.map((item) => {
    if (item.kind === 'map' && !item.flow && item.entries.length > 0) {
      // `- first: v` then the other keys aligned under `first`.
      const body = renderBlock(item, indent + 2)
      return `${pad}- ${body.slice(indent + 2)}`
    }
    return `${pad}-${renderValue(item, indent)}`
  }).join('\n')
}

/** Renders a top-level mapping as a YAML document. */
export function renderDocument(doc: Node): string {
  return renderBlock(doc, 0) + '\n'
}

/** Valid and invalid ways to write one value, as raw YAML. */
interface Pool {
  readonly valid: readonly string[]
  readonly invalid: readonly string[]
}

/**
 * A document is drawn either clean (every piece from the valid choices, which still include edge
 * values such as weights of 1e308 or 5e-324) or with mistakes (invalid choices now and then).
 */
interface Mode {
  readonly bad: boolean
}

function pick(m: Mode, pool: Pool, validWeight = 6): fc.Arbitrary<Node> {
  const valid = fc.constantFrom(...pool.valid).map(raw)
  if (!m.bad || pool.invalid.length === 0) return valid
  return fc.oneof({ weight: validWeight, arbitrary: valid }, { weight: 1, arbitrary: fc.constantFrom(...pool.invalid).map(raw) })
}

/** Optionally present (`undefined` leaves the key out), at odds of presentWeight to 1. */
function maybe<T>(arb: fc.Arbitrary<T>, presentWeight = 1): fc.Arbitrary<T | undefined> {
  const present = Math.round((1000 * presentWeight) / (1 + presentWeight))
  return fc.oneof({ weight: 1000 - present, arbitrary: fc.constant(undefined) }, { weight: present, arbitrary: arb })
}

/** A key the schema requires: always there in a clean document, now and then missing otherwise. */
function required<T>(m: Mode, arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return m.bad ? maybe(arb, 25) : arb
}

function map(entries: readonly (readonly [string, Node | undefined])[], flow: boolean): Node {
  return { kind: 'map', entries: entries.filter((e): e is [string, Node] => e[1] !== undefined), flow }
}

const list = (items: readonly Node[], flow: boolean): Node => ({ kind: 'list', items, flow })

// --- value pools: raw YAML as a user might write it ---------------------------------------------

const WEIGHTS: Pool = {
  valid: ['0', '1', '1', '50', '90', '10', '0.5', '33.33', '1e-9', '1e3', '0x10', '.5', '1e308', '5e-324', '1e-320', '-0.0', '!!float 3', '+7'],
  invalid: ['-1', '.nan', '.inf', '-.inf', '"10"', 'ten', '~', '[]', '{}', 'true', '1e400', '"NaN"', '!!str 5', "'0x10'"],
}
const PERCENTS: Pool = { valid: ['0', '10', '33.3', '100', '1e-9', '50'], invalid: ['100.5', '-1', '"50"', '.nan', 'half', '[]'] }
const COUNTS: Pool = { valid: ['1', '64', '1000', '65536'], invalid: ['0', '-5', '1.5', '"100"', '.inf', '{}', '1e400', '65537'] }
const PORTS: Pool = { valid: ['0', '8080', '65535', '18080'], invalid: ['65536', '-1', '"80"', '1.5', 'http'] }
const USER_IDS: Pool = {
  valid: ['header:x-user-id', 'header:X-Req-User', '[header:x-user-id, query:user_id]', '[cookie:uid]', '[body:/user/id, header:x-user-id]', "['body:/a~1b']", '[query:uid, cookie:uid, body:/uid]', "'body:'"],
  invalid: ['header:', 'foo:bar', 'body:user', "'body:/a~2'", '[]', '42', '[42]', "'body:#/x'", ':x', '{ header: x }'],
}
const SALTS: Pool = { valid: ['s1', 'churn-2026-11', '""', '"with spaces"', "'ü'"], invalid: ['42', '[]', '{}'] }
const HASHES: Pool = { valid: ['rendezvous', 'nginx'], invalid: ['md5', '1', 'Nginx', '[]'] }
const BOOLS: Pool = { valid: ['true', 'false'], invalid: ['"yes"', '1', 'yes', '[]'] }
const TIMEOUTS: Pool = { valid: ['1', '1000', '10000', '2147483647'], invalid: ['0', '-5', '1.5', '"100"', '.nan', 'soon'] }
const TOLERANCES: Pool = { valid: ['0', '0.001', '1e-12', '5'], invalid: ['-1', '.nan', '"0.1"'] }
const PREDICTIONS: Pool = { valid: ['auto', '/predictions/0', '/predictions/0/score', '""'], invalid: ['bad', "'#/x'", '/a~2', '42'] }
const MODES: Pool = { valid: ['exact', 'argmax'], invalid: ['fuzzy', '1', 'EXACT'] }
const METRIC_NAMES: Pool = { valid: ['converted', 'revenue', '_x1'], invalid: ['"bad name"', '1abc', '""', '"a-b"'] }
const METRIC_TYPES: Pool = { valid: ['binary', 'continuous'], invalid: ['boolean', '1', '~'] }
const MDES: Pool = { valid: ['0.02', '1', '5e-324'], invalid: ['0', '-1', '"0.1"', '.inf'] }
/** Route paths that never overlap one another; a clean document gives each route its own. */
const DISTINCT_PATHS = ['/p0', '/p1', '/p2/deep', '/p4/', '"/ü"', '/models/churn']
const BAD_PATHS = ['/', '/p0/sub', '/feedback', 'p3', '/a/../b', '/q?x', '/p5//x', '42', '""', '[/x]', '/feedback/x', '"/#frag"', '/p0']
const MODEL_NAMES = ['a', 'b', 'c', 'm-1', '"m.2"', '"ü"', '"1"', 'churn-v2', 'toString']
const ODD_MODEL_NAMES = ['__proto__', 'constructor', '""', '~', '"a b"', 'hasOwnProperty']
/** Names a route may refer to that no clean document defines. */
const UNDEFINED_MODELS = ['ghost', 'valueOf', '__proto__', '~', '[]']

export interface ConfigUrls {
  /** A model server that answers. */
  readonly good: string
  /** A port that refuses connections. */
  readonly dead: string
  readonly port: number
}

function urls(u: ConfigUrls): Pool {
  return {
    valid: [`"${u.good}"`, u.good, `"${u.good}/v1/models/m/"`, `"${u.good.replace('http', 'HTTP')}"`, `"${u.dead}"`, `"http://localhost:${u.port}"`, `'${u.good}/a%20b'`, `"http://user:pw@127.0.0.1:${u.port}"`],
    invalid: ['"ftp://127.0.0.1:1"', '"127.0.0.1:80"', `"${u.good}/?q=1"`, `"${u.good}#f"`, '"http://127.0.0.1:0"', '"http://127.0.0.1:99999"', '""', '42', '~', '[a]', '{}', '"not a url"', '"http://"', '"file:///etc/passwd"', '"javascript:alert(1)"'],
  }
}

function modelArb(m: Mode, u: ConfigUrls): fc.Arbitrary<Node> {
  const fields = fc.record({
    url: required(m, pick(m, urls(u), 5)),
    timeout_ms: maybe(pick(m, TIMEOUTS)),
    connections: maybe(pick(m, COUNTS), 0.3),
    bogus: m.bad ? maybe(fc.constant(raw('1')), 0.05) : fc.constant(undefined),
    flow: fc.boolean(),
  }).map((f) => map([['url', f.url], ['timeout_ms', f.timeout_ms], ['connections', f.connections], ['bogus', f.bogus]], f.flow))
  if (!m.bad) return fields
  return fc.oneof({ weight: 12, arbitrary: fields }, { weight: 1, arbitrary: fc.constantFrom(raw(`"${u.good}"`), raw('~'), raw('[]'), raw('42')) })
}

/** A reference to a model: one of the defined names, or (with mistakes) one that is not. */
function modelRef(m: Mode, names: readonly string[]): fc.Arbitrary<string> {
  if (!m.bad) return fc.constantFrom(...names)
  return fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: fc.constantFrom(...UNDEFINED_MODELS) })
}

function splitArb(m: Mode, names: readonly string[]): fc.Arbitrary<Node> {
  const entry = (model: fc.Arbitrary<string>): fc.Arbitrary<Node> => fc.record({
    model: required(m, model),
    weight: required(m, pick(m, WEIGHTS, 8)),
    extra: m.bad ? maybe(fc.constant('1'), 0.03) : fc.constant(undefined),
    flow: fc.boolean(),
  }).map((e) => map([['model', e.model === undefined ? undefined : raw(e.model)], ['weight', e.weight], ['share', e.extra === undefined ? undefined : raw(e.extra)]], e.flow))
  // Each model once, as the schema wants; with mistakes, sometimes twice or undefined.
  const models = m.bad
    ? fc.array(modelRef(m, names), { minLength: 1, maxLength: 4 })
    : fc.shuffledSubarray([...names], { minLength: 1 })
  const entries = models.chain((ms) => fc.tuple(...ms.map((name) => entry(fc.constant(name)))))
  const split = fc.tuple(entries, fc.boolean()).map(([items, flow]) => list(items, flow))
  if (!m.bad) return split
  return fc.oneof({ weight: 20, arbitrary: split }, { weight: 1, arbitrary: fc.constantFrom(raw('[]'), raw('{}'), raw('a'), raw('~')) })
}

function shadowArb(m: Mode, names: readonly string[]): fc.Arbitrary<Node> {
  const models = m.bad ? fc.array(modelRef(m, names), { maxLength: 3 }) : fc.shuffledSubarray([...names], { maxLength: Math.min(3, names.length) })
  const shadows = models.chain((ms) => fc.tuple(...ms.map((model) => fc.record({ percent: maybe(pick(m, PERCENTS)), max_in_flight: maybe(pick(m, COUNTS), 0.3) })
    .map((e) => map([['model', raw(model)], ['percent', e.percent], ['max_in_flight', e.max_in_flight]], true)))))
    .map((items) => list(items, false))
  if (!m.bad) return shadows
  return fc.oneof({ weight: 10, arbitrary: shadows }, { weight: 1, arbitrary: fc.constant(raw('yes')) })
}

function routeArb(m: Mode, names: readonly string[], index: number, path: string): fc.Arbitrary<Node> {
  const name = m.bad ? pick(m, { valid: [`r${index}`, '"ü route"', 'r0', 'churn'], invalid: ['""', '42', '[]', '~', '2024-01-01'] }) : fc.constantFrom(raw(`r${index}`), raw(`"ü route ${index}"`))
  const missing: Pool = { valid: ['random', 'reject', ...names], invalid: ['nope', '42', 'valueOf', '[]'] }
  return fc.record({
    name: required(m, name),
    path: required(m, m.bad ? fc.oneof({ weight: 4, arbitrary: fc.constant(raw(path)) }, { weight: 1, arbitrary: fc.constantFrom(...BAD_PATHS).map(raw) }) : fc.constant(raw(path))),
    user_id: maybe(pick(m, USER_IDS)),
    salt: maybe(pick(m, SALTS), 0.4),
    hash: maybe(pick(m, HASHES), 0.6),
    missing_user_id: maybe(pick(m, missing), 0.5),
    allow_override: maybe(pick(m, BOOLS), 0.3),
    split: required(m, splitArb(m, names)),
    shadow: maybe(shadowArb(m, names), 0.5),
    compare: maybe(fc.record({ prediction: maybe(pick(m, PREDICTIONS)), tolerance: maybe(pick(m, TOLERANCES)), mode: maybe(pick(m, MODES)) })
      .map((c) => map([['prediction', c.prediction], ['tolerance', c.tolerance], ['mode', c.mode]], true)), 0.3),
    record: maybe(pick(m, BOOLS), 0.3),
    metrics: maybe(fc.uniqueArray(fc.record({ name: pick(m, METRIC_NAMES), type: required(m, pick(m, METRIC_TYPES)), mde: maybe(pick(m, MDES), 0.5), higher: maybe(pick(m, BOOLS), 0.3) }), { maxLength: 2, selector: (x) => (x.name.kind === 'raw' ? x.name.text : '') })
      .map((ms) => list(ms.map((x) => map([['name', x.name], ['type', x.type], ['mde', x.mde], ['higher_is_better', x.higher]], true)), false)), 0.3),
    control: m.bad ? maybe(modelRef(m, names).map(raw), 0.2) : fc.constant(undefined),
    bogus: m.bad ? maybe(fc.constantFrom('1', 'typo').map(raw), 0.04) : fc.constant(undefined),
    flow: fc.boolean(),
  }).map((r) => map([
    ['name', r.name], ['path', r.path], ['user_id', r.user_id], ['salt', r.salt], ['hash', r.hash], ['missing_user_id', r.missing_user_id],
    ['allow_override', r.allow_override], ['split', r.split], ['shadow', r.shadow], ['compare', r.compare], ['record', r.record],
    ['metrics', r.metrics], ['control', r.control], ['spilt', r.bogus],
  ], r.flow && r.split?.kind === 'list' && r.split.flow && (r.shadow === undefined || r.shadow.kind !== 'list' || r.shadow.items.length === 0) && (r.metrics === undefined || r.metrics.kind !== 'list' || r.metrics.items.length === 0)))
}

/** Nests `depth` levels of lists and mappings, in flow or block style. */
function nested(depth: number, flow: boolean): Node {
  let node: Node = raw('x')
  for (let i = 0; i < depth; i++) node = i % 2 === 0 ? list([node], flow) : map([['k', node]], flow)
  return node
}

/** Text-level damage and oddities, applied to a rendered document; some keep it valid. */
const TEXT_CHANGES: readonly { readonly name: string; readonly apply: (text: string, at: number) => string }[] = [
  { name: 'truncated', apply: (t, at) => t.slice(0, Math.floor(at * t.length)) },
  { name: 'CRLF line ends', apply: (t) => t.replace(/\n/g, '\r\n') },
  { name: 'byte order mark', apply: (t) => '\uFEFF' + t },
  { name: 'tab-indented line', apply: (t, at) => { const ls = t.split('\n'); const i = Math.floor(at * ls.length); ls[i] = `\t${ls[i] ?? ''}`; return ls.join('\n') } },
  { name: 'duplicated line', apply: (t, at) => { const ls = t.split('\n'); const i = Math.floor(at * ls.length); ls.splice(i, 0, ls[i] ?? ''); return ls.join('\n') } },
  { name: 'second document', apply: (t) => `${t}---\nmodels: {}\n` },
  { name: 'directive and document markers', apply: (t) => `%YAML 1.2\n---\n${t}...\n` },
  { name: 'comments', apply: (t) => `# a comment\n${t.replace(/\n/g, ' # trailing\n')}` },
  { name: 'NUL byte', apply: (t, at) => t.slice(0, Math.floor(at * t.length)) + '\u0000' + t.slice(Math.floor(at * t.length)) },
  { name: 'dedented tail', apply: (t, at) => { const ls = t.split('\n'); const i = Math.floor(at * ls.length); return [...ls.slice(0, i), ...ls.slice(i).map((l) => l.trimStart())].join('\n') } },
  { name: 'no final newline', apply: (t) => t.trimEnd() },
]

/** Whole documents that are not a config at all, or YAML at its edges. */
const ODD_DOCUMENTS: readonly string[] = [
  '', '\n', '~', '42', '- a\n- b\n', '"just a string"', '[', 'a: b: c', '{'.repeat(200), 'x: &a [*a]\n', '!!js/function "f"\n',
  'key: "\\xZZ"\n', 'models: !!binary aGVsbG8=\nroutes: !!set { a, b }\n', 'models:\n  ? [a, b]\n  : { url: x }\n', '<<: *nope\n',
  '---\n---\n', 'models: []\nroutes: {}\n', 'routes:\n  - *undefined_alias\n', '\uFEFF', '\t', 'models:\n\tx: 1\n', '%TAG ! tag:x,2000:\n--- !foo 1\n',
]

function documentArb(m: Mode, u: ConfigUrls): fc.Arbitrary<string> {
  const names = m.bad
    ? fc.uniqueArray(fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...MODEL_NAMES) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_MODEL_NAMES) }), { minLength: 1, maxLength: 4 })
    : fc.uniqueArray(fc.constantFrom(...MODEL_NAMES), { minLength: 1, maxLength: 4 })
  return names.chain((ns) => fc.record({
    names: fc.constant(ns),
    models: fc.tuple(...ns.map(() => modelArb(m, u))),
    routes: fc.shuffledSubarray(DISTINCT_PATHS, { minLength: m.bad ? 0 : 1, maxLength: 3 })
      .chain((paths) => fc.tuple(...paths.map((p, i) => routeArb(m, ns, i, p)))),
    routesOther: m.bad ? maybe(fc.constantFrom(raw('[]'), raw('{}'), raw('~'), raw('routes')), 0.03) : fc.constant(undefined),
    anchors: fc.constantFrom('none', 'none', 'alias', 'merge'),
    listen: maybe(fc.record({ host: maybe(pick(m, { valid: ['127.0.0.1', '0.0.0.0', '"::"'], invalid: ['42', '""'] })), port: maybe(pick(m, PORTS)) }), 0.3),
    admin: maybe(fc.record({ host: maybe(pick(m, { valid: ['127.0.0.1'], invalid: ['[]'] })), port: maybe(pick(m, { valid: ['9464', '0', '19464'], invalid: ['8080', '-1'] })) }), 0.3),
    limits: maybe(fc.record({
      max_body_bytes: maybe(pick(m, { valid: ['1', '1024', '1048576', '1e308'], invalid: ['0', '-1', '"1MB"', '1.5'] })),
      max_mirror_body_bytes: maybe(pick(m, { valid: ['0', '1024'], invalid: ['-1', '.nan'] })),
      max_capture_bytes: maybe(pick(m, { valid: ['0', '4194304'], invalid: ['-1'] })),
      body_timeout_ms: maybe(pick(m, { valid: ['1', '10000', '3600000'], invalid: ['0', '3600001', '1e308'] })),
      max_body: m.bad ? maybe(fc.constant(raw('1')), 0.1) : fc.constant(undefined),
    }), 0.4),
    shutdown: maybe(pick(m, { valid: ['0', '10000'], invalid: ['-1', '1.5', '"10s"'] }), 0.2),
    recording: maybe(fc.record({
      path: maybe(pick(m, { valid: ['rec/p.jsonl', './data/p.jsonl', '"a b/c.jsonl"'], invalid: ['""', '42', '[]'] })),
      max_bytes: maybe(pick(m, { valid: ['1024', '1000000'], invalid: ['1023', '0', '-1'] })),
      keep: maybe(pick(m, { valid: ['0', '5'], invalid: ['-1', '0.5'] })),
      include_inputs: maybe(pick(m, BOOLS)),
    }), 0.3),
    feedback: maybe(fc.record({
      request_memory: maybe(pick(m, { valid: ['0', '100'], invalid: ['-1'] })),
      request_ttl_ms: maybe(pick(m, { valid: ['1', '3600000'], invalid: ['0'] })),
      max_body_bytes: maybe(pick(m, { valid: ['1', '10485760'], invalid: ['0'] })),
    }), 0.2),
    unknownTop: m.bad ? maybe(fc.constantFrom('bogus', 'model', 'route'), 0.05) : fc.constant(undefined),
    deep: m.bad ? maybe(fc.tuple(fc.integer({ min: 1, max: 160 }), fc.boolean()), 0.05) : fc.constant(undefined),
  })).map((d) => {
    const modelEntries = d.names.map((name, i): [string, Node] => [name, d.models[i] as Node])
    const first = modelEntries[0]
    const second = modelEntries[1]
    if (d.anchors !== 'none' && first !== undefined && first[1].kind === 'map' && second !== undefined) {
      // The first model's mapping anchored, then reused whole by alias or merged in with <<.
      modelEntries[0] = [first[0], raw(`&base ${renderFlow(first[1])}`)]
      modelEntries[1] = [second[0], d.anchors === 'alias' || second[1].kind !== 'map'
        ? raw('*base')
        : { ...second[1], entries: [['<<', raw('*base')], ...second[1].entries.filter(([k]) => k !== 'url')] }]
    }
    const fields = (o: Record<string, Node | undefined>): [string, Node | undefined][] => Object.entries(o)
    const top: [string, Node | undefined][] = [
      ['listen', d.listen && map(fields(d.listen), true)],
      ['admin', d.admin && map(fields(d.admin), true)],
      ['limits', d.limits && map(fields(d.limits), false)],
      ['shutdown_timeout_ms', d.shutdown],
      ['recording', d.recording && map(fields(d.recording), false)],
      ['feedback', d.feedback && map(fields(d.feedback), true)],
      ['models', map(modelEntries, false)],
      ['routes', d.routesOther ?? list(d.routes, false)],
      [d.unknownTop ?? '', d.unknownTop === undefined ? undefined : raw('1')],
      [d.deep !== undefined && d.deep[0] % 3 === 0 ? 'limits' : 'deep', d.deep && nested(d.deep[0], d.deep[1])],
    ]
    return renderDocument(map(top, false))
  })
}

/**
 * Config file texts: a document from valid and invalid pieces (models with odd URLs, weights from
 * 0 to 1e308, nginx and rendezvous, duplicate names, shadows, limits, metrics, unknown keys, wrong
 * types, anchors and merge keys, deep nesting), sometimes damaged as text, sometimes not a config at all.
 */
export function configText(u: ConfigUrls): fc.Arbitrary<string> {
  const document = fc.oneof({ weight: 2, arbitrary: documentArb({ bad: false }, u) }, { weight: 3, arbitrary: documentArb({ bad: true }, u) })
  const changed = fc.tuple(document, fc.constantFrom(...TEXT_CHANGES), fc.double({ min: 0, max: 1, noNaN: true }))
    .map(([text, change, at]) => change.apply(text, at))
  return fc.oneof({ weight: 14, arbitrary: document }, { weight: 4, arbitrary: changed }, { weight: 1, arbitrary: fc.constantFrom(...ODD_DOCUMENTS) })
}
