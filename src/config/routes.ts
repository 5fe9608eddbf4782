// The `routes` section: each route's name, how a request is matched to it (URL path prefix or gRPC
// method), where its user id is read from, its hash and salt, and the blocks it hands to the other
// readers (traffic, metrics, decisions, judge); across routes, unique names and no overlapping matches.
import { parseJsonPointer } from '../compare/index.js'
import { describe, type Checker, type KeyPath } from './check.js'
import { checkDecisions, readBandit, readRollout } from './decisions.js'
import { DEFAULTS } from './defaults.js'
import { OPENAI_USER_ID_DEFAULT, readApi, readJudge } from './llm.js'
import { readAnalysis, readMetrics } from './metrics.js'
import { readCompare, readMissing, readShadows, readSplit } from './traffic.js'
import type { GrpcRouteConfig, HashAlgorithm, OverheadMode, RouteConfig, UserIdSource } from './types.js'

const GRPC_ROUTE_KEYS = ['method', 'model_name'] as const
const ROUTE_KEYS = ['name', 'path', 'user_id', 'salt', 'hash', 'missing_user_id', 'allow_override', 'split', 'shadow', 'compare', 'record', 'metrics', 'analysis', 'control', 'rollout', 'bandit', 'overhead', 'api', 'judge', 'grpc'] as const
const HASHES: readonly HashAlgorithm[] = ['rendezvous', 'nginx']
export const OVERHEAD_MODES: readonly OverheadMode[] = ['off', 'metric', 'header']
const USER_ID_KINDS = ['header', 'query', 'cookie', 'body', 'metadata'] as const

/** Paths the router answers itself on the prediction port; routes may not take them. */
export const RESERVED_PATHS: readonly string[] = ['/feedback']

/**
 * `routes:` every route, each read whole; names must be unique and no two routes may take the
 * same path prefix or gRPC call. `models` are the names written under models, valid or not.
 */
export function readRoutes(c: Checker, value: unknown, models: Record<string, unknown> | undefined, overhead: OverheadMode): RouteConfig[] | undefined {
  if (value === undefined || value === null) return undefined // reported as required
  const list = c.list(value, ['routes'], 'routes ({ name, path, split })')
  if (list === undefined) return undefined
  if (list.length === 0) c.add(['routes'], 'must define at least one route')
  const routes: RouteConfig[] = []
  const names = new Map<string, number>()
  const paths: { path: string; index: number }[] = []
  const calls: { method: string; model: string | null; index: number }[] = []
  list.forEach((raw, i) => {
    const r = readRoute(c, raw, ['routes', i], models, overhead)
    if (r !== undefined) routes.push(r)
    // Uniqueness is checked on what was written, even when the route has other mistakes.
    const o = raw !== null && typeof raw === 'object' ? raw as Record<string, unknown> : {}
    if (typeof o.name === 'string' && o.name !== '') {
      const seen = names.get(o.name)
      if (seen !== undefined) c.add(['routes', i, 'name'], `duplicate route name "${o.name}" (also routes[${seen}].name): names label metrics and records, so each must be unique`)
      else names.set(o.name, i)
    }
    if (o.grpc !== undefined && o.grpc !== null) {
      const g = r?.grpc
      if (g != null) {
        for (const other of calls) {
          if (other.method === g.method && (other.model === null || g.model_name === null || other.model === g.model_name)) {
            c.add(['routes', i, 'grpc'], `calls to ${g.method}${g.model_name === null ? '' : ` for model_name "${g.model_name}"`} are also taken by routes[${other.index}]: a call must match exactly one route, so give each route its own model_name`)
          }
        }
        calls.push({ method: g.method, model: g.model_name, index: i })
      }
    } else if (typeof o.path === 'string' && o.path.startsWith('/')) {
      const p = o.path.length > 1 ? o.path.replace(/\/+$/, '') : o.path
      for (const other of paths) {
        if (overlaps(other.path, p)) {
          c.add(['routes', i, 'path'], `"${p}" overlaps routes[${other.index}].path "${other.path}": a request must match exactly one route, so use paths where neither is a prefix of the other`)
        }
      }
      paths.push({ path: p, index: i })
    }
  })
  return routes
}

function overlaps(a: string, b: string): boolean {
  if (a === b || a === '/' || b === '/') return true
  return a.startsWith(b + '/') || b.startsWith(a + '/')
}

function readRoute(c: Checker, raw: unknown, path: KeyPath, models: Record<string, unknown> | undefined, overheadDefault: OverheadMode): RouteConfig | undefined {
  const isGrpc = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && (raw as Record<string, unknown>).grpc != null
  const o = c.object(raw, path, ROUTE_KEYS, isGrpc ? ['name', 'split'] : ['name', 'path', 'split'])
  if (o === undefined) return undefined
  const name = c.string(o.name, [...path, 'name'])
  const grpc = isGrpc ? readGrpcRoute(c, o.grpc, [...path, 'grpc']) : null
  if (isGrpc && o.path !== undefined) c.add([...path, 'path'], 'a gRPC route is matched by grpc.method (and grpc.model_name), not by a URL path: leave path out')
  const routePath = isGrpc ? grpc?.method : readRoutePath(c, o.path, [...path, 'path'])
  const api = readApi(c, o.api, [...path, 'api'])
  if (isGrpc && api === 'openai') c.add([...path, 'api'], 'api: openai is for HTTP routes; a gRPC route speaks its service\'s protocol: remove api or grpc')
  const userId = readUserIdSources(c, o.user_id ?? (api === 'openai' ? OPENAI_USER_ID_DEFAULT : undefined), [...path, 'user_id'], isGrpc)
  const hash = c.oneOf(o.hash, [...path, 'hash'], HASHES, 'rendezvous')
  // nginx's split_clients key is "${user id}SALT": its salt defaults to empty, ours to the name.
  const salt = typeof o.salt === 'string' ? o.salt : c.string(o.salt, [...path, 'salt'], hash === 'nginx' ? '' : name ?? '')
  const allowOverride = c.boolean(o.allow_override, [...path, 'allow_override'], false)
  const split = readSplit(c, o.split, [...path, 'split'], models, hash)
  const missing = readMissing(c, o.missing_user_id, [...path, 'missing_user_id'], models)
  const shadow = readShadows(c, o.shadow, [...path, 'shadow'], models)
  const compare = readCompare(c, o.compare, [...path, 'compare'])
  const record = c.boolean(o.record, [...path, 'record'], false)
  const overhead = c.oneOf(o.overhead, [...path, 'overhead'], OVERHEAD_MODES, overheadDefault)
  const metrics = readMetrics(c, o.metrics, [...path, 'metrics'])
  const analysis = readAnalysis(c, o.analysis, [...path, 'analysis'], userId !== undefined && userId.length > 0, metrics)
  const rollout = readRollout(c, o.rollout, [...path, 'rollout'])
  const bandit = readBandit(c, o.bandit, [...path, 'bandit'])
  const judge = readJudge(c, o.judge, [...path, 'judge'], models, api)
  let control = c.string(o.control, [...path, 'control'], split?.[0]?.model)
  if (control !== undefined && split !== undefined && !split.some((s) => s.model === control)) {
    c.add([...path, 'control'], `must be a model in this route's split (${split.map((s) => s.model).join(', ')}), got "${control}"`)
    control = undefined
  }
  if (name === undefined || grpc === undefined || routePath === undefined || userId === undefined || salt === undefined || split === undefined || missing === undefined || shadow === undefined || compare === undefined || metrics === undefined || analysis === undefined || control === undefined || rollout === undefined || bandit === undefined || judge === undefined) return undefined
  if (!checkDecisions(c, { split, metrics, control, rollout, bandit, shadow, judge }, path)) return undefined
  if (api !== 'openai' && shadow.some((sh) => sh.stream !== 'as_requested')) {
    c.add([...path, 'shadow'], 'shadow[].stream applies to api: openai routes only: remove it, or set api: openai')
    return undefined
  }
  return { name, path: routePath, api, grpc, user_id: userId, salt, hash, missing_user_id: missing, allow_override: allowOverride, split, shadow, compare, record, overhead, metrics, analysis, control, rollout, bandit, judge }
}

function readGrpcRoute(c: Checker, value: unknown, path: KeyPath): GrpcRouteConfig | undefined {
  const o = c.object(value, path, GRPC_ROUTE_KEYS, ['method'])
  if (o === undefined) return undefined
  const method = c.string(o.method, [...path, 'method'])
  const modelName = o.model_name === undefined || o.model_name === null ? null : c.string(o.model_name, [...path, 'model_name'])
  if (method !== undefined && !/^\/[A-Za-z_][\w.]*\/[A-Za-z_]\w*$/.test(method)) {
    c.add([...path, 'method'], `must be a full gRPC method path /package.Service/Method such as "/inference.GRPCInferenceService/ModelInfer", got ${JSON.stringify(method)}`)
    return undefined
  }
  if (method === undefined || modelName === undefined) return undefined
  return { method, model_name: modelName }
}

function readRoutePath(c: Checker, value: unknown, path: KeyPath): string | undefined {
  const s = c.string(value, path)
  if (s === undefined) return undefined
  if (!/^[\x21-\x7e]*$/.test(s)) {
    c.add(path, `must be printable ASCII, as clients send it: write other characters percent-encoded (e.g. "/mod%C3%A8les" for "/modèles"), got ${JSON.stringify(s)}`)
    return undefined
  }
  if (!s.startsWith('/') || s.includes('?') || s.includes('#') || s.includes('//') || /(^|\/)\.\.?(\/|$)/.test(s)) {
    c.add(path, `must be a URL path prefix such as "/models/churn" (starts with /, no query, no . or .. segments), got ${JSON.stringify(s)}`)
    return undefined
  }
  const normalised = s.length > 1 ? s.replace(/\/+$/, '') : s
  // `/` may coexist with /feedback: POST /feedback is answered before routes are matched.
  if (normalised !== '/' && RESERVED_PATHS.some((r) => overlaps(r, normalised))) {
    c.add(path, `"${normalised}" overlaps a path the router serves itself (${RESERVED_PATHS.join(', ')})`)
    return undefined
  }
  return normalised
}

function readUserIdSources(c: Checker, value: unknown, path: KeyPath, isGrpc = false): UserIdSource[] | undefined {
  const raw = value === undefined || value === null ? [isGrpc ? 'metadata:x-user-id' : DEFAULTS.user_id] : typeof value === 'string' ? [value] : c.list(value, path, 'sources such as header:x-user-id')
  if (raw === undefined) return undefined
  if (raw.length === 0) c.add(path, 'must list at least one source, e.g. [header:x-user-id]')
  const out: UserIdSource[] = []
  raw.forEach((item, i) => {
    const p = Array.isArray(value) ? [...path, i] : path
    const spec = typeof item === 'string' ? item : undefined
    const colon = spec?.indexOf(':') ?? -1
    const kind = spec?.slice(0, colon)
    const name = spec?.slice(colon + 1) ?? ''
    if (spec === undefined || colon <= 0 || name === '' || !(USER_ID_KINDS as readonly string[]).includes(kind ?? '')) {
      c.add(p, isGrpc ? `must be metadata:NAME (gRPC call metadata, such as metadata:x-user-id), got ${describe(item)}` : `must be header:NAME, query:NAME, cookie:NAME or body:/json/pointer, got ${describe(item)}`)
      return
    }
    // gRPC metadata travels as HTTP/2 headers: a metadata source reads one (a -bin key base64-decoded).
    if (isGrpc !== (kind === 'metadata')) {
      c.add(p, isGrpc ? `a gRPC route reads the user id from call metadata: write metadata:NAME (e.g. metadata:x-user-id), got ${JSON.stringify(spec)}` : `metadata: sources are for gRPC routes (grpc: { method }); over HTTP write header:${name}`)
      return
    }
    if (kind === 'metadata') {
      out.push({ kind: 'header', name: name.toLowerCase(), spec })
      return
    }
    if (kind === 'body') {
      try {
        out.push({ kind: 'body', pointer: name, tokens: parseJsonPointer(name), spec })
      } catch (err) {
        c.add(p, `body source needs a JSON Pointer such as body:/user_id: ${(err as Error).message}`)
      }
      return
    }
    // HTTP header names are case-insensitive (RFC 9110 §5.1); Node lowercases incoming ones.
    out.push({ kind: kind as 'header' | 'query' | 'cookie', name: kind === 'header' ? name.toLowerCase() : name, spec })
  })
  return out
}
