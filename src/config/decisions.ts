// Config for automated decisions: the evaluation cadence and Prometheus, and per route a
// progressive rollout, a bandit, and shadow promotion. Read with the same Checker as the rest of
// the schema, so every mistake is reported with its key path (and line).
import { describe, type Checker, type KeyPath } from './check.js'

export interface PrometheusSource {
  readonly url: string
  /** Longest window queried, ms. */
  readonly lookback_ms: number
  /** How often Prometheus scrapes the router, ms: decisions wait this long after a boundary. */
  readonly scrape_interval_ms: number
}

export interface EvaluationConfig {
  /** Decisions are taken at multiples of this since the Unix epoch, ms. */
  readonly interval_ms: number
  readonly prometheus: PrometheusSource | null
}

export interface RolloutGates {
  /** Candidate's 5xx rate minus the control's, on the step; null: not judged. */
  readonly max_error_rate_increase: number | null
  /** Candidate's p99 over the control's; null: not judged. */
  readonly max_p99_latency_ratio: number | null
  /** Metrics that must not turn out significantly worse (sequential test, alpha 0.05). */
  readonly guardrails: readonly string[]
  /**
   * api: openai routes with a judge: the 95 % Wilson lower bound of the candidate's judged win
   * share must reach this before a step advances; null: not judged.
   */
  readonly min_win_rate: number | null
  /** Decided (non-tie) judged pairs before min_win_rate is read. */
  readonly min_judged: number
  /** The judge's always-valid sequential p shows the candidate losing (p < 0.05): the gate fails. */
  readonly judge_guardrail: boolean
}

export interface RolloutConfig {
  readonly candidate: string
  /** The candidate's percent at each step, strictly increasing, each in (0, 100]. */
  readonly steps: readonly number[]
  readonly step_interval_ms: number
  /** Requests per arm on a step before its gates are judged. */
  readonly min_requests: number
  readonly gates: RolloutGates
  readonly on_failure: 'rollback' | 'pause'
  /** At 100 %: the candidate becomes the control. */
  readonly promote: boolean
}

export interface BanditConfig {
  readonly metric: string
  readonly algorithm: 'thompson'
  /** Exploration floor per arm, 0..1/arms. */
  readonly min_share: number
  readonly stop_when: { readonly probability_best: number; readonly max_expected_loss: number } | null
}

export interface PromoteWhen {
  readonly min_compared: number
  readonly min_agreement: number
  readonly max_p99_latency_ratio: number | null
  readonly max_error_rate: number | null
  /** api: openai routes with a judge: the 95 % Wilson lower bound of the judged win share reaches this; null: not judged. */
  readonly min_win_rate: number | null
  /** Decided (non-tie) judged pairs before min_win_rate is read. */
  readonly min_judged: number
}

export const EVALUATION_DEFAULTS: EvaluationConfig = { interval_ms: 60_000, prometheus: null }

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `500ms`, `30s`, `10m`, `2h`, `30d` → milliseconds; undefined if it is not such a string. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim())
  if (m === null) return undefined
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number)
  return Number.isFinite(ms) ? Math.round(ms) : undefined
}

/** Formats milliseconds the way the config writes them (`90s`, `10m`). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

export function duration(c: Checker, value: unknown, path: KeyPath, opts: { fallback?: number; min: number; max?: number }): number | undefined {
  if (value === undefined || value === null) {
    if (opts.fallback === undefined) c.add(path, 'is required: a duration such as "30s" or "10m"')
    return opts.fallback
  }
  const ms = typeof value === 'string' ? parseDuration(value) : undefined
  if (ms === undefined) {
    c.add(path, `must be a duration with a unit (500ms, 30s, 10m, 2h, 30d), got ${describe(value)}`)
    return undefined
  }
  if (ms < opts.min || (opts.max !== undefined && ms > opts.max)) {
    c.add(path, `must be from ${formatDuration(opts.min)}${opts.max !== undefined ? ` to ${formatDuration(opts.max)}` : ' up'}, got ${String(value)}`)
    return undefined
  }
  return ms
}

const EVALUATION_KEYS = ['interval', 'prometheus'] as const
const PROMETHEUS_KEYS = ['url', 'lookback', 'scrape_interval'] as const
const ROLLOUT_KEYS = ['candidate', 'steps', 'step_interval', 'min_requests', 'gates', 'on_failure', 'promote'] as const
const GATE_KEYS = ['max_error_rate_increase', 'max_p99_latency_ratio', 'guardrails', 'min_win_rate', 'min_judged', 'judge_guardrail'] as const
const BANDIT_KEYS = ['metric', 'algorithm', 'min_share', 'stop_when'] as const
const STOP_KEYS = ['probability_best', 'max_expected_loss'] as const
const PROMOTE_KEYS = ['min_compared', 'min_agreement', 'max_p99_latency_ratio', 'max_error_rate', 'min_win_rate', 'min_judged'] as const
/** Decided judged pairs a win-rate criterion waits for unless min_judged says otherwise. */
export const MIN_JUDGED_DEFAULT = 100

/** The top-level `evaluation` block. */
export function readEvaluation(c: Checker, value: unknown): EvaluationConfig | undefined {
  if (value === undefined || value === null) return EVALUATION_DEFAULTS
  const o = c.object(value, ['evaluation'], EVALUATION_KEYS)
  if (o === undefined) return undefined
  const interval = duration(c, o.interval, ['evaluation', 'interval'], { fallback: EVALUATION_DEFAULTS.interval_ms, min: 1000, max: 86_400_000 })
  let prometheus: PrometheusSource | null = null
  if (o.prometheus !== undefined && o.prometheus !== null) {
    const p = c.object(o.prometheus, ['evaluation', 'prometheus'], PROMETHEUS_KEYS, ['url'])
    if (p === undefined) return undefined
    const url = c.string(p.url, ['evaluation', 'prometheus', 'url'])
    if (url !== undefined && !/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(url)) {
      c.add(['evaluation', 'prometheus', 'url'], `must be an http:// or https:// URL such as "http://prometheus:9090", got ${JSON.stringify(url)}`)
      return undefined
    }
    const lookback = duration(c, p.lookback, ['evaluation', 'prometheus', 'lookback'], { fallback: 30 * 86_400_000, min: 60_000, max: 400 * 86_400_000 })
    const scrape = duration(c, p.scrape_interval, ['evaluation', 'prometheus', 'scrape_interval'], { fallback: 15_000, min: 1000, max: 3_600_000 })
    if (url === undefined || lookback === undefined || scrape === undefined) return undefined
    // Each decision reads the data as of its boundary once a scrape has passed, so it needs an
    // interval of at least two scrapes to see anything new.
    if (interval !== undefined && interval < 2 * scrape) {
      c.add(['evaluation', 'interval'], `must be at least twice evaluation.prometheus.scrape_interval (${formatDuration(scrape)}), so each decision sees a scrape it had not seen; got ${formatDuration(interval)}`)
      return undefined
    }
    prometheus = { url: url.replace(/\/+$/, ''), lookback_ms: lookback, scrape_interval_ms: scrape }
  }
  if (interval === undefined) return undefined
  return { interval_ms: interval, prometheus }
}

/** A route's `rollout`; the cross-checks with the split are in checkDecisions. */
export function readRollout(c: Checker, value: unknown, path: KeyPath): RolloutConfig | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, ROLLOUT_KEYS, ['candidate', 'steps'])
  if (o === undefined) return undefined
  const candidate = c.string(o.candidate, [...path, 'candidate'])
  const list = o.steps === undefined ? undefined : c.list(o.steps, [...path, 'steps'], 'percentages such as [1, 5, 25, 100]')
  let steps: number[] | undefined
  if (list !== undefined) {
    steps = []
    list.forEach((s, i) => {
      if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s > 100) {
        c.add([...path, 'steps', i], `must be a percent in (0, 100], got ${describe(s)}`)
        steps = undefined
        return
      }
      const prev = steps?.[steps.length - 1]
      if (prev !== undefined && s <= prev) {
        c.add([...path, 'steps', i], `steps must be strictly increasing: ${s} follows ${prev}`)
        steps = undefined
        return
      }
      steps?.push(s)
    })
    if (steps !== undefined && steps.length === 0) {
      c.add([...path, 'steps'], 'must list at least one step, e.g. [1, 5, 25, 100]')
      steps = undefined
    } else if (steps !== undefined && steps[0] === 100) {
      // The 100 % step is judged against the control's figures on the step before: with none,
      // everyone would move to the candidate unguarded, and the rollout could never be judged.
      c.add([...path, 'steps'], 'cannot start at 100: the candidate at 100% is judged against the control\'s figures on the step before, so list a step below it first, e.g. [50, 100]')
      steps = undefined
    }
  }
  const stepInterval = duration(c, o.step_interval, [...path, 'step_interval'], { fallback: 600_000, min: 1000 })
  const minRequests = c.number(o.min_requests, [...path, 'min_requests'], { min: 1, integer: true, fallback: 1000 })
  let gates: RolloutGates | undefined = { max_error_rate_increase: 0.005, max_p99_latency_ratio: 1.25, guardrails: [], min_win_rate: null, min_judged: MIN_JUDGED_DEFAULT, judge_guardrail: false }
  if (o.gates !== undefined && o.gates !== null) {
    const g = c.object(o.gates, [...path, 'gates'], GATE_KEYS)
    if (g === undefined) gates = undefined
    else {
      const err = g.max_error_rate_increase === null ? null : c.number(g.max_error_rate_increase, [...path, 'gates', 'max_error_rate_increase'], { min: 0, max: 1, fallback: 0.005 })
      const p99 = g.max_p99_latency_ratio === null ? null : c.number(g.max_p99_latency_ratio, [...path, 'gates', 'max_p99_latency_ratio'], { min: 1, fallback: 1.25 })
      const guardList = g.guardrails === undefined || g.guardrails === null ? [] : c.list(g.guardrails, [...path, 'gates', 'guardrails'], 'metric names declared on this route')
      const guardrails: string[] = []
      guardList?.forEach((m, i) => {
        if (typeof m === 'string' && m !== '') guardrails.push(m)
        else c.add([...path, 'gates', 'guardrails', i], `must be a metric name, got ${describe(m)}`)
      })
      const winRate = g.min_win_rate === undefined || g.min_win_rate === null ? null : c.number(g.min_win_rate, [...path, 'gates', 'min_win_rate'], { min: 0, max: 1 })
      const judged = c.number(g.min_judged, [...path, 'gates', 'min_judged'], { min: 1, integer: true, fallback: MIN_JUDGED_DEFAULT })
      const judgeGuard = c.boolean(g.judge_guardrail, [...path, 'gates', 'judge_guardrail'], false)
      gates = err === undefined || p99 === undefined || guardList === undefined || winRate === undefined || judged === undefined ? undefined
        : { max_error_rate_increase: err, max_p99_latency_ratio: p99, guardrails, min_win_rate: winRate, min_judged: judged, judge_guardrail: judgeGuard }
    }
  }
  const onFailure = c.oneOf(o.on_failure, [...path, 'on_failure'], ['rollback', 'pause'] as const, 'rollback')
  const promote = c.boolean(o.promote, [...path, 'promote'], true)
  if (candidate === undefined || steps === undefined || stepInterval === undefined || minRequests === undefined || gates === undefined) return undefined
  return { candidate, steps, step_interval_ms: stepInterval, min_requests: minRequests, gates, on_failure: onFailure, promote }
}

/** A route's `bandit`. */
export function readBandit(c: Checker, value: unknown, path: KeyPath): BanditConfig | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, BANDIT_KEYS, ['metric'])
  if (o === undefined) return undefined
  const metric = c.string(o.metric, [...path, 'metric'])
  const algorithm = c.oneOf(o.algorithm, [...path, 'algorithm'], ['thompson'] as const, 'thompson')
  const minShare = c.number(o.min_share, [...path, 'min_share'], { min: 0, max: 0.5, fallback: 0.05 })
  let stop: BanditConfig['stop_when'] | undefined = null
  if (o.stop_when !== undefined && o.stop_when !== null) {
    const s = c.object(o.stop_when, [...path, 'stop_when'], STOP_KEYS, ['probability_best'])
    const pb = s === undefined ? undefined : c.number(s.probability_best, [...path, 'stop_when', 'probability_best'], { min: 0.5, max: 1 })
    const loss = s === undefined ? undefined : c.number(s.max_expected_loss, [...path, 'stop_when', 'max_expected_loss'], { min: 0, fallback: Number.MAX_VALUE })
    stop = pb === undefined || loss === undefined ? undefined : { probability_best: pb, max_expected_loss: loss }
  }
  if (metric === undefined || minShare === undefined || stop === undefined) return undefined
  return { metric, algorithm, min_share: minShare, stop_when: stop }
}

/** A shadow's `promote_when`. */
export function readPromoteWhen(c: Checker, value: unknown, path: KeyPath): PromoteWhen | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, PROMOTE_KEYS)
  if (o === undefined) return undefined
  const compared = c.number(o.min_compared, [...path, 'min_compared'], { min: 1, integer: true, fallback: 1000 })
  const agreement = c.number(o.min_agreement, [...path, 'min_agreement'], { min: 0, max: 1, fallback: 0.95 })
  const p99 = o.max_p99_latency_ratio === undefined || o.max_p99_latency_ratio === null ? null : c.number(o.max_p99_latency_ratio, [...path, 'max_p99_latency_ratio'], { min: 0 })
  const errors = o.max_error_rate === undefined || o.max_error_rate === null ? null : c.number(o.max_error_rate, [...path, 'max_error_rate'], { min: 0, max: 1 })
  const winRate = o.min_win_rate === undefined || o.min_win_rate === null ? null : c.number(o.min_win_rate, [...path, 'min_win_rate'], { min: 0, max: 1 })
  const judged = c.number(o.min_judged, [...path, 'min_judged'], { min: 1, integer: true, fallback: MIN_JUDGED_DEFAULT })
  if (compared === undefined || agreement === undefined || p99 === undefined || errors === undefined || winRate === undefined || judged === undefined) return undefined
  return { min_compared: compared, min_agreement: agreement, max_p99_latency_ratio: p99, max_error_rate: errors, min_win_rate: winRate, min_judged: judged }
}

/** What the cross-checks need of a route. */
export interface DecisionRoute {
  readonly split: readonly { readonly model: string; readonly weight: number }[]
  readonly metrics: readonly { readonly name: string; readonly type: string; readonly role?: string }[]
  readonly control: string
  readonly rollout: RolloutConfig | null
  readonly bandit: BanditConfig | null
  readonly shadow: readonly { readonly model: string; readonly promote_when: PromoteWhen | null }[]
  /** routes[].judge (api: openai): win-rate criteria need one. */
  readonly judge?: unknown
}

/** Cross-field rules between a route's decisions, its split, its metrics and its shadows. */
export function checkDecisions(c: Checker, route: DecisionRoute, path: KeyPath): boolean {
  const before = c.problems.length
  const inSplit = (m: string): boolean => route.split.some((s) => s.model === m)
  const names = route.split.map((s) => s.model).join(', ')
  const declared = route.metrics.map((m) => m.name)
  const isCovariate = (name: string): boolean => route.metrics.some((m) => m.name === name && m.role === 'covariate')
  if (route.rollout !== null && route.bandit !== null) {
    c.add([...path, 'bandit'], 'a route takes a rollout or a bandit, not both: remove one of them')
  }
  const r = route.rollout
  if (r !== null) {
    if (!inSplit(r.candidate)) c.add([...path, 'rollout', 'candidate'], `"${r.candidate}" must be a model in this route's split (${names}), at weight 0 to start from nothing`)
    else if (r.candidate === route.control) c.add([...path, 'rollout', 'candidate'], `"${r.candidate}" is the route's control; the candidate is the model rolled out against it`)
    r.gates.guardrails.forEach((g, i) => {
      if (!declared.includes(g)) c.add([...path, 'rollout', 'gates', 'guardrails', i], `metric "${g}" is not declared in this route's metrics (${declared.join(', ') || 'none'})`)
      else if (isCovariate(g)) c.add([...path, 'rollout', 'gates', 'guardrails', i], `metric "${g}" is a covariate (a pre-period value for CUPED): it is not tested, so it cannot guard a rollout`)
    })
    // The judge only sees shadows' answers beside the primary's: the candidate's verdicts come from
    // mirroring the control's requests to it.
    for (const key of ['min_win_rate', 'judge_guardrail'] as const) {
      if (r.gates[key] === null || r.gates[key] === false) continue
      if (route.judge == null) c.add([...path, 'rollout', 'gates', key], 'reads the judge\'s verdicts: add judge: { model: ... } to this route (api: openai), or remove it')
      else if (!route.shadow.some((s) => s.model === r.candidate)) c.add([...path, 'rollout', 'gates', key], `reads the judge's verdicts on "${r.candidate}", which only a shadow gets: add shadow: [{ model: ${r.candidate} }] to this route`)
    }
  }
  const b = route.bandit
  if (b !== null) {
    if (!declared.includes(b.metric)) c.add([...path, 'bandit', 'metric'], `metric "${b.metric}" is not declared in this route's metrics (${declared.join(', ') || 'none: add metrics: [{ name, type }]'})`)
    else if (isCovariate(b.metric)) c.add([...path, 'bandit', 'metric'], `metric "${b.metric}" is a covariate (a pre-period value for CUPED): a bandit optimises an outcome`)
    const arms = route.split.length
    if (arms < 2) c.add([...path, 'bandit'], 'a bandit needs at least two models in the split')
    else if (b.min_share * arms > 1) c.add([...path, 'bandit', 'min_share'], `${b.min_share} × ${arms} arms is over 1: the floors cannot all hold`)
  }
  route.shadow.forEach((s, i) => {
    if (s.promote_when === null) return
    const p = [...path, 'shadow', i, 'promote_when']
    if (route.rollout === null) c.add(p, 'needs a rollout on this route: a promoted shadow becomes the rollout\'s candidate')
    if (!inSplit(s.model)) c.add(p, `"${s.model}" must also be in this route's split, at weight 0, so a rollout can move users to it`)
    if (s.promote_when.min_win_rate !== null && route.judge == null) c.add([...p, 'min_win_rate'], 'reads the judge\'s verdicts: add judge: { model: ... } to this route (api: openai), or remove it')
  })
  return c.problems.length === before
}
