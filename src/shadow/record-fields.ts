// Fields of a prediction record taken from the route rather than from the answers: a model's
// registered version and price, the primary's usage, the shares in force, latencies rounded.
import type { ModelPrice } from '../config/types.js'
import type { RouteRuntime } from '../proxy/runtime.js'
import { usageOf, type RecordUsage } from '../llm/observe.js'
import type { AssembledAnswer } from '../llm/assemble.js'
import type { AnswerFacts } from '../llm/answer.js'

/** `model_version` for a record, when the model has a registered version behind it. */
export function versionOf(route: RouteRuntime, model: string): { model_version?: string | null } {
  for (const t of route.targets) if (t.model === model) return t.registry === null ? {} : { model_version: t.registry.version }
  return {}
}

/**
 * The primary's usage: as the live reader counted it (the client's capture lacks the usage chunk
 * the router took out), else as assembled; with its first-token time when it streamed.
 */
export function primaryUsage(facts: AnswerFacts | null, answer: AssembledAnswer | undefined, price: ModelPrice | null): { usage?: RecordUsage; ttft_ms?: number } {
  if (facts !== null && (facts.inputTokens >= 0 || facts.outputTokens >= 0)) {
    const usage = { input_tokens: facts.inputTokens < 0 ? null : facts.inputTokens, output_tokens: facts.outputTokens < 0 ? null : facts.outputTokens, cost: facts.cost < 0 ? null : facts.cost }
    return facts.ttftMs < 0 ? { usage } : { usage, ttft_ms: round(facts.ttftMs) }
  }
  return answer === undefined ? {} : { usage: usageOf(answer, price) }
}

/** A model's price on the route (null: not priced). */
export function priceOf(route: RouteRuntime, model: string): ModelPrice | null {
  for (const t of route.targets) if (t.model === model) return t.price
  return null
}

/** Milliseconds to the microsecond, as records write them. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

const SHARES = new WeakMap<object, Readonly<Record<string, number>>>()

/** The shares in force on a route as a frozen object, built once per bound plan (the report's weight periods). */
export function sharesOf(route: RouteRuntime): Readonly<Record<string, number>> {
  let s = SHARES.get(route.assigner)
  if (s === undefined) {
    s = Object.freeze(Object.fromEntries(route.assigner.models.map((m, i) => [m, route.assigner.shares[i] ?? 0])))
    SHARES.set(route.assigner, s)
  }
  return s
}
