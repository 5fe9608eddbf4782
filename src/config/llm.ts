// The keys of OpenAI-compatible routes (`routes[].api: openai`) and of the models behind them
// (`models.NAME.upstream_model`, `models.NAME.price`), read apart from schema.ts.
import type { Checker, KeyPath } from './check.js'
import type { JudgeConfig, ModelPrice, RouteApi } from './types.js'

const PRICE_KEYS = ['input_per_million_tokens', 'output_per_million_tokens'] as const
export const ROUTE_APIS: readonly RouteApi[] = ['http', 'openai']

/**
 * Where an OpenAI-style request carries its user key, in the order the API's own docs rank them
 * (`safety_identifier` replaces `user`; `prompt_cache_key` is per user in most deployments), then
 * the header every other route reads by default.
 */
export const OPENAI_USER_ID_DEFAULT: readonly string[] = [
  'body:/safety_identifier', 'body:/prompt_cache_key', 'body:/user', 'body:/metadata/user_id', 'header:x-user-id',
]

/** `models.NAME.upstream_model`: the `model` the server is asked for; null: the client's, unchanged. */
export function readUpstreamModel(c: Checker, value: unknown, path: KeyPath): string | null | undefined {
  if (value === undefined || value === null) return null
  return c.string(value, path)
}

/** `models.NAME.price`: currency units per million tokens each way; null: no cost is counted. */
export function readPrice(c: Checker, value: unknown, path: KeyPath): ModelPrice | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, PRICE_KEYS, PRICE_KEYS)
  if (o === undefined) return undefined
  const input = c.number(o.input_per_million_tokens, [...path, 'input_per_million_tokens'], { min: 0 })
  const output = c.number(o.output_per_million_tokens, [...path, 'output_per_million_tokens'], { min: 0 })
  if (input === undefined || output === undefined) return undefined
  return { input_per_million_tokens: input, output_per_million_tokens: output }
}

/** `routes[].api`: `http` (any JSON model server, the default) or `openai`. */
export function readApi(c: Checker, value: unknown, path: KeyPath): RouteApi {
  return c.oneOf(value, path, ROUTE_APIS, 'http')
}

const JUDGE_KEYS = ['model', 'percent', 'max_cost_per_hour', 'max_in_flight', 'prompt'] as const
export const JUDGE_PLACEHOLDERS: readonly string[] = ['{{question}}', '{{answer_a}}', '{{answer_b}}']

/** The judge's prompt unless the config gives one: blind (A and B, never model names), one-word answer. */
export const DEFAULT_JUDGE_PROMPT = `You compare two answers to the same request. Decide which one is better: more correct, more
helpful and more faithful to the request. Ignore length and style unless they matter to the request.

Request:
{{question}}

Answer A:
{{answer_a}}

Answer B:
{{answer_b}}

Reply with one word: A if answer A is better, B if answer B is better, TIE if neither is.`

/** `routes[].judge`: only on api: openai routes with shadows, naming a defined model. */
export function readJudge(c: Checker, value: unknown, path: KeyPath, models: Record<string, unknown> | undefined, api: RouteApi): JudgeConfig | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, JUDGE_KEYS, ['model'])
  if (o === undefined) return undefined
  if (api !== 'openai') {
    c.add(path, 'a judge compares language-model answers: set api: openai on this route, or remove judge')
    return undefined
  }
  const model = c.string(o.model, [...path, 'model'])
  if (model !== undefined && models !== undefined && !Object.hasOwn(models, model)) {
    c.add([...path, 'model'], `model "${model}" is not defined under models; defined: ${Object.keys(models).join(', ') || '(none)'}`)
    return undefined
  }
  const percent = c.number(o.percent, [...path, 'percent'], { min: 0, max: 100, fallback: 100 })
  const budget = c.number(o.max_cost_per_hour, [...path, 'max_cost_per_hour'], { min: 0 })
  const maxInFlight = c.number(o.max_in_flight, [...path, 'max_in_flight'], { min: 1, integer: true, fallback: 16 })
  const prompt = c.string(o.prompt, [...path, 'prompt'], DEFAULT_JUDGE_PROMPT)
  if (prompt !== undefined) {
    const missing = JUDGE_PLACEHOLDERS.filter((p) => !prompt.includes(p))
    if (missing.length > 0) {
      c.add([...path, 'prompt'], `must contain ${missing.join(', ')}: the judge sees the request and both answers through them`)
      return undefined
    }
  }
  if (model === undefined || percent === undefined || maxInFlight === undefined || prompt === undefined) return undefined
  if (o.max_cost_per_hour !== undefined && o.max_cost_per_hour !== null && budget === undefined) return undefined
  return { model, percent, max_cost_per_hour: budget ?? null, max_in_flight: maxInFlight, prompt }
}
