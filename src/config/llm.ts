// The keys of OpenAI-compatible routes (`routes[].api: openai`) and of the models behind them
// (`models.NAME.upstream_model`, `models.NAME.price`), read apart from schema.ts.
import type { Checker, KeyPath } from './check.js'
import type { ModelPrice, RouteApi } from './types.js'

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
