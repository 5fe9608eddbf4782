import type { RolloutConfig } from '../config/decisions.js'
import { winRate, type WinTally } from '../stats/index.js'
import { checkWinRate } from './promotion.js'

/** Where a rollout stands (the `state` label of modelsplit_rollout_state). */
export type RolloutStatus = 'running' | 'paused' | 'holding' | 'rolled_back' | 'promoted'

export const ROLLOUT_STATUSES: readonly RolloutStatus[] = ['running', 'paused', 'holding', 'rolled_back', 'promoted']

/** A rollout's state: plain data, persisted beside the records and identical on every replica. */
export interface RolloutState {
  /** Hash of the rollout's definition: a reload that changes it restarts the rollout. */
  readonly definition: string
  readonly candidate: string
  readonly control: string
  readonly status: RolloutStatus
  /** Index in steps of the step in force. */
  readonly step: number
  /** The boundary the step started at (ms since the epoch). */
  readonly stepStartedAt: number
  /** Who paused it: an operator, or a failing gate with on_failure: pause. */
  readonly pausedBy: 'operator' | 'gate' | null
  /**
   * The control's figures on the last step it had traffic: at 100 % the control serves nobody,
   * so the candidate is judged against these.
   */
  readonly baseline?: ArmWindow | null
  /** When the last operator action this state follows was taken (ms), fleet-wide. */
  readonly operatorAt?: number
}

/** How far a rollout has gone within one step: a pause, then an end, come after running on it. */
const PROGRESS: Record<RolloutStatus, number> = { running: 0, holding: 0, paused: 1, rolled_back: 2, promoted: 2 }

/**
 * Whether a rollout state (another replica's) is ahead of this one: a later step start (an advance,
 * a resume, a promoted shadow's new rollout), or on the same step a pause or an end this one has not
 * taken. Replicas never go back, so the state ahead is the fleet's.
 */
export function isAhead(other: { readonly stepStartedAt: number; readonly status: RolloutStatus }, mine: RolloutState): boolean {
  if (other.stepStartedAt !== mine.stepStartedAt) return other.stepStartedAt > mine.stepStartedAt
  return PROGRESS[other.status] > PROGRESS[mine.status]
}

/** The step index a percent in force stands for (a rolled back rollout stands at its first step). */
export function stepOf(steps: readonly number[], percent: number): number {
  // Shares in force are fractions: 20 may come back as 20.000000000000004.
  return Math.max(0, steps.findIndex((p) => p >= percent - 1e-6))
}

/** What one arm did during the current step's window. */
export interface ArmWindow {
  readonly requests: number
  /** Answers with a 5xx status (or no answer: 502/504). */
  readonly errors: number
  /** p99 latency in seconds from the duration histogram, or null with no data. */
  readonly p99: number | null
}

/** An arm with nothing in the window (no figures for it). */
export const EMPTY_WINDOW: ArmWindow = { requests: 0, errors: 0, p99: null }

/** A guardrail metric's sequential test, candidate against control. */
export interface GuardrailResult {
  readonly metric: string
  /** Always-valid p-value (mSPRT), or null with too little data. */
  readonly p: number | null
  /** The candidate's mean is worse in the metric's direction. */
  readonly worse: boolean
  /** With a non-inferiority margin (metrics[].guardrail): shown not worse by more than it; null without one. */
  readonly nonInferior?: boolean | null
}

export interface RolloutInputs {
  readonly control: ArmWindow
  readonly candidate: ArmWindow
  readonly guardrails: readonly GuardrailResult[]
  /** The judge's verdicts on the candidate against the control (gates.min_win_rate, judge_guardrail); none: not read. */
  readonly judged?: WinTally
  /** Why the data cannot be trusted at this boundary (Prometheus down…), or null. */
  readonly missing: string | null
}

export type RolloutResult = 'advance' | 'hold' | 'rollback' | 'pause' | 'promote'

export interface RolloutDecision {
  readonly state: RolloutState
  readonly result: RolloutResult
  readonly reason: string
}

/** The rollout's first state: the first step, starting at `now`. */
export function startRollout(cfg: RolloutConfig, definition: string, control: string, now: number, candidate = cfg.candidate): RolloutState {
  return { definition, candidate, control, status: 'running', step: 0, stepStartedAt: now, pausedBy: null }
}

/** The sequential test's significance level for guardrails. */
export const GUARDRAIL_ALPHA = 0.05

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`

/**
 * One decision at a boundary, as a pure function of the config, the state and the data as of the
 * boundary. Missing data never moves a rollout forward and never rolls it back: it holds.
 */
export function decideRollout(cfg: RolloutConfig, state: RolloutState, data: RolloutInputs, now: number): RolloutDecision {
  const hold = (reason: string, status: RolloutStatus = state.status === 'running' ? 'holding' : state.status): RolloutDecision =>
    ({ state: { ...state, status }, result: 'hold', reason })
  if (state.status === 'promoted') return { state, result: 'hold', reason: `promoted: ${state.candidate} is the control` }
  if (state.status === 'rolled_back') return { state, result: 'hold', reason: `rolled back: ${state.candidate} gets no traffic` }
  if (state.status === 'paused') return { state, result: 'hold', reason: `paused by ${state.pausedBy ?? 'operator'}; resume to go on` }
  const percent = cfg.steps[state.step] as number
  if (data.missing !== null) return hold(`holding at ${percent}%: ${data.missing}`)
  const candidate = data.candidate
  const control = percent >= 100 && state.baseline != null ? state.baseline : data.control
  if (control.requests < cfg.min_requests || candidate.requests < cfg.min_requests) {
    return hold(`holding at ${percent}%: collecting data on this step (control ${control.requests}/${cfg.min_requests}, candidate ${candidate.requests}/${cfg.min_requests} requests)`, 'running')
  }
  const failures: string[] = []
  const g = cfg.gates
  const errControl = control.errors / control.requests
  const errCandidate = candidate.errors / candidate.requests
  if (g.max_error_rate_increase !== null && errCandidate - errControl > g.max_error_rate_increase) {
    failures.push(`error rate ${pct(errCandidate)} vs control ${pct(errControl)}: +${pct(errCandidate - errControl)} > max_error_rate_increase ${pct(g.max_error_rate_increase)}`)
  }
  // At 100 % the control serves nobody: the candidate is compared with the control's last step,
  // another time window, so latency (which moves with load for every model) is not judged then.
  const concurrent = !(percent >= 100 && state.baseline != null)
  if (g.max_p99_latency_ratio !== null && concurrent) {
    if (control.p99 === null || candidate.p99 === null || control.p99 <= 0) return hold(`holding at ${percent}%: no p99 latency to compare yet`)
    const ratio = candidate.p99 / control.p99
    if (ratio > g.max_p99_latency_ratio) failures.push(`p99 ${(candidate.p99 * 1000).toFixed(1)} ms vs control ${(control.p99 * 1000).toFixed(1)} ms: ×${ratio.toFixed(2)} > max_p99_latency_ratio ${g.max_p99_latency_ratio}`)
  }
  for (const r of data.guardrails) {
    if (r.worse && r.p !== null && r.p < GUARDRAIL_ALPHA) failures.push(`guardrail ${r.metric} is significantly worse (sequential p = ${r.p.toPrecision(3)} < ${GUARDRAIL_ALPHA})`)
  }
  if (g.judge_guardrail && data.judged !== undefined) {
    // The sequential p is valid at every look, so the gate may read it at each boundary.
    const r = winRate(data.judged)
    if (r.losses > r.wins && r.sequentialP < GUARDRAIL_ALPHA) failures.push(`the judge prefers the control significantly (${r.wins} wins, ${r.ties} ties, ${r.losses} losses; sequential p = ${r.sequentialP.toPrecision(3)} < ${GUARDRAIL_ALPHA})`)
  }
  if (failures.length > 0) {
    const why = `gate failed at ${percent}%: ${failures.join('; ')}`
    if (cfg.on_failure === 'pause') return { state: { ...state, status: 'paused', pausedBy: 'gate' }, result: 'pause', reason: `${why}; paused (on_failure: pause)` }
    return { state: { ...state, status: 'rolled_back' }, result: 'rollback', reason: `${why}; rolled back: ${state.candidate} to 0%` }
  }
  // A guardrail with a margin must be shown non-inferior before the step goes on; until then the
  // step holds (it is not a failure: the evidence may still come).
  const unproven = data.guardrails.filter((r) => r.nonInferior === false).map((r) => r.metric)
  if (unproven.length > 0) return hold(`holding at ${percent}%: guardrail ${unproven.join(', ')} not yet shown non-inferior (within its margin)`, 'running')
  // Like a margin, a win rate not yet shown holds the step: the verdicts may still come.
  let judgedWhy = ''
  if (g.min_win_rate !== null) {
    const judged = checkWinRate(state.candidate, data.judged, g.min_win_rate, g.min_judged)
    if (!judged.ready) return hold(`holding at ${percent}%: ${judged.reason}`, 'running')
    judgedWhy = `; ${judged.reason}`
  }
  const elapsed = now - state.stepStartedAt
  if (elapsed < cfg.step_interval_ms) {
    return { state: { ...state, status: 'running' }, result: 'hold', reason: `gates hold at ${percent}%; on this step ${Math.round(elapsed / 1000)} s of ${Math.round(cfg.step_interval_ms / 1000)} s` }
  }
  if (state.step + 1 < cfg.steps.length) {
    const next = cfg.steps[state.step + 1] as number
    return { state: { ...state, status: 'running', step: state.step + 1, stepStartedAt: now, baseline: control }, result: 'advance', reason: `gates held for ${Math.round(elapsed / 1000)} s at ${percent}% (errors ${pct(errCandidate)} vs ${pct(errControl)}${judgedWhy}): step up to ${next}%` }
  }
  if (percent >= 100 && cfg.promote) {
    return { state: { ...state, status: 'promoted', control: state.candidate }, result: 'promote', reason: `gates held at 100% for ${Math.round(elapsed / 1000)} s${judgedWhy}: ${state.candidate} promoted, it is the control now` }
  }
  return { state: { ...state, status: 'running' }, result: 'hold', reason: `gates hold at the last step (${percent}%)${percent >= 100 ? '; promote: false keeps it there' : ''}` }
}

/**
 * The weights in force for a rollout: the candidate's percent, the rest shared by the other models
 * in their configured proportions. Assignment stays the weighted rendezvous formula on these, so a
 * step up only moves users into the candidate and a rollback only moves them out.
 */
/** The candidate's percent of users in force: its step's, all once promoted, none once rolled back. */
export function rolloutPercent(steps: readonly number[], state: RolloutState): number {
  return state.status === 'rolled_back' ? 0 : state.status === 'promoted' ? 100 : steps[state.step] as number
}

export function rolloutWeights(split: readonly { readonly model: string; readonly weight: number }[], cfg: RolloutConfig, state: RolloutState): number[] {
  const percent = rolloutPercent(cfg.steps, state)
  const others = split.filter((s) => s.model !== state.candidate)
  const otherTotal = others.reduce((a, s) => a + s.weight, 0)
  // A control with no weight of its own came from an earlier promotion: it takes the rest alone.
  const controlOwnsRest = otherTotal <= 0 || (split.find((s) => s.model === state.control)?.weight ?? 0) <= 0
  return split.map((s) => {
    if (s.model === state.candidate) return percent
    if (controlOwnsRest) return s.model === state.control ? 100 - percent : 0
    return ((100 - percent) * s.weight) / otherTotal
  })
}

/** A rollout after an operator's action (pause, resume, abort, promote) at `at`, or null when its state does not allow it (or the action is unknown). */
export function applyAction(s: RolloutState, action: string, at: number): RolloutState | null {
  switch (action) {
    case 'pause': return s.status === 'running' || s.status === 'holding' ? { ...s, status: 'paused', pausedBy: 'operator', operatorAt: at } : null
    case 'resume': return s.status === 'paused' ? { ...s, status: 'running', pausedBy: null, stepStartedAt: at, operatorAt: at } : null
    case 'abort': return s.status === 'rolled_back' || s.status === 'promoted' ? null : { ...s, status: 'rolled_back', operatorAt: at }
    case 'promote': return s.status === 'rolled_back' || s.status === 'promoted' ? null : { ...s, status: 'promoted', control: s.candidate, operatorAt: at }
    default: return null
  }
}
