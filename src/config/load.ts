import { X509Certificate, createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createSecureContext } from 'node:tls'
import { dirname, resolve } from 'node:path'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { formatPath, type KeyPath } from './check.js'
import { validateConfig } from './schema.js'
import { checkSinkFiles, resolveSinkPaths } from './sink.js'
import type { GrpcEndpoint, GrpcTlsMaterial, ListenConfig, LoadedConfig } from './types.js'
import { parseYaml, YamlSyntaxError } from './yaml.js'

/** A validated config with a way back to the lines of its file, or every located problem. */
export type ReadResult =
  | { readonly ok: true; readonly loaded: LoadedConfig; lineOf(path: KeyPath): number | undefined }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly cause?: unknown }

/** Parses and validates config text; never throws for anything the text contains. */
export function readConfig(text: string, file: string): ReadResult {
  let parsed
  try {
    parsed = parseYaml(text, file)
  } catch (err) {
    if (err instanceof YamlSyntaxError) return { ok: false, problems: [{ file, line: err.line, path: '', message: err.message }], cause: err }
    throw err
  }
  const { config, problems } = validateConfig(parsed.value)
  if (config === undefined) {
    return { ok: false, problems: problems.map((p) => ({ file, line: parsed.lineOf(p.path), path: formatPath(p.path), message: p.message })) }
  }
  // Relative paths in the file are relative to the file, as in Prometheus's config, so the
  // router behaves the same whatever directory it was started from.
  const recording = resolveSinkPaths({ ...config.recording, path: resolve(dirname(file), config.recording.path) }, dirname(file))
  const tokenFile = config.admin.token_file === null ? null : resolve(dirname(file), config.admin.token_file)
  const mlflowToken = config.mlflow?.token_file == null ? null : resolve(dirname(file), config.mlflow.token_file)
  const listen = resolveListenTls(config.listen, dirname(file))
  const grpcTls = readListenTls(listen.grpc)
  const unreadable = [...checkSinkFiles(recording), ...checkTokenFile(tokenFile), ...checkTokenFile(mlflowToken, ['mlflow', 'token_file'], 1), ...grpcTls.problems]
  if (unreadable.length > 0) {
    return { ok: false, problems: unreadable.map((p) => ({ file, line: parsed.lineOf(p.path), path: formatPath(p.path), message: p.message })) }
  }
  const resolved = { ...config, listen, recording, admin: { ...config.admin, token_file: tokenFile }, mlflow: config.mlflow === null ? null : { ...config.mlflow, token_file: mlflowToken } }
  const sha256 = createHash('sha256').update(text).digest('hex')
  const material = grpcTls.material !== undefined ? { grpcTls: grpcTls.material } : {}
  return { ok: true, loaded: deepFreeze({ config: resolved, file, sha256, ...material }), lineOf: parsed.lineOf }
}

/** The admin token file must hold a token: read at compile so a bad one is a config problem. */
function checkTokenFile(file: string | null, path: (string | number)[] = ['admin', 'token_file'], minLength = 16): { path: (string | number)[]; message: string }[] {
  if (file === null) return []
  let token: string
  try {
    token = readFileSync(file, 'utf8').trim()
  } catch (err) {
    return [{ path, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }]
  }
  if (minLength === 1 && token.length === 0) return [{ path, message: `${file} holds no token` }]
  if (token.length < minLength) return [{ path, message: `${file} holds ${token.length === 0 ? 'no token' : 'a token under 16 characters'}: write a long random one, e.g. openssl rand -hex 32` }]
  return []
}

function resolveListenTls(listen: ListenConfig, dir: string): ListenConfig {
  const tls = listen.grpc?.tls
  if (listen.grpc === undefined || tls === undefined) return listen
  const files = { cert_file: resolve(dir, tls.cert_file), key_file: resolve(dir, tls.key_file), ...(tls.ca_file !== undefined ? { ca_file: resolve(dir, tls.ca_file) } : {}) }
  return { ...listen, grpc: { ...listen.grpc, tls: { ...files, client_auth: tls.client_auth } } }
}

type Located = { path: KeyPath; message: string }

/**
 * The gRPC listener's certificate, key and CA bundle are read and checked at compile, so a missing
 * file, a file that is not PEM or a key that does not match its certificate is a located config
 * problem, not a failed start or a reload that breaks the listener. The bytes read here are what
 * the listener is given (at start, or when the reload that read them commits): a file replaced
 * between the check and the swap cannot slip in unchecked.
 */
function readListenTls(grpc: GrpcEndpoint | undefined): { material?: GrpcTlsMaterial; problems: Located[] } {
  const tls = grpc?.tls
  if (tls === undefined) return { problems: [] }
  const read = (key: 'cert_file' | 'key_file' | 'ca_file', file: string): Buffer | Located => {
    try {
      return readFileSync(file)
    } catch (err) {
      return { path: ['listen', 'grpc', 'tls', key], message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }
    }
  }
  const cert = read('cert_file', tls.cert_file)
  const key = read('key_file', tls.key_file)
  const ca = tls.ca_file === undefined ? undefined : read('ca_file', tls.ca_file)
  const problems = [cert, key, ca].filter((x): x is Located => x !== undefined && !Buffer.isBuffer(x))
  if (problems.length > 0 || !Buffer.isBuffer(cert) || !Buffer.isBuffer(key) || (ca !== undefined && !Buffer.isBuffer(ca))) return { problems }
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    // OpenSSL names the failure: no PEM certificate, no PEM key, or a key of another certificate.
    problems.push({ path: ['listen', 'grpc', 'tls'], message: `${tls.cert_file} and ${tls.key_file} are not a PEM certificate chain and its private key (${(err as Error).message})` })
  }
  if (ca !== undefined && tls.ca_file !== undefined) {
    const bad = checkCaBundle(ca, tls.ca_file)
    if (bad !== undefined) problems.push({ path: ['listen', 'grpc', 'tls', 'ca_file'], message: bad })
  }
  if (problems.length > 0) return { problems }
  const sha256 = createHash('sha256')
  for (const b of [cert, key, ca ?? Buffer.alloc(0)]) sha256.update(String(b.length)).update(':').update(b)
  return { material: { cert, key, ...(ca !== undefined ? { ca } : {}), sha256: sha256.digest('hex') }, problems }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g

/** The PEM certificate blocks of a bundle, in order (what checkCaBundle checks, each parsed). */
export function pemCertificates(pem: Buffer): string[] {
  return pem.toString('latin1').match(PEM_CERT) ?? []
}

/**
 * OpenSSL skips what it cannot parse in a CA bundle without a word, so a bundle of garbage would
 * refuse every client (with `require`) with nothing to say why: each PEM block is parsed here.
 */
function checkCaBundle(ca: Buffer, file: string): string | undefined {
  const blocks = pemCertificates(ca)
  if (blocks.length === 0) return `${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----): write the CA certificates that issue your clients' certificates`
  for (let i = 0; i < blocks.length; i++) {
    try {
      new X509Certificate(blocks[i] as string)
    } catch (err) {
      return `${file}: certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate (${(err as Error).message})`
    }
  }
  return undefined
}

/** Reads a config file's text; an unreadable file is a located problem. */
export async function readConfigText(file: string): Promise<{ ok: true; text: string } | { ok: false; problems: readonly ConfigProblem[] }> {
  try {
    return { ok: true, text: await readFile(file, 'utf8') }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return { ok: false, problems: [{ file, path: '', message: `cannot read the file (${code ?? (err as Error).message})` }] }
  }
}

/** Parses and validates config text; throws one ConfigError listing every problem with its line. */
export function parseConfig(text: string, file: string): LoadedConfig {
  const r = readConfig(text, file)
  if (!r.ok) throw new ConfigError(r.problems, { cause: r.cause })
  return r.loaded
}

/** Reads, parses and validates a config file. */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  const t = await readConfigText(file)
  if (!t.ok) throw new ConfigError(t.problems)
  return parseConfig(t.text, file)
}

export function deepFreeze<T>(value: T): T {
  // Typed arrays cannot be frozen (and Buffers are scratch space by design): leave views alone.
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** Whether two reads of the gRPC listener's TLS files hold the same client CAs (ca_file's bytes). */
export function sameClientCa(a: GrpcTlsMaterial | undefined, b: GrpcTlsMaterial | undefined): boolean {
  const x = a?.ca
  const y = b?.ca
  return x === undefined || y === undefined ? x === y : x.equals(y)
}
