// The judge: for answer pairs the text cascade left undecided, another model is asked which is
// better, blind (the answers are "A" and "B", in random order) and off the request path. Sampled
// sticky by user, capped in flight and by a cost budget per clock hour; every call and skip is
// counted, and verdicts feed the win-rate statistics.
import { request } from 'undici'
import { rendezvousHash } from '../assign/index.js'
import type { Metrics } from '../metrics/index.js'
import type { JudgePlan } from '../plan/index.js'
import { winRate, type WinRate, type WinTally } from '../stats/index.js'
import { assembleAnswer, type AssembledAnswer } from './assemble.js'

export type Verdict = 'win' | 'tie' | 'loss'
export type JudgeSkip = 'not_sampled' | 'budget' | 'max_in_flight'

/** One judged pair as the judgement record holds it (the observer adds who and when). */
export interface JudgeOutcome {
  readonly judge_model: string
  readonly verdict: Verdict | 'error'
  readonly shadow_position: 'A' | 'B'
  readonly judge_answer: string | null
  readonly cost: number
}

/** One candidate's judged pairs against one primary on one route. */
interface Tally {
  wins: number
  ties: number
  losses: number
  /** Running minimum of the sequential p over every verdict (each verdict is a look). */
  sequentialP: number
}

/** The judge's one-word verdict on the answers as it saw them (A first), or null for anything else. */
export function parseVerdict(text: string): 'A' | 'B' | 'TIE' | null {
  const m = /^[\s*"'`(]*(TIE|A|B)\b/i.exec(text)
  return m === null ? null : m[1]?.toUpperCase() as 'A' | 'B' | 'TIE'
}

/** The request's question, as the judge is shown it: the last user message, or the prompt. */
export function questionOf(input: Buffer | undefined): string {
  if (input === undefined) return ''
  let body: unknown
  try {
    body = JSON.parse(input.toString('utf8'))
  } catch {
    return ''
  }
  const o = body as { messages?: unknown; prompt?: unknown; input?: unknown }
  if (Array.isArray(o.messages)) {
    for (let i = o.messages.length - 1; i >= 0; i--) {
      const m = o.messages[i] as { role?: unknown; content?: unknown }
      if (m?.role === 'user') return typeof m.content === 'string' ? m.content : JSON.stringify(m.content)
    }
  }
  if (typeof o.prompt === 'string') return o.prompt
  if (typeof o.input === 'string') return o.input
  return ''
}

function render(answer: AssembledAnswer): string {
  return answer.toolCalls.length === 0 ? answer.text : `${answer.text}\n[tool calls] ${JSON.stringify(answer.toolCalls)}`
}

export class Judge {
  readonly #metrics: Metrics
  readonly #tallies = new Map<string, Tally>()
  #inFlight = 0
  #hour = -1
  #spent = 0
  #random: () => number

  constructor(metrics: Metrics, random: () => number = Math.random) {
    this.#metrics = metrics
    this.#random = random
  }

  /** Calls in flight (for tests and shutdown). */
  get inFlight(): number {
    return this.#inFlight
  }

  /** Win rates so far: per route, primary and candidate (the shadow). */
  winRates(): { route: string; primary: string; shadow: string; rate: WinRate; sequentialP: number }[] {
    const out = []
    for (const [key, t] of this.#tallies) {
      const [route, primary, shadow] = key.split('\u0000') as [string, string, string]
      out.push({ route, primary, shadow, rate: winRate(t), sequentialP: t.sequentialP })
    }
    return out
  }

  /** One candidate's verdicts against one primary on a route (errors left out), or undefined before any. */
  tally(route: string, primary: string, shadow: string): WinTally | undefined {
    const t = this.#tallies.get(`${route}\u0000${primary}\u0000${shadow}`)
    return t === undefined ? undefined : { wins: t.wins, ties: t.ties, losses: t.losses }
  }

  /**
   * Judges one undecided pair unless the user is not sampled, the budget for this hour is spent or
   * too many calls are in flight. Never throws; resolves when the verdict is counted (tests await it).
   */
  consider(plan: JudgePlan, route: string, userId: string | undefined, input: Buffer | undefined, primary: string, shadow: string, a: AssembledAnswer, b: AssembledAnswer, write: ((r: JudgeOutcome) => void) | null): Promise<void> {
    const skipped = (reason: JudgeSkip): Promise<void> => {
      this.#metrics.llmJudgeSkipped.inc({ route, reason })
      return Promise.resolve()
    }
    const sampled = plan.threshold >= 2 ** 32 || (userId === undefined ? this.#random() * 2 ** 32 : rendezvousHash(plan.table, 0, userId)) < plan.threshold
    if (!sampled) return skipped('not_sampled')
    const hour = Math.floor(Date.now() / 3_600_000)
    if (hour !== this.#hour) {
      this.#hour = hour
      this.#spent = 0
    }
    if (plan.maxCostPerHour !== null && this.#spent >= plan.maxCostPerHour) return skipped('budget')
    if (this.#inFlight >= plan.maxInFlight) return skipped('max_in_flight')
    this.#inFlight++
    // Blind and in random order, so neither position nor name can favour a side.
    const shadowFirst = this.#random() < 0.5
    const prompt = plan.prompt
      .replace('{{question}}', () => questionOf(input))
      .replace('{{answer_a}}', () => render(shadowFirst ? b : a))
      .replace('{{answer_b}}', () => render(shadowFirst ? a : b))
    return this.#call(plan, prompt).then((answer) => {
      const labels = { route, primary, shadow }
      if (answer.cost > 0) {
        this.#spent += answer.cost
        this.#metrics.llmJudgeCost.inc({ route }, answer.cost)
      }
      const said = answer.text === null ? null : parseVerdict(answer.text)
      // From the candidate's (the shadow's) side.
      const verdict: Verdict | 'error' = said === null ? 'error' : said === 'TIE' ? 'tie' : (said === 'A') === shadowFirst ? 'win' : 'loss'
      write?.({
        judge_model: plan.target.model, verdict, shadow_position: shadowFirst ? 'A' : 'B',
        judge_answer: answer.text === null ? null : answer.text.slice(0, 200), cost: answer.cost,
      })
      this.#metrics.llmJudgeVerdicts.inc({ ...labels, verdict })
      if (verdict === 'error') return
      const key = `${route}\u0000${primary}\u0000${shadow}`
      let t = this.#tallies.get(key)
      if (t === undefined) this.#tallies.set(key, t = { wins: 0, ties: 0, losses: 0, sequentialP: 1 })
      if (verdict === 'win') t.wins++
      else if (verdict === 'loss') t.losses++
      else t.ties++
      t.sequentialP = Math.min(t.sequentialP, winRate(t).sequentialP)
    }).finally(() => {
      this.#inFlight--
    })
  }

  /** Asks the judge model (non-streamed chat completion); text null when it failed or said nothing readable. */
  async #call(plan: JudgePlan, prompt: string): Promise<{ text: string | null; cost: number }> {
    const t = plan.target
    try {
      const res = await request(`${t.url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: t.upstreamModel ?? t.model, messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 8, stream: false }),
        headersTimeout: t.timeoutMs,
        bodyTimeout: t.timeoutMs,
      })
      const body = Buffer.from(await res.body.arrayBuffer())
      if (res.statusCode < 200 || res.statusCode > 299) return { text: null, cost: 0 }
      const answer = assembleAnswer(body)
      if (answer === null) return { text: null, cost: 0 }
      const price = t.price
      const cost = price === null ? 0 : ((answer.inputTokens ?? 0) * price.input_per_million_tokens + (answer.outputTokens ?? 0) * price.output_per_million_tokens) / 1e6
      return { text: answer.text, cost }
    } catch {
      return { text: null, cost: 0 }
    }
  }
}
