// What /admin/shadows and /admin/llm read: the live counters of the runtime in force, per route.
import { answered, type Runtime } from '../proxy/runtime.js'
import type { WinTally } from '../stats/index.js'
import type { LlmCounts, ShadowCounts } from './index.js'

/** The judge's verdicts on a (primary, shadow) pair of a route; undefined before its first. */
export type JudgedOf = (route: string, primary: string, shadow: string) => WinTally | undefined

/** Each shadow's comparison counts with each primary, per route with shadows. */
export function shadowCountsOf(runtime: Runtime, judged: JudgedOf): ShadowCounts {
  return runtime.routes.filter((r) => r.shadows.length > 0).map((r) => ({
    route: r.name,
    pairs: r.shadows.flatMap((s) => [...s.comparisons].map(([primary, c]) => {
      const verdicts = r.plan.judge === null ? undefined : judged(r.name, primary, s.model) ?? { wins: 0, ties: 0, losses: 0 }
      return {
        primary,
        shadow: s.model,
        agree: c.agree.value,
        disagree: c.disagree.value,
        error: c.error.value,
        ...(verdicts !== undefined ? { judged: verdicts } : {}),
      }
    })),
  }))
}

/** api: openai routes: each arm's requests, tokens and cost served. */
export function llmCountsOf(runtime: Runtime): LlmCounts {
  return runtime.routes.filter((r) => r.plan.isOpenAi).map((r) => ({
    route: r.name,
    arms: r.arms.map((arm) => ({
      model: arm.model,
      requests: answered(arm.byCode).requests,
      input_tokens: arm.llm?.inputTokens.value ?? 0,
      output_tokens: arm.llm?.outputTokens.value ?? 0,
      cost: arm.llm?.cost.value ?? 0,
    })),
  }))
}
