// The MLflow keys: the top-level `mlflow` block (where the tracking server is, what the router
// writes there) and `models.NAME.mlflow` (which registered version serves behind a model's URL).
import { describe, type Checker, type KeyPath } from './check.js'
import { duration } from './decisions.js'

/** Where the router reads the Model Registry and logs its online runs. */
export interface MlflowConfig {
  /** The tracking server's base URL (its REST API is under /api/2.0/mlflow). */
  readonly tracking_uri: string
  /** The MLflow experiment the router's runs go to (created if missing). */
  readonly experiment: string
  /** How often each route's run gets its numbers (besides after every decision). */
  readonly log_interval_ms: number
  /** How often aliases are resolved again. */
  readonly refresh_ms: number
  /** Promotions move `promote_alias` in the registry; rollbacks tag the version. */
  readonly write_aliases: boolean
  readonly promote_alias: string
  /** A file holding a bearer token for the tracking server; null: none. */
  readonly token_file: string | null
  /** Each call to MLflow gives up after this long. */
  readonly timeout_ms: number
}

/** `models.NAME.mlflow`: a registered model's version, pinned or through an alias. */
export interface ModelRegistryRef {
  /** The registered model's name. */
  readonly model: string
  /** A pinned version, or null when an alias names it. */
  readonly version: string | null
  readonly alias: string | null
}

const MLFLOW_KEYS = ['tracking_uri', 'experiment', 'log_interval', 'refresh', 'write_aliases', 'promote_alias', 'token_file', 'timeout_ms'] as const
const REF_KEYS = ['model', 'version', 'alias'] as const
/** MLflow's own rule for alias names: letters, digits, _ and -; `latest` and `v<N>` are reserved. */
const ALIAS = /^[A-Za-z0-9_-]{1,255}$/

export const MLFLOW_DEFAULTS = {
  experiment: 'modelsplit-online',
  log_interval_ms: 300_000,
  refresh_ms: 60_000,
  write_aliases: false,
  promote_alias: 'champion',
  timeout_ms: 5000,
} as const

/** The top-level `mlflow` block: absent or null is none (null); undefined reports a problem. */
export function readMlflow(c: Checker, value: unknown): MlflowConfig | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, ['mlflow'], MLFLOW_KEYS, ['tracking_uri'])
  if (o === undefined) return undefined
  const d = MLFLOW_DEFAULTS
  const uriPath = ['mlflow', 'tracking_uri']
  let uri = c.string(o.tracking_uri, uriPath)
  if (uri !== undefined && !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(uri)) {
    c.add(uriPath, `must be the tracking server's http:// or https:// URL such as "http://127.0.0.1:5000" (the router talks to its REST API), got ${JSON.stringify(uri)}`)
    uri = undefined
  }
  const experiment = c.string(o.experiment, ['mlflow', 'experiment'], d.experiment)
  if (experiment === '') c.add(['mlflow', 'experiment'], 'must not be empty')
  const logInterval = duration(c, o.log_interval, ['mlflow', 'log_interval'], { fallback: d.log_interval_ms, min: 1000, max: 86_400_000 })
  const refresh = duration(c, o.refresh, ['mlflow', 'refresh'], { fallback: d.refresh_ms, min: 1000, max: 86_400_000 })
  const writeAliases = c.boolean(o.write_aliases, ['mlflow', 'write_aliases'], d.write_aliases)
  const promoteAlias = aliasName(c, o.promote_alias, ['mlflow', 'promote_alias'], d.promote_alias)
  const tokenFile = c.string(o.token_file, ['mlflow', 'token_file'], undefined) ?? null
  const timeout = c.number(o.timeout_ms, ['mlflow', 'timeout_ms'], { min: 100, max: 600_000, integer: true, fallback: d.timeout_ms })
  if (uri === undefined || experiment === undefined || experiment === '' || logInterval === undefined || refresh === undefined || promoteAlias === undefined || timeout === undefined) return undefined
  return { tracking_uri: uri.replace(/\/+$/, ''), experiment, log_interval_ms: logInterval, refresh_ms: refresh, write_aliases: writeAliases, promote_alias: promoteAlias, token_file: tokenFile, timeout_ms: timeout }
}

/** `models.NAME.mlflow`: absent or null is none (null); undefined reports a problem. */
export function readModelRef(c: Checker, value: unknown, path: KeyPath): ModelRegistryRef | null | undefined {
  if (value === undefined || value === null) return null
  const o = c.object(value, path, REF_KEYS, ['model'])
  if (o === undefined) return undefined
  const model = c.string(o.model, [...path, 'model'])
  if (model === '') c.add([...path, 'model'], 'must name a registered model')
  const hasVersion = o.version !== undefined && o.version !== null
  const hasAlias = o.alias !== undefined && o.alias !== null
  if (hasVersion === hasAlias) {
    c.add(path, hasVersion ? 'has both version and alias: give one (a pinned version, or an alias the router follows)' : 'needs version (e.g. version: 2) or alias (e.g. alias: champion)')
    return undefined
  }
  let version: string | undefined
  if (hasVersion) {
    const v = o.version
    if ((typeof v === 'number' && Number.isInteger(v) && v >= 1) || (typeof v === 'string' && /^[1-9][0-9]{0,17}$/.test(v))) version = String(v)
    else c.add([...path, 'version'], `must be a registered model version number (1, 2, …), got ${describe(v)}`)
  }
  const alias = hasAlias ? aliasName(c, o.alias, [...path, 'alias']) : null
  if (model === undefined || model === '' || (hasVersion && version === undefined) || alias === undefined) return undefined
  return { model, version: version ?? null, alias }
}

function aliasName(c: Checker, value: unknown, path: KeyPath, fallback?: string): string | undefined {
  const s = c.string(value, path, fallback)
  if (s === undefined) return undefined
  if (!ALIAS.test(s) || s === 'latest' || /^v\d+$/i.test(s)) {
    c.add(path, `must be an MLflow alias name (letters, digits, _ and -; not "latest" or v<N>, which MLflow reserves), got ${JSON.stringify(s)}`)
    return undefined
  }
  return s
}
