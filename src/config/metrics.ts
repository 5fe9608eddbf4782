import type { Checker, KeyPath } from './check.js'
import type { AnalysisConfig, MetricConfig } from './types.js'

// A route's metrics (what outcomes are fed back, and how each is compared) and its analysis.
const METRIC_KEYS = ['name', 'type', 'mde', 'higher_is_better', 'role', 'numerator', 'denominator', 'cuped', 'guardrail'] as const
const ANALYSIS_KEYS = ['unit', 'buckets', 'correction', 'alpha'] as const

export function readMetrics(c: Checker, value: unknown, path: KeyPath): MetricConfig[] | undefined {
  if (value === undefined || value === null) return []
  const list = c.list(value, path, '{ name, type } entries')
  if (list === undefined) return undefined
  const out: MetricConfig[] = []
  const seen = new Map<string, number>()
  let ok = true
  list.forEach((raw, i) => {
    const p = [...path, i]
    const o = c.object(raw, p, METRIC_KEYS, ['name', 'type'])
    if (o === undefined) return void (ok = false)
    const name = c.string(o.name, [...p, 'name'])
    if (name !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      c.add([...p, 'name'], `must be letters, digits and _ (a Prometheus label value users type in PromQL), got ${JSON.stringify(name)}`)
      return void (ok = false)
    }
    const type = o.type === undefined ? undefined : c.oneOf(o.type, [...p, 'type'], ['binary', 'continuous', 'ratio'] as const, 'binary')
    const mde = c.number(o.mde, [...p, 'mde'], { min: Number.MIN_VALUE })
    const higher = c.boolean(o.higher_is_better, [...p, 'higher_is_better'], true)
    const role = c.oneOf(o.role, [...p, 'role'], ['outcome', 'covariate'] as const, 'outcome')
    const ref = (key: 'numerator' | 'denominator' | 'cuped'): string | null | undefined => (o[key] === undefined || o[key] === null ? null : c.string(o[key], [...p, key]))
    const numerator = ref('numerator')
    const denominator = ref('denominator')
    const cuped = ref('cuped')
    let guardrail: MetricConfig['guardrail'] | undefined = null
    if (o.guardrail !== undefined && o.guardrail !== null) {
      const g = c.object(o.guardrail, [...p, 'guardrail'], ['margin'], ['margin'])
      const margin = g === undefined ? undefined : c.number(g.margin, [...p, 'guardrail', 'margin'], { min: 0 })
      guardrail = margin === undefined ? undefined : { margin }
    }
    if (name === undefined || type === undefined || (o.mde !== undefined && o.mde !== null && mde === undefined) || numerator === undefined || denominator === undefined || cuped === undefined || guardrail === undefined) return void (ok = false)
    if (type === 'ratio' && (numerator === null || denominator === null)) {
      c.add(p, `metric "${name}" is a ratio: give numerator and denominator, two other metrics of this route (e.g. { name: ctr, type: ratio, numerator: clicked, denominator: impressions })`)
      return void (ok = false)
    }
    if (type !== 'ratio' && (numerator !== null || denominator !== null)) {
      c.add([...p, numerator !== null ? 'numerator' : 'denominator'], `only a metric of type: ratio has a numerator and denominator; metric "${name}" is ${type}`)
      return void (ok = false)
    }
    if (role === 'covariate' && (guardrail !== null || cuped !== null || type === 'ratio')) {
      c.add([...p, 'role'], `a covariate is a plain binary or continuous value fed back per user: it takes no ${type === 'ratio' ? 'type: ratio' : guardrail !== null ? 'guardrail' : 'cuped'}`)
      return void (ok = false)
    }
    const dup = seen.get(name)
    if (dup !== undefined) {
      c.add([...p, 'name'], `metric "${name}" is declared twice on this route (also at [${dup}])`)
      return void (ok = false)
    }
    seen.set(name, i)
    out.push({ name, type, mde: mde ?? null, higher_is_better: higher, role, numerator, denominator, cuped, guardrail })
  })
  // References between metrics: each names another declared, plain (not ratio) metric.
  out.forEach((m, i) => {
    const check = (key: 'numerator' | 'denominator' | 'cuped', target: string | null): void => {
      if (target === null) return
      const t = out.find((x) => x.name === target)
      const declared = out.filter((x) => x.type !== 'ratio' && x.name !== m.name).map((x) => x.name).join(', ') || 'none'
      if (t === undefined || t === m) c.add([...path, i, key], `must name another metric declared on this route (${declared}), got ${JSON.stringify(target)}`)
      else if (t.type === 'ratio') c.add([...path, i, key], `metric "${target}" is itself a ratio; name a binary or continuous metric (${declared})`)
      else if (key === 'cuped' && t.role !== 'covariate') c.add([...path, i, key], `metric "${target}" is an outcome; a CUPED covariate is declared with role: covariate (its pre-period value, fed back per user)`)
      else return
      ok = false
    }
    check('numerator', m.numerator)
    check('denominator', m.denominator)
    check('cuped', m.cuped)
  })
  return ok ? out : undefined
}

const ANALYSIS_FALLBACK = { buckets: 64, correction: 'holm', alpha: 0.05 } as const

/**
 * The route's `analysis`: the unit defaults to user where the route reads a user id (outcomes of
 * one user are correlated, so the user is what was randomised and what is analysed), else request.
 */
export function readAnalysis(c: Checker, value: unknown, path: KeyPath, hasUserId: boolean, metrics: readonly MetricConfig[] | undefined): AnalysisConfig | undefined {
  const o = value === undefined || value === null ? {} : c.object(value, path, ANALYSIS_KEYS)
  if (o === undefined) return undefined
  const unit = c.oneOf(o.unit, [...path, 'unit'], ['user', 'request'] as const, hasUserId ? 'user' : 'request')
  const buckets = c.number(o.buckets, [...path, 'buckets'], { min: 16, max: 1024, integer: true, fallback: ANALYSIS_FALLBACK.buckets })
  const correction = c.oneOf(o.correction, [...path, 'correction'], ['holm', 'bh', 'none'] as const, ANALYSIS_FALLBACK.correction)
  const alpha = c.number(o.alpha, [...path, 'alpha'], { min: Number.MIN_VALUE, max: 0.5, fallback: ANALYSIS_FALLBACK.alpha })
  if (buckets === undefined || alpha === undefined) return undefined
  if (unit === 'request' && metrics !== undefined) {
    const needs = metrics.findIndex((m) => m.type === 'ratio' || m.cuped !== null)
    if (needs >= 0) {
      const m = metrics[needs] as MetricConfig
      c.add([...path, 'unit'], `metric "${m.name}" ${m.type === 'ratio' ? 'is a ratio' : 'uses cuped'}, which needs the delta method over users: use unit: user${hasUserId ? '' : ' (and give the route a user_id source)'}`)
      return undefined
    }
  }
  return { unit, buckets, correction, alpha }
}
