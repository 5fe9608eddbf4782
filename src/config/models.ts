// The `models` section: each model a route may send traffic to, where it answers (URL, timeout,
// connections) and what else is known of it (MLflow registry version, upstream model name, price).
import { describe, type Checker, type KeyPath } from './check.js'
import { DEFAULTS, MAX_TIMER_MS } from './defaults.js'
import { readPrice, readUpstreamModel } from './llm.js'
import { readModelRef } from './mlflow.js'
import type { ModelConfig } from './types.js'

const MODEL_KEYS = ['url', 'timeout_ms', 'connections', 'mlflow', 'upstream_model', 'price', 'model_name'] as const

/** `models:` every model by name, or undefined when the section is missing or not a mapping. */
export function readModels(c: Checker, value: unknown): Record<string, ModelConfig> | undefined {
  if (value === undefined || value === null) return undefined // reported as required
  if (typeof value !== 'object' || Array.isArray(value)) {
    c.add(['models'], `must be a mapping of model name to { url, timeout_ms }, got ${describe(value)}`)
    return undefined
  }
  const out: Record<string, ModelConfig> = {}
  const entries = Object.entries(value as Record<string, unknown>)
  if (entries.length === 0) c.add(['models'], 'must define at least one model')
  for (const [name, raw] of entries) {
    const path = ['models', name]
    const o = c.object(raw, path, MODEL_KEYS, ['url'])
    if (o === undefined) continue
    const url = modelUrl(c, o.url, [...path, 'url'])
    const timeout = c.number(o.timeout_ms, [...path, 'timeout_ms'], { min: 1, max: MAX_TIMER_MS, integer: true, fallback: DEFAULTS.timeout_ms })
    const connections = c.number(o.connections, [...path, 'connections'], { min: 1, max: 65536, integer: true, fallback: DEFAULTS.connections })
    const registry = readModelRef(c, o.mlflow, [...path, 'mlflow'])
    const upstreamModel = readUpstreamModel(c, o.upstream_model, [...path, 'upstream_model'])
    const price = readPrice(c, o.price, [...path, 'price'])
    const modelName = o.model_name === undefined || o.model_name === null ? null : c.string(o.model_name, [...path, 'model_name'])
    if (url !== undefined && timeout !== undefined && connections !== undefined && registry !== undefined && upstreamModel !== undefined && price !== undefined && modelName !== undefined) {
      out[name] = { url, timeout_ms: timeout, connections, mlflow: registry, upstream_model: upstreamModel, price, ...(modelName === null ? {} : { model_name: modelName }) }
    }
  }
  return out
}

function modelUrl(c: Checker, value: unknown, path: KeyPath): string | undefined {
  const s = c.string(value, path)
  if (s === undefined) return undefined
  let url: URL
  try {
    url = new URL(s)
  } catch {
    c.add(path, `must be an absolute http:// or https:// URL such as "http://127.0.0.1:9001", got ${JSON.stringify(s)}`)
    return undefined
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    c.add(path, `must use http:// or https://, got ${JSON.stringify(url.protocol)}`)
    return undefined
  }
  if (url.search !== '' || url.hash !== '') {
    c.add(path, 'must not carry a query or fragment: the request\'s own query is passed through')
    return undefined
  }
  if (url.port === '0') {
    c.add(path, 'port must be from 1 to 65535, got 0')
    return undefined
  }
  // Keep the base path without a trailing slash so `base + rest of request path` joins cleanly.
  return url.origin + url.pathname.replace(/\/+$/, '')
}
