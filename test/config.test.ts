import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig, parseConfig } from '../src/config/index.js'
import { ConfigError, type ConfigProblem } from '../src/errors.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const EXAMPLE = join(ROOT, 'config', 'router.yaml')
const MANY_PROBLEMS = fileURLToPath(new URL('./fixtures/config/many-problems.yaml', import.meta.url))

/** Runs parseConfig and returns the ConfigError it must throw. */
function configError(text: string, file = 'f.yaml'): ConfigError {
  try {
    parseConfig(text, file)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('parseConfig accepted a config that should be invalid')
}

/** `file:line: path: message`, or the shorter forms when line or path is absent (as the CLI prints). */
function located(p: Pick<ConfigProblem, 'file' | 'line' | 'path'>): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}`
  return p.path === '' ? `${where}: ` : `${where}: ${p.path}: `
}

// Lines 1-3 of most documents below; routes start on line 4.
const MODELS = `models:
  a: { url: "http://127.0.0.1:9001" }
  b: { url: "http://127.0.0.1:9002" }
`
// Lines 4-5 when it follows MODELS.
const ROUTE = `routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
`

interface ErrorCase {
  name: string
  yaml: string
  /** 1-based line the problem must name; undefined where the parser has no node to point at. */
  line: number | undefined
  path: string
  /** Fragments of the message that tell the user what to write; each must appear. */
  message: string | string[]
}

const SYNTAX: ErrorCase[] = [
  {
    name: 'bad indentation',
    yaml: `models:
  a: { url: "http://127.0.0.1:9001" }
routes:
  - name: r
    path: /p
   split: []
`,
    line: 6, path: '', message: 'YAML syntax error: bad indentation',
  },
  { name: 'tab indentation', yaml: 'models:\n\ta: {}\n', line: 2, path: '', message: 'YAML syntax error: tab characters must not be used in indentation' },
  { name: 'duplicated key', yaml: `${MODELS}${ROUTE}models:\n  c: {}\n`, line: 6, path: '', message: 'YAML syntax error: duplicated mapping key' },
  {
    name: 'unclosed flow mapping',
    yaml: `models:
  a: { url: "http://127.0.0.1:9001"
routes: []
`,
    line: 3, path: '', message: 'YAML syntax error: missed comma between flow collection entries',
  },
]

const UNKNOWN_KEYS: ErrorCase[] = [
  { name: 'top level', yaml: `${MODELS}${ROUTE}lisen: { port: 1 }\n`, line: 6, path: 'lisen', message: 'unknown key; allowed keys here: listen, admin, limits, shutdown_timeout_ms, models, routes' },
  { name: 'listen', yaml: `${MODELS}${ROUTE}listen: { host: 127.0.0.1, prot: 8081 }\n`, line: 6, path: 'listen.prot', message: 'unknown key; allowed keys here: host, port' },
  { name: 'limits', yaml: `${MODELS}${ROUTE}limits:\n  max_body: 10\n`, line: 7, path: 'limits.max_body', message: 'unknown key; allowed keys here: max_body_bytes' },
  {
    name: 'model',
    yaml: `models:
  a: { url: "http://127.0.0.1:9001", timeout: 5 }
${ROUTE}`,
    line: 2, path: 'models.a.timeout', message: 'unknown key; allowed keys here: url, timeout_ms, connections',
  },
  {
    name: 'route',
    yaml: `${MODELS}routes:
  - name: r
    path: /p
    weights: 1
    split: [{ model: a, weight: 1 }]
`,
    line: 7, path: 'routes[0].weights', message: 'unknown key; allowed keys here: name, path, user_id, salt, hash, missing_user_id, allow_override, split',
  },
  {
    name: 'split entry',
    yaml: `${MODELS}routes:
  - name: r
    path: /p
    split:
      - { model: a, weight: 1, share: 2 }
`,
    line: 8, path: 'routes[0].split[0].share', message: 'unknown key; allowed keys here: model, weight',
  },
  {
    name: 'model name that needs quoting in the path',
    yaml: `models:
  "churn.v1": { url: "http://127.0.0.1:9001", colour: red }
routes:
  - { name: r, path: /p, split: [{ model: churn.v1, weight: 1 }] }
`,
    line: 2, path: 'models["churn.v1"].colour', message: 'allowed keys here: url, timeout_ms, connections',
  },
]

const MISSING_KEYS: ErrorCase[] = [
  { name: 'models', yaml: ROUTE, line: undefined, path: 'models', message: 'is required' },
  { name: 'routes', yaml: MODELS, line: undefined, path: 'routes', message: 'is required' },
  {
    name: 'model url',
    yaml: `models:
  a: { url: "http://127.0.0.1:9001" }
  b: { timeout_ms: 5 }
${ROUTE}`,
    line: 3, path: 'models.b.url', message: 'is required',
  },
  { name: 'route name', yaml: `${MODELS}routes:\n  - path: /p\n    split: [{ model: a, weight: 1 }]\n`, line: 5, path: 'routes[0].name', message: 'is required' },
  { name: 'route path', yaml: `${MODELS}routes:\n  - name: r\n    split: [{ model: a, weight: 1 }]\n`, line: 5, path: 'routes[0].path', message: 'is required' },
  { name: 'route split', yaml: `${MODELS}routes:\n  - name: r\n    path: /p\n`, line: 5, path: 'routes[0].split', message: 'is required' },
  { name: 'split weight', yaml: `${MODELS}routes:\n  - name: r\n    path: /p\n    split:\n      - { model: a }\n`, line: 8, path: 'routes[0].split[0].weight', message: 'is required' },
  { name: 'split model', yaml: `${MODELS}routes:\n  - name: r\n    path: /p\n    split:\n      - { weight: 1 }\n`, line: 8, path: 'routes[0].split[0].model', message: 'is required' },
]

// A route whose key on line 7 is the one under test: name on 5, path on 6, split last.
function routeWith(line7: string, split = '    split: [{ model: a, weight: 1 }]\n'): string {
  return `${MODELS}routes:\n  - name: r\n    path: /p\n${line7}\n${split}`
}

const WRONG_TYPES: ErrorCase[] = [
  { name: 'empty document', yaml: '', line: undefined, path: '', message: ['must be a mapping with keys listen, admin, limits, shutdown_timeout_ms, models, routes', 'got nothing'] },
  { name: 'document is a list', yaml: '- models\n- routes\n', line: undefined, path: '', message: ['must be a mapping with keys listen, admin, limits, shutdown_timeout_ms, models, routes', 'got a list'] },
  { name: 'models is a list', yaml: `models:\n  - a\n${ROUTE}`, line: 1, path: 'models', message: 'must be a mapping of model name to { url, timeout_ms }, got a list' },
  {
    name: 'model is a bare URL',
    yaml: `models:\n  a: { url: "http://127.0.0.1:9001" }\n  b: "http://127.0.0.1:9002"\n${ROUTE}`,
    line: 3, path: 'models.b', message: 'must be a mapping with keys url, timeout_ms, connections, mlflow, upstream_model, price, model_name, got "http://127.0.0.1:9002"',
  },
  {
    name: 'timeout_ms is a word',
    yaml: `models:\n  a: { url: "http://127.0.0.1:9001" }\n  b: { url: "http://127.0.0.1:9002", timeout_ms: soon }\n${ROUTE}`,
    line: 3, path: 'models.b.timeout_ms', message: 'must be an integer from 1 to 2147483647, got "soon"',
  },
  {
    name: 'connections is 0',
    yaml: `models:\n  a: { url: "http://127.0.0.1:9001" }\n  b:\n    url: "http://127.0.0.1:9002"\n    connections: 0\n${ROUTE}`,
    line: 5, path: 'models.b.connections', message: 'must be an integer from 1 to 65536, got 0',
  },
  { name: 'routes is a mapping', yaml: `${MODELS}routes:\n  r: { path: /p }\n`, line: 4, path: 'routes', message: 'must be a list of routes ({ name, path, split }), got a mapping' },
  { name: 'route name is a number', yaml: `${MODELS}routes:\n  - name: 5\n    path: /p\n    split: [{ model: a, weight: 1 }]\n`, line: 5, path: 'routes[0].name', message: 'must be a non-empty string, got 5' },
  { name: 'salt is a number', yaml: routeWith('    salt: 5'), line: 7, path: 'routes[0].salt', message: 'must be a non-empty string, got 5' },
  { name: 'allow_override is "yes"', yaml: routeWith('    allow_override: yes'), line: 7, path: 'routes[0].allow_override', message: 'must be true or false, got "yes"' },
  { name: 'split is a mapping', yaml: routeWith('    split: { model: a, weight: 1 }', ''), line: 7, path: 'routes[0].split', message: 'must be a list of { model, weight } entries, got a mapping' },
  { name: 'split is empty', yaml: routeWith('    split: []', ''), line: 7, path: 'routes[0].split', message: 'must list at least one { model, weight }' },
  { name: 'routes is empty', yaml: `${MODELS}routes: []\n`, line: 4, path: 'routes', message: 'must define at least one route' },
  {
    name: 'weight is a word (the issue\'s example)',
    yaml: routeWith('    split:', '      - { model: a, weight: 90 }\n      - { model: b, weight: ten }\n'),
    line: 9, path: 'routes[0].split[1].weight', message: 'must be a number >= 0, got "ten"',
  },
  { name: 'weight is negative', yaml: routeWith('    split:', '      - { model: a, weight: -1 }\n'), line: 8, path: 'routes[0].split[0].weight', message: 'must be a number >= 0, got -1' },
  { name: 'hash is unknown', yaml: routeWith('    hash: md5'), line: 7, path: 'routes[0].hash', message: 'must be one of rendezvous, nginx, got "md5"' },
  { name: 'max_body_bytes is 0', yaml: `${MODELS}${ROUTE}limits:\n  max_body_bytes: 0\n`, line: 7, path: 'limits.max_body_bytes', message: 'must be an integer >= 1, got 0' },
  { name: 'shutdown_timeout_ms is negative', yaml: `${MODELS}${ROUTE}shutdown_timeout_ms: -1\n`, line: 6, path: 'shutdown_timeout_ms', message: 'must be an integer from 0 to 2147483647, got -1' },
  { name: 'shutdown_timeout_ms is fractional', yaml: `${MODELS}${ROUTE}shutdown_timeout_ms: 1.5\n`, line: 6, path: 'shutdown_timeout_ms', message: 'must be an integer from 0 to 2147483647, got 1.5' },
]

const REFERENCES: ErrorCase[] = [
  {
    name: 'all weights zero',
    yaml: routeWith('    split:', '      - { model: a, weight: 0 }\n      - { model: b, weight: 0 }\n'),
    line: 7, path: 'routes[0].split', message: 'all weights are 0: at least one model needs a positive weight',
  },
  {
    name: 'split names an undefined model',
    yaml: routeWith('    split:', '      - { model: a, weight: 1 }\n      - { model: c, weight: 1 }\n'),
    line: 9, path: 'routes[0].split[1].model', message: 'model "c" is not defined under models; defined: a, b',
  },
  {
    name: 'same model twice in a split',
    yaml: routeWith('    split:', '      - { model: a, weight: 1 }\n      - { model: a, weight: 2 }\n'),
    line: 9, path: 'routes[0].split[1].model', message: 'model "a" appears twice in this split (also at [0]): give it one entry with the summed weight',
  },
  {
    name: 'shadow names an undefined model',
    yaml: routeWith('    shadow:\n      - { model: c }'),
    line: 8, path: 'routes[0].shadow[0].model', message: 'model "c" is not defined under models; defined: a, b',
  },
  { name: 'same model shadowed twice', yaml: routeWith('    shadow: [{ model: b }, { model: b }]'), line: 7, path: 'routes[0].shadow[1].model', message: 'model "b" is shadowed twice on this route (also at [0])' },
  { name: 'shadow percent over 100', yaml: routeWith('    shadow: [{ model: b, percent: 150 }]'), line: 7, path: 'routes[0].shadow[0].percent', message: 'must be a number from 0 to 100, got 150' },
  { name: 'shadow with an unknown key', yaml: routeWith('    shadow:\n      - model: b\n        weight: 1'), line: 9, path: 'routes[0].shadow[0].weight', message: 'unknown key; allowed keys here: model, percent, max_in_flight' },
  { name: 'shadow is a mapping', yaml: routeWith('    shadow: { model: b }'), line: 7, path: 'routes[0].shadow', message: 'must be a list of { model, percent, max_in_flight } entries, got a mapping' },
  { name: 'missing_user_id names an undefined model', yaml: routeWith('    missing_user_id: c'), line: 7, path: 'routes[0].missing_user_id', message: 'must be random, reject or a defined model name; "c" is not defined under models' },
  {
    name: 'duplicate route names',
    yaml: `${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
  - { name: r, path: /q, split: [{ model: a, weight: 1 }] }
`,
    line: 6, path: 'routes[1].name', message: 'duplicate route name "r" (also routes[0].name): names label metrics and records, so each must be unique',
  },
  {
    name: 'identical paths',
    yaml: `${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
  - { name: s, path: /p, split: [{ model: a, weight: 1 }] }
`,
    line: 6, path: 'routes[1].path', message: '"/p" overlaps routes[0].path "/p"',
  },
  {
    name: 'identical paths after the trailing slash is dropped',
    yaml: `${MODELS}routes:
  - { name: r, path: /p/, split: [{ model: a, weight: 1 }] }
  - { name: s, path: /p, split: [{ model: a, weight: 1 }] }
`,
    line: 6, path: 'routes[1].path', message: '"/p" overlaps routes[0].path "/p"',
  },
  {
    name: 'one path a prefix of another',
    yaml: `${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
  - name: s
    path: /p/v2
    split: [{ model: b, weight: 1 }]
`,
    line: 7, path: 'routes[1].path', message: '"/p/v2" overlaps routes[0].path "/p": a request must match exactly one route, so use paths where neither is a prefix of the other',
  },
  {
    name: 'the root path overlaps every other',
    yaml: `${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
  - { name: s, path: /, split: [{ model: a, weight: 1 }] }
`,
    line: 6, path: 'routes[1].path', message: '"/" overlaps routes[0].path "/p"',
  },
]

// Model b on line 3 carries the URL under test; the route only uses a, so b's problem is the only one.
function modelUrl(url: string): string {
  return `models:\n  a: { url: "http://127.0.0.1:9001" }\n  b: { url: ${url} }\n${ROUTE}`
}

const URLS_AND_PORTS: ErrorCase[] = [
  { name: 'url without a scheme', yaml: modelUrl('"127.0.0.1:9002"'), line: 3, path: 'models.b.url', message: 'must be an absolute http:// or https:// URL such as "http://127.0.0.1:9001", got "127.0.0.1:9002"' },
  { name: 'url with a host for a scheme', yaml: modelUrl('"localhost:9002"'), line: 3, path: 'models.b.url', message: 'must use http:// or https://, got "localhost:"' },
  { name: 'ftp url', yaml: modelUrl('"ftp://127.0.0.1/"'), line: 3, path: 'models.b.url', message: 'must use http:// or https://, got "ftp:"' },
  { name: 'url with a query', yaml: modelUrl('"http://127.0.0.1:9002/v1?x=1"'), line: 3, path: 'models.b.url', message: 'must not carry a query or fragment' },
  { name: 'url with a fragment', yaml: modelUrl('"http://127.0.0.1:9002/#top"'), line: 3, path: 'models.b.url', message: 'must not carry a query or fragment' },
  { name: 'url with port 0', yaml: modelUrl('"http://127.0.0.1:0"'), line: 3, path: 'models.b.url', message: 'port must be from 1 to 65535, got 0' },
  { name: 'url with port 99999', yaml: modelUrl('"http://127.0.0.1:99999"'), line: 3, path: 'models.b.url', message: 'must be an absolute http:// or https:// URL' },
  { name: 'url is a number', yaml: modelUrl('9002'), line: 3, path: 'models.b.url', message: 'must be a non-empty string, got 9002' },
  { name: 'listen port too large', yaml: `${MODELS}${ROUTE}listen: { port: 70000 }\n`, line: 6, path: 'listen.port', message: 'must be an integer from 0 to 65535, got 70000' },
  { name: 'admin port negative', yaml: `${MODELS}${ROUTE}admin:\n  host: 127.0.0.1\n  port: -1\n`, line: 8, path: 'admin.port', message: 'must be an integer from 0 to 65535, got -1' },
  { name: 'admin port is a word', yaml: `${MODELS}${ROUTE}admin: { port: http }\n`, line: 6, path: 'admin.port', message: 'must be an integer from 0 to 65535, got "http"' },
  { name: 'listen port fractional', yaml: `${MODELS}${ROUTE}listen: { port: 80.5 }\n`, line: 6, path: 'listen.port', message: 'must be an integer from 0 to 65535, got 80.5' },
  { name: 'listen host a number', yaml: `${MODELS}${ROUTE}listen: { host: 5 }\n`, line: 6, path: 'listen.host', message: 'must be a non-empty string, got 5' },
  {
    name: 'admin port equals listen port',
    yaml: `${MODELS}${ROUTE}listen: { host: 127.0.0.1, port: 8081 }\nadmin: { host: 127.0.0.1, port: 8081 }\n`,
    line: 7, path: 'admin.port', message: 'must differ from listen.port (8081): prediction and admin traffic need separate ports',
  },
]

const PATH_HINT = 'must be a URL path prefix such as "/models/churn" (starts with /, no query, no . or .. segments)'
const ROUTE_PATHS: ErrorCase[] = [
  ...['models/churn', '/p?x=1', '/p#frag', '/a/../b', '/a/./b', '/a//b', '/..'].map((p): ErrorCase => ({
    name: `path ${p}`,
    yaml: `${MODELS}routes:\n  - name: r\n    path: "${p}"\n    split: [{ model: a, weight: 1 }]\n`,
    line: 6, path: 'routes[0].path', message: `${PATH_HINT}, got ${JSON.stringify(p)}`,
  })),
  { name: 'path is a number', yaml: `${MODELS}routes:\n  - name: r\n    path: 5\n    split: [{ model: a, weight: 1 }]\n`, line: 6, path: 'routes[0].path', message: 'must be a non-empty string, got 5' },
]

const SOURCE_HINT = 'must be header:NAME, query:NAME, cookie:NAME or body:/json/pointer'
const USER_ID: ErrorCase[] = [
  { name: 'unknown source kind', yaml: routeWith('    user_id: ip:addr'), line: 7, path: 'routes[0].user_id', message: `${SOURCE_HINT}, got "ip:addr"` },
  { name: 'no kind', yaml: routeWith('    user_id: x-user-id'), line: 7, path: 'routes[0].user_id', message: `${SOURCE_HINT}, got "x-user-id"` },
  { name: 'empty name', yaml: routeWith('    user_id: "cookie:"'), line: 7, path: 'routes[0].user_id', message: `${SOURCE_HINT}, got "cookie:"` },
  { name: 'empty kind', yaml: routeWith('    user_id: ":uid"'), line: 7, path: 'routes[0].user_id', message: `${SOURCE_HINT}, got ":uid"` },
  {
    name: 'second list item is a number',
    yaml: routeWith('    user_id:\n      - header:x-user-id\n      - 7'),
    line: 9, path: 'routes[0].user_id[1]', message: `${SOURCE_HINT}, got 7`,
  },
  {
    name: 'body pointer without a leading slash',
    yaml: routeWith('    user_id: [header:x-user-id, body:user_id]'),
    line: 7, path: 'routes[0].user_id[1]', message: 'body source needs a JSON Pointer such as body:/user_id: invalid JSON Pointer "user_id": it must start with "/"',
  },
  { name: 'body pointer with a bad escape', yaml: routeWith('    user_id: body:/a~2b'), line: 7, path: 'routes[0].user_id', message: 'body source needs a JSON Pointer such as body:/user_id' },
  { name: 'empty list', yaml: routeWith('    user_id: []'), line: 7, path: 'routes[0].user_id', message: 'must list at least one source, e.g. [header:x-user-id]' },
  { name: 'a number', yaml: routeWith('    user_id: 7'), line: 7, path: 'routes[0].user_id', message: 'must be a list of sources such as header:x-user-id, got 7' },
]

describe('parseConfig reports one located problem per mistake', () => {
  const groups: [string, ErrorCase[]][] = [
    ['YAML syntax errors', SYNTAX],
    ['unknown keys', UNKNOWN_KEYS],
    ['missing keys', MISSING_KEYS],
    ['wrong types and ranges', WRONG_TYPES],
    ['weights, model references and route uniqueness', REFERENCES],
    ['URLs and ports', URLS_AND_PORTS],
    ['route path syntax', ROUTE_PATHS],
    ['user_id sources', USER_ID],
  ]
  describe.each(groups)('%s', (_group, cases) => {
    it.each(cases)('$name', ({ yaml, line, path, message }) => {
      const err = configError(yaml, 'config/router.yaml')
      expect(err.code).toBe('MS_CONFIG_INVALID')
      expect(err.problems).toHaveLength(1)
      const [p] = err.problems
      expect(p).toMatchObject({ file: 'config/router.yaml', line, path })
      for (const fragment of [message].flat()) expect(p?.message).toContain(fragment)
      expect(err.message).toContain(`invalid config (1 problem):\n  ${located({ file: 'config/router.yaml', line, path })}${p?.message ?? ''}`)
    })
  })

  it('prints the issue\'s example exactly', () => {
    const err = configError(routeWith('    split:', '      - { model: a, weight: 90 }\n      - { model: b, weight: ten }\n'), 'config/router.yaml')
    expect(err.message.split('\n')).toContain('  config/router.yaml:9: routes[0].split[1].weight: must be a number >= 0, got "ten"')
  })

  it('keeps the YAML parser\'s error as the cause of a syntax error', () => {
    const err = configError('models: [\n')
    expect(err.cause).toBeInstanceOf(Error)
    expect(err.problems[0]?.line).toBeTypeOf('number')
  })

})

describe('every problem in a file is reported at once', () => {
  const expected = [
    '3: admin.port',
    '5: limits.max_body_bytes',
    '6: limits.colour',
    '7: shutdown_timeout_ms',
    '11: models.c.url',
    '12: models.d.timeout',
    '16: routes[0].user_id[1]',
    '17: routes[0].hash',
    '18: routes[0].missing_user_id',
    '21: routes[0].split[1].weight',
    '25: routes[2].name',
    '26: routes[2].path',
    '29: routes[3].path',
    '32: routes[3].split[1].model',
    '33: routes[4].path',
    '34: routes[4].split',
  ]

  it('lists all 16 problems of the fixture with line and path', async () => {
    const text = await readFile(MANY_PROBLEMS, 'utf8')
    const err = configError(text, 'many-problems.yaml')
    expect(err.code).toBe('MS_CONFIG_INVALID')
    const got = err.problems.map((p) => `${p.line ?? '?'}: ${p.path}`)
    expect([...got].sort()).toEqual([...expected].sort())
    expect(err.message.split('\n')[0]).toBe('invalid config (16 problems):')
    for (const p of err.problems) {
      expect(p.file).toBe('many-problems.yaml')
      expect(err.message).toContain(`  ${located(p)}${p.message}\n`.trimEnd())
    }
    const byPath = new Map(err.problems.map((p) => [p.path, p.message]))
    expect(byPath.get('routes[0].split[1].weight')).toBe('must be a number >= 0, got "ten"')
    expect(byPath.get('routes[2].name')).toContain('duplicate route name "fraud"')
    expect(byPath.get('routes[2].path')).toContain('overlaps routes[1].path "/models/fraud"')
    expect(byPath.get('routes[3].split[1].model')).toContain('model "ghost" is not defined under models; defined: a, b, c, d')
    expect(byPath.get('routes[4].split')).toContain('all weights are 0')
    expect(byPath.get('models.d.timeout')).toContain('allowed keys here: url, timeout_ms, connections')
  })

  it('loadConfig reports the same problems under the path it was given', async () => {
    const err = await loadConfig(MANY_PROBLEMS).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    const problems = (err as ConfigError).problems
    expect(problems).toHaveLength(expected.length)
    expect(new Set(problems.map((p) => p.file))).toEqual(new Set([MANY_PROBLEMS]))
  })
})

describe('a valid config gets its defaults and normalised values', () => {
  it('fills every default', () => {
    const loaded = parseConfig(`models:
  a: { url: "http://127.0.0.1:9001/" }
  b: { url: "HTTP://Models.Example:80/v1/predict/" }
routes:
  - name: churn
    path: /models/churn/
    split:
      - { model: a, weight: 1 }
      - { model: b, weight: 0 }
`, 'min.yaml')
    expect(loaded.file).toBe('min.yaml')
    // toMatchObject: other features add their own defaulted keys; these are the ones this suite owns.
    expect(loaded.config).toMatchObject({
      listen: { host: '0.0.0.0', port: 8080 },
      admin: { host: '127.0.0.1', port: 9464 },
      limits: { max_body_bytes: 1_048_576 },
      shutdown_timeout_ms: 10_000,
      models: {
        a: { url: 'http://127.0.0.1:9001', timeout_ms: 10_000, connections: 128 },
        b: { url: 'http://models.example/v1/predict', timeout_ms: 10_000, connections: 128 },
      },
      routes: [{
        name: 'churn',
        path: '/models/churn',
        user_id: [{ kind: 'header', name: 'x-user-id', spec: 'header:x-user-id' }],
        salt: 'churn',
        hash: 'rendezvous',
        missing_user_id: 'random',
        allow_override: false,
        split: [{ model: 'a', weight: 1 }, { model: 'b', weight: 0 }],
        shadow: [],
      }],
    })
    expect(Object.keys(loaded.config.models.a ?? {}).sort()).toEqual(['connections', 'mlflow', 'price', 'timeout_ms', 'upstream_model', 'url'])
  })

  it.each([
    ['rendezvous, no salt: the route name', '    hash: rendezvous', 'r'],
    ['nginx, no salt: empty, as split_clients', '    hash: nginx', ''],
    ['nginx with a salt', '    hash: nginx\n    salt: exp-7', 'exp-7'],
    ['rendezvous with an empty salt', '    salt: ""', ''],
  ])('salt for %s', (_name, lines, salt) => {
    expect(parseConfig(routeWith(lines), 'f.yaml').config.routes[0]?.salt).toBe(salt)
  })

  it('parses user_id sources, lowercasing header names only', () => {
    const loaded = parseConfig(routeWith('    user_id: [header:X-User-ID, query:UserId, cookie:UID, body:/user/id, "body:/a~1b"]'), 'f.yaml')
    expect(loaded.config.routes[0]?.user_id).toEqual([
      { kind: 'header', name: 'x-user-id', spec: 'header:X-User-ID' },
      { kind: 'query', name: 'UserId', spec: 'query:UserId' },
      { kind: 'cookie', name: 'UID', spec: 'cookie:UID' },
      { kind: 'body', pointer: '/user/id', tokens: ['user', 'id'], spec: 'body:/user/id' },
      { kind: 'body', pointer: '/a~1b', tokens: ['a/b'], spec: 'body:/a~1b' },
    ])
  })

  it('accepts one user_id source written as a string', () => {
    const loaded = parseConfig(routeWith('    user_id: query:uid'), 'f.yaml')
    expect(loaded.config.routes[0]?.user_id).toEqual([{ kind: 'query', name: 'uid', spec: 'query:uid' }])
  })

  it.each(['random', 'reject', 'b'])('accepts missing_user_id: %s', (value) => {
    expect(parseConfig(routeWith(`    missing_user_id: ${value}`), 'f.yaml').config.routes[0]?.missing_user_id).toBe(value)
  })

  it('accepts paths that share a prefix but not a segment, the root alone, and port 0 for both listeners', () => {
    const loaded = parseConfig(`${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
  - { name: s, path: /pq, split: [{ model: b, weight: 1 }] }
listen: { port: 0 }
admin: { port: 0 }
`, 'f.yaml')
    expect(loaded.config.routes.map((r) => r.path)).toEqual(['/p', '/pq'])
    expect(loaded.config.listen.port).toBe(0)
    expect(parseConfig(`${MODELS}routes:\n  - { name: r, path: /, split: [{ model: a, weight: 1 }] }\n`, 'f.yaml').config.routes[0]?.path).toBe('/')
  })

  it('returns a deep-frozen result', () => {
    const loaded = parseConfig(routeWith('    user_id: [header:x-user-id, body:/u]'), 'f.yaml')
    const route = loaded.config.routes[0]
    expect(Object.isFrozen(loaded)).toBe(true)
    expect(Object.isFrozen(loaded.config)).toBe(true)
    expect(Object.isFrozen(loaded.config.listen)).toBe(true)
    expect(Object.isFrozen(loaded.config.models)).toBe(true)
    expect(Object.isFrozen(loaded.config.models.a)).toBe(true)
    expect(Object.isFrozen(loaded.config.routes)).toBe(true)
    expect(Object.isFrozen(route?.split[0])).toBe(true)
    const body = route?.user_id[1]
    expect(body?.kind === 'body' && Object.isFrozen(body.tokens)).toBe(true)
    expect(() => { (route as unknown as { name: string }).name = 'x' }).toThrow(TypeError)
    expect(() => { (loaded.config.models as Record<string, unknown>).c = {} }).toThrow(TypeError)
  })

  it('hashes the exact text: stable for the same bytes, different after any edit', () => {
    const text = `${MODELS}${ROUTE}`
    const first = parseConfig(text, 'f.yaml')
    expect(first.sha256).toBe(createHash('sha256').update(text).digest('hex'))
    expect(parseConfig(text, 'other.yaml').sha256).toBe(first.sha256)
    expect(parseConfig(`# a comment\n${text}`, 'f.yaml').sha256).not.toBe(first.sha256)
  })

  it('validates the example config/router.yaml', async () => {
    const loaded = await loadConfig(EXAMPLE)
    expect(loaded.sha256).toBe(createHash('sha256').update(await readFile(EXAMPLE)).digest('hex'))
    expect(loaded.config.listen).toEqual({ host: '127.0.0.1', port: 8080 })
    expect(Object.keys(loaded.config.models)).toEqual(['churn-v1', 'churn-v2', 'churn-v3'])
    expect(loaded.config.routes[0]).toMatchObject({ record: true, shadow: [{ model: 'churn-v3', percent: 100, max_in_flight: 256 }], compare: { prediction: 'auto', tolerance: 0.05, mode: 'exact' } })
    expect(loaded.config.routes).toHaveLength(1)
    expect(loaded.config.routes[0]).toMatchObject({
      name: 'churn', path: '/models/churn', salt: 'churn-2026-11', hash: 'rendezvous', missing_user_id: 'random', allow_override: true,
      split: [{ model: 'churn-v1', weight: 90 }, { model: 'churn-v2', weight: 10 }],
    })
    expect(loaded.config.routes[0]?.user_id.map((s) => s.spec)).toEqual(['header:x-user-id', 'query:user_id', 'cookie:uid', 'body:/user_id'])
  })
})

describe('cross-field checks that see past other mistakes', () => {
  it('does not call a model "not defined" when it is defined but has another mistake', () => {
    const err = configError(`models:
  a: { url: "http://127.0.0.1:9001", timeout_ms: soon }
routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }] }
`)
    expect(err.problems.map((p) => p.path)).toEqual(['models.a.timeout_ms'])
  })

  it('does not call a shadow model "not defined" when it is defined but has another mistake', () => {
    const err = configError(`models:
  a: { url: "http://127.0.0.1:9001" }
  b: { url: "http://127.0.0.1:9002", connections: 0 }
routes:
  - { name: r, path: /p, split: [{ model: a, weight: 1 }], shadow: [{ model: b }] }
`)
    expect(err.problems.map((p) => p.path)).toEqual(['models.b.connections'])
  })

  it('rejects admin.port equal to listen.port when listen binds every address', () => {
    const err = configError(`${MODELS}${ROUTE}admin: { port: 8080 }\n`)
    expect(err.problems).toMatchObject([{ line: 6, path: 'admin.port' }])
  })

  it('reports a duplicate route name even when the first route has an unrelated mistake', () => {
    const err = configError(`${MODELS}routes:
  - { name: r, path: /p, split: [{ model: a, weight: ten }] }
  - { name: r, path: /q, split: [{ model: a, weight: 1 }] }
`)
    expect(err.problems.map((p) => `${p.line ?? '?'}: ${p.path}`).sort()).toEqual(['5: routes[0].split[0].weight', '6: routes[1].name'])
  })
})

describe('loadConfig', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'modelsplit-config-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('reads and validates a file, recording its path', async () => {
    const file = join(dir, 'router.yaml')
    await writeFile(file, `${MODELS}${ROUTE}`)
    const loaded = await loadConfig(file)
    expect(loaded.file).toBe(file)
    expect(loaded.config.routes[0]?.name).toBe('r')
  })

  it.each([
    ['a missing file', 'nope.yaml', 'cannot read the file (ENOENT)'],
    ['a directory', '.', 'cannot read the file (EISDIR)'],
  ])('names %s without a line or path', async (_what, name, message) => {
    const file = join(dir, name)
    const err = await loadConfig(file).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).code).toBe('MS_CONFIG_INVALID')
    expect((err as ConfigError).problems).toEqual([{ file, path: '', message }])
    expect((err as ConfigError).message).toContain(`${file}: ${message}`)
  })
})

interface CliRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs the built CLI to completion; a command that never exits is killed and shows up as `signal`. */
function cli(args: readonly string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** Lines of the `file:line: path: message` form. */
function locatedLines(stderr: string): string[] {
  return stderr.split('\n').map((l) => l.trim()).filter((l) => /^\S+:\d+: /.test(l))
}

describe('modelsplit CLI', () => {
  let dir: string
  let good: string
  let bad: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelsplit-cli-'))
    good = join(dir, 'good.yaml')
    bad = join(dir, 'bad.yaml')
    await writeFile(good, `${MODELS}${ROUTE}`)
    await writeFile(bad, routeWith('    hash: md5', '    split:\n      - { model: a, weight: 90 }\n      - { model: b, weight: ten }\n'))
  })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('validate: a good file exits 0 and prints ok', async () => {
    const run = await cli(['validate', good])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`^${escape(good)}: ok \\(1 route\\(s\\), 2 model\\(s\\), sha256 [0-9a-f]{64}\\)\n$`))
  })

  it('validate: the example config/router.yaml is ok', async () => {
    const run = await cli(['validate', 'config/router.yaml'])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('config/router.yaml: ok (1 route(s), 3 model(s)')
  })

  it('validate: a bad file exits 1 listing every problem as file:line: path: message', async () => {
    const run = await cli(['validate', bad])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toContain('invalid config (2 problems):')
    expect(locatedLines(run.stderr).sort()).toEqual([
      `${bad}:7: routes[0].hash: must be one of rendezvous, nginx, got "md5"`,
      `${bad}:10: routes[0].split[1].weight: must be a number >= 0, got "ten"`,
    ].sort())
  })

  it('validate: the many-problems fixture lists all 16 on stderr', async () => {
    const run = await cli(['validate', MANY_PROBLEMS])
    expect(run.code).toBe(1)
    expect(locatedLines(run.stderr)).toHaveLength(16)
    expect(run.stderr).toContain(`${MANY_PROBLEMS}:21: routes[0].split[1].weight: must be a number >= 0, got "ten"`)
  })

  it('validate: one bad file among two exits 1 and still checks the other', async () => {
    const run = await cli(['validate', bad, good])
    expect(run.code).toBe(1)
    expect(run.stdout).toContain(`${good}: ok (`)
    expect(run.stdout).not.toContain(`${bad}: ok`)
    expect(run.stderr).toContain(`${bad}:10: routes[0].split[1].weight:`)
  })

  it('validate: a missing file exits 1 and says it cannot be read', async () => {
    const missing = join(dir, 'missing.yaml')
    const run = await cli(['validate', missing])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`${missing}: cannot read the file (ENOENT)`)
  })

  it('validate: a YAML syntax error names the line', async () => {
    await writeFile(bad, 'models:\n  a: { url: "http://127.0.0.1:9001"\nroutes: []\n')
    const run = await cli(['validate', bad])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`${bad}:3: YAML syntax error:`)
  })

  it('validate: no file is a usage error', async () => {
    const run = await cli(['validate'])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('validate needs a FILE')
  })

  it('serve: a bad config exits 1 by itself, names the problem and never listens', async () => {
    const run = await cli(['serve', '--config', bad])
    expect(run.signal).toBeNull()
    expect(run.code).toBe(1)
    expect(run.stdout).not.toContain('predictions on')
    expect(run.stderr).toContain(`${bad}:10: routes[0].split[1].weight: must be a number >= 0, got "ten"`)
    expect(run.stderr).toContain(`${bad}:7: routes[0].hash:`)
  })

  it('serve: a missing config exits 1 with a clear message', async () => {
    const missing = join(dir, 'missing.yaml')
    const run = await cli(['serve', '--config', missing])
    expect(run.signal).toBeNull()
    expect(run.code).toBe(1)
    expect(run.stdout).not.toContain('predictions on')
    expect(run.stderr).toContain(`${missing}: cannot read the file (ENOENT)`)
  })
})

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
