// The validated, defaulted config: the same keys users write in YAML (snake_case), so
// `GET /admin/config` shows them exactly what they configured plus the defaults.

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface ModelConfig {
  readonly url: string
  readonly timeout_ms: number
  /** Keep-alive connections the router may open to this model. */
  readonly connections: number
}

export type UserIdSource =
  | { readonly kind: 'header' | 'query' | 'cookie'; readonly name: string; readonly spec: string }
  | { readonly kind: 'body'; readonly pointer: string; readonly tokens: readonly string[]; readonly spec: string }

export type HashAlgorithm = 'rendezvous' | 'nginx'

export interface SplitEntry {
  readonly model: string
  readonly weight: number
}

export interface RouteConfig {
  readonly name: string
  readonly path: string
  readonly user_id: readonly UserIdSource[]
  readonly salt: string
  readonly hash: HashAlgorithm
  /** `random`, `reject`, or a model name. */
  readonly missing_user_id: string
  readonly allow_override: boolean
  readonly split: readonly SplitEntry[]
}

export interface Limits {
  readonly max_body_bytes: number
}

export interface Config {
  readonly listen: Endpoint
  readonly admin: Endpoint
  readonly limits: Limits
  readonly shutdown_timeout_ms: number
  readonly models: Readonly<Record<string, ModelConfig>>
  readonly routes: readonly RouteConfig[]
}

/** A loaded config with where it came from: what reloads and `/admin/config` report. */
export interface LoadedConfig {
  readonly config: Config
  readonly file: string
  readonly sha256: string
}
