// The listeners: `listen` (the prediction port, and `listen.grpc` with its TLS and client
// certificates) and `admin` (the admin API's port and who may reach it).
import type { Checker, KeyPath } from './check.js'
import { DEFAULTS } from './defaults.js'
import type { AdminEndpoint, Endpoint, GrpcEndpoint, ListenConfig } from './types.js'

const ENDPOINT_KEYS = ['host', 'port'] as const
const LISTEN_KEYS = ['host', 'port', 'grpc'] as const
const GRPC_LISTEN_KEYS = ['host', 'port', 'tls'] as const
const LISTEN_TLS_KEYS = ['cert_file', 'key_file', 'ca_file', 'client_auth'] as const
const CLIENT_AUTH = ['none', 'request', 'require'] as const
const ADMIN_KEYS = ['host', 'port', 'token_file', 'insecure', 'protect_metrics'] as const
/** Addresses only this machine can reach: an admin listener there needs no token. */
export const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost']

/** `admin:` the admin listener; off loopback it needs a token file or an explicit insecure: true. */
export function readAdmin(c: Checker, value: unknown): AdminEndpoint | undefined {
  const d = DEFAULTS.admin
  if (value === undefined || value === null) return { ...d, token_file: null, insecure: false, protect_metrics: false }
  const o = c.object(value, ['admin'], ADMIN_KEYS)
  if (o === undefined) return undefined
  const host = c.string(o.host, ['admin', 'host'], d.host)
  const port = c.number(o.port, ['admin', 'port'], { min: 0, max: 65535, integer: true, fallback: d.port })
  const tokenFile = c.string(o.token_file, ['admin', 'token_file'], undefined) ?? null
  const insecure = c.boolean(o.insecure, ['admin', 'insecure'], false)
  const protectMetrics = c.boolean(o.protect_metrics, ['admin', 'protect_metrics'], false)
  if (host === undefined || port === undefined) return undefined
  // Anyone who can reach the admin API can reload the config and steer rollouts.
  if (!LOOPBACK_HOSTS.includes(host) && tokenFile === null && !insecure) {
    c.add(['admin', 'host'], `"${host}" lets other machines reach the admin API (reload, rollouts): set admin.token_file to a file holding a bearer token, or admin.insecure: true to allow it without one`)
    return undefined
  }
  return { host, port, token_file: tokenFile, insecure, protect_metrics: protectMetrics }
}

/** `listen:` the prediction listener, and under `listen.grpc` the gRPC one with its TLS. */
export function readListen(c: Checker, value: unknown): ListenConfig | undefined {
  const fallback = DEFAULTS.listen
  if (value === undefined || value === null) return fallback
  const o = c.object(value, ['listen'], LISTEN_KEYS)
  if (o === undefined) return undefined
  const http = endpoint(c, { host: o.host, port: o.port }, ['listen'], fallback)
  const grpc = o.grpc === undefined || o.grpc === null ? null : readGrpcListen(c, o.grpc, http?.host ?? fallback.host)
  return http === undefined || grpc === undefined ? undefined : grpc === null ? http : { ...http, grpc }
}

function readGrpcListen(c: Checker, value: unknown, host: string): GrpcEndpoint | undefined {
  const path = ['listen', 'grpc']
  const o = c.object(value, path, GRPC_LISTEN_KEYS)
  if (o === undefined) return undefined
  const at = endpoint(c, { host: o.host, port: o.port }, path, { host, port: 8081 })
  if (o.tls === undefined || o.tls === null) return at
  const tlsPath = [...path, 'tls']
  const t = c.object(o.tls, tlsPath, LISTEN_TLS_KEYS, ['cert_file', 'key_file'])
  if (t === undefined) return undefined
  const cert = c.string(t.cert_file, [...tlsPath, 'cert_file'])
  const key = c.string(t.key_file, [...tlsPath, 'key_file'])
  const ca = t.ca_file === undefined || t.ca_file === null ? null : c.string(t.ca_file, [...tlsPath, 'ca_file'])
  const problemsBefore = c.problems.length
  const clientAuth = c.oneOf(t.client_auth, [...tlsPath, 'client_auth'], CLIENT_AUTH, 'none')
  if (c.problems.length > problemsBefore) return undefined
  // Client certificates are checked against ca_file alone: without it node would fall back to the
  // public roots, so any certificate from any public CA would pass. A CA with `none` would let
  // every client in while the file says who may: both are refused, saying what to write.
  if (clientAuth !== 'none' && ca === null) {
    c.add([...tlsPath, 'client_auth'], `client_auth: ${clientAuth} checks client certificates against ca_file: add ca_file (the PEM bundle of the CAs that issue your clients' certificates)`)
    return undefined
  }
  if (clientAuth === 'none' && ca !== null && ca !== undefined) {
    c.add([...tlsPath, 'ca_file'], 'ca_file is only used to check client certificates: add client_auth: require (or request), or remove ca_file')
    return undefined
  }
  if (at === undefined || cert === undefined || key === undefined || ca === undefined) return undefined
  return { ...at, tls: { cert_file: cert, key_file: key, ...(ca !== null ? { ca_file: ca } : {}), client_auth: clientAuth } }
}

function endpoint(c: Checker, value: unknown, path: KeyPath, fallback: Endpoint): Endpoint | undefined {
  if (value === undefined || value === null) return fallback
  const o = c.object(value, path, ENDPOINT_KEYS)
  if (o === undefined) return undefined
  const host = c.string(o.host, [...path, 'host'], fallback.host)
  const port = c.number(o.port, [...path, 'port'], { min: 0, max: 65535, integer: true, fallback: fallback.port })
  return host === undefined || port === undefined ? undefined : { host, port }
}
