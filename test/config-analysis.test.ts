// The analysis keys (routes[].analysis, metrics' ratio/covariate/cuped/guardrail): defaults, and
// every mistake as a located problem (file:line, key path, what to write instead).
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/index.js'
import { ConfigError } from '../src/errors.js'

const route = (lines: string): string => `models:
  a: { url: "http://127.0.0.1:9001" }
  b: { url: "http://127.0.0.1:9002" }
routes:
  - name: r
    path: /p
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
${lines}`

function problems(text: string): string[] {
  try {
    parseConfig(text, 'f.yaml')
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as ConfigError).problems.map((p) => `${p.file}:${p.line}: ${p.path}: ${p.message}`)
  }
  throw new Error('parseConfig accepted a config that should be invalid')
}

describe('routes[].analysis', () => {
  it('defaults to the user as the unit where the route reads a user id, 64 buckets, Holm, alpha 0.05', () => {
    const r = parseConfig(route('    metrics: [{ name: clicked, type: binary }]\n'), 'f.yaml').config.routes[0]
    expect(r?.analysis).toEqual({ unit: 'user', buckets: 64, correction: 'holm', alpha: 0.05 })
    expect(r?.metrics[0]).toEqual({ name: 'clicked', type: 'binary', mde: null, higher_is_better: true, role: 'outcome', numerator: null, denominator: null, cuped: null, guardrail: null })
  })

  it('keeps the request-level analysis one key away', () => {
    const r = parseConfig(route('    analysis: { unit: request, correction: bh, alpha: 0.01 }\n'), 'f.yaml').config.routes[0]
    expect(r?.analysis).toEqual({ unit: 'request', buckets: 64, correction: 'bh', alpha: 0.01 })
  })

  it('reads ratio metrics, covariates with CUPED and guardrails', () => {
    const r = parseConfig(route(`    metrics:
      - { name: clicked, type: binary }
      - { name: impressions, type: continuous }
      - { name: ctr, type: ratio, numerator: clicked, denominator: impressions }
      - { name: revenue, type: continuous, cuped: revenue_pre }
      - { name: revenue_pre, type: continuous, role: covariate }
      - { name: errors_seen, type: binary, higher_is_better: false, guardrail: { margin: 0.005 } }
`), 'f.yaml').config.routes[0]
    expect(r?.metrics.map((m) => [m.name, m.type, m.role, m.numerator, m.denominator, m.cuped, m.guardrail])).toEqual([
      ['clicked', 'binary', 'outcome', null, null, null, null],
      ['impressions', 'continuous', 'outcome', null, null, null, null],
      ['ctr', 'ratio', 'outcome', 'clicked', 'impressions', null, null],
      ['revenue', 'continuous', 'outcome', null, null, 'revenue_pre', null],
      ['revenue_pre', 'continuous', 'covariate', null, null, null, null],
      ['errors_seen', 'binary', 'outcome', null, null, null, { margin: 0.005 }],
    ])
  })

  it.each([
    ['a unit that does not exist', '    analysis: { unit: session }\n', 'f.yaml:8: routes[0].analysis.unit: must be one of'],
    ['too few buckets', '    analysis: { buckets: 8 }\n', 'f.yaml:8: routes[0].analysis.buckets:'],
    ['too many buckets', '    analysis: { buckets: 4096 }\n', 'f.yaml:8: routes[0].analysis.buckets:'],
    ['a fractional bucket count', '    analysis: { buckets: 63.5 }\n', 'f.yaml:8: routes[0].analysis.buckets:'],
    ['an unknown correction', '    analysis: { correction: bonferroni }\n', 'f.yaml:8: routes[0].analysis.correction: must be one of'],
    ['alpha of 1', '    analysis: { alpha: 1 }\n', 'f.yaml:8: routes[0].analysis.alpha:'],
    ['an unknown analysis key', '    analysis: { units: user }\n', 'f.yaml:8: routes[0].analysis.units:'],
    ['a ratio without its parts', '    metrics: [{ name: ctr, type: ratio }]\n', 'f.yaml:8: routes[0].metrics[0]: metric "ctr" is a ratio: give numerator and denominator'],
    ['a numerator on a binary metric', '    metrics: [{ name: c, type: binary, numerator: c }]\n', 'f.yaml:8: routes[0].metrics[0].numerator: only a metric of type: ratio'],
    ['a ratio of an undeclared metric', '    metrics: [{ name: i, type: continuous }, { name: ctr, type: ratio, numerator: clicks, denominator: i }]\n', 'f.yaml:8: routes[0].metrics[1].numerator: must name another metric declared on this route (i)'],
    ['a ratio of a ratio', '    metrics: [{ name: c, type: binary }, { name: i, type: continuous }, { name: x, type: ratio, numerator: c, denominator: i }, { name: y, type: ratio, numerator: x, denominator: i }]\n', 'routes[0].metrics[3].numerator: metric "x" is itself a ratio'],
    ['CUPED on an outcome', '    metrics: [{ name: rev, type: continuous, cuped: pre }, { name: pre, type: continuous }]\n', 'routes[0].metrics[0].cuped: metric "pre" is an outcome; a CUPED covariate is declared with role: covariate'],
    ['a covariate with a guardrail', '    metrics: [{ name: pre, type: continuous, role: covariate, guardrail: { margin: 1 } }]\n', 'routes[0].metrics[0].role: a covariate is a plain binary or continuous value fed back per user: it takes no guardrail'],
    ['a guardrail without a margin', '    metrics: [{ name: e, type: binary, guardrail: {} }]\n', 'f.yaml:8: routes[0].metrics[0].guardrail.margin: is required'],
    ['a negative margin', '    metrics: [{ name: e, type: binary, guardrail: { margin: -0.1 } }]\n', 'routes[0].metrics[0].guardrail.margin:'],
    ['a ratio analysed per request', '    analysis: { unit: request }\n    metrics: [{ name: c, type: binary }, { name: i, type: continuous }, { name: x, type: ratio, numerator: c, denominator: i }]\n', 'f.yaml:8: routes[0].analysis.unit: metric "x" is a ratio, which needs the delta method over users: use unit: user'],
    ['a bandit on a covariate', '    bandit: { metric: pre }\n    metrics: [{ name: pre, type: continuous, role: covariate }]\n', 'routes[0].bandit.metric: metric "pre" is a covariate'],
  ])('refuses %s, saying where', (_what, lines, expected) => {
    expect(problems(route(lines)).join('\n')).toContain(expected)
  })
})
