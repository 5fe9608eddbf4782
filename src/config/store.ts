import { EventEmitter } from 'node:events'
import type { ConfigProblem } from '../errors.js'
import { compile, type Plan } from '../plan/index.js'
import { readConfigText, sameClientCa } from './load.js'
import { parseYaml } from './yaml.js'

export interface ReloadResult {
  readonly result: 'success' | 'failure' | 'unchanged'
  readonly sha256: string
  readonly problems?: readonly ConfigProblem[]
  readonly notes?: readonly string[]
}

export interface StoreOptions<R> {
  readonly file: string
  /** The state built from the first plan (already compiled by the caller). */
  readonly initial: R
  /** The compiled plan `initial` was built from, if `planOf(initial)` has decided weights on it. */
  readonly base?: Plan
  readonly planOf: (state: R) => Plan
  /**
   * Builds the state for a new plan (bind metrics, open a record file…) before it is swapped in.
   * If it throws, the reload fails like an invalid file: the old state keeps serving.
   */
  readonly prepare: (plan: Plan, old: R) => Promise<R>
}

/**
 * Owns the config in force: the current state, reloads (one at a time, each compiled by the one
 * compile path), and a 'change' event after each swap. Nothing from read to swap can throw out of
 * reload(): a failure keeps the old state, and the result says why with located problems.
 */
export class ConfigStore<R> extends EventEmitter<{ change: [R, R]; reload: [ReloadResult] }> {
  readonly file: string
  #current: R
  readonly #planOf: (state: R) => Plan
  readonly #prepare: (plan: Plan, old: R) => Promise<R>
  #reloading: Promise<ReloadResult> | undefined
  /** The plan as compiled from the file, before decided weights are laid over it. */
  #base: Plan

  constructor(opts: StoreOptions<R>) {
    super()
    this.file = opts.file
    this.#current = opts.initial
    this.#planOf = opts.planOf
    this.#prepare = opts.prepare
    this.#base = opts.base ?? opts.planOf(opts.initial)
  }

  /** The plan compiled from the file in force (the intent, without decided weights). */
  base(): Plan {
    return this.#base
  }

  /**
   * Builds the state again from the plan in force (decided weights changed): one at a time with
   * reloads. A failure keeps the state in force and is returned, never thrown.
   */
  async refresh(): Promise<{ ok: true } | { ok: false; error: string }> {
    while (this.#reloading !== undefined) await this.#reloading
    let done: (r: ReloadResult) => void = () => undefined
    this.#reloading = new Promise((resolve) => { done = resolve })
    const old = this.#current
    try {
      const next = await this.#prepare(this.#base, old)
      this.#current = next
      this.#emitSafely('change', next, old)
      return { ok: true }
    } catch (err) {
      return { ok: false, error: (err as Error)?.message ?? String(err) }
    } finally {
      const sha = this.#planOf(this.#current).loaded.sha256
      this.#reloading = undefined
      done({ result: 'unchanged', sha256: sha })
    }
  }

  /** The state in force: read once per request and carried to its end. */
  current(): R {
    return this.#current
  }

  /** Re-reads and applies the file; a reload asked for while one runs waits for it, then reads again. */
  async reload(): Promise<ReloadResult> {
    while (this.#reloading !== undefined) await this.#reloading
    this.#reloading = this.#reload()
    try {
      return await this.#reloading
    } finally {
      this.#reloading = undefined
    }
  }

  async #reload(): Promise<ReloadResult> {
    let result: ReloadResult
    const old = this.#current
    const oldSha = this.#planOf(old).loaded.sha256
    try {
      const text = await readConfigText(this.file)
      const compiled = text.ok ? compile(text.text, this.file) : text
      const fixed = compiled.ok && text.ok ? [...adminChanges(this.#base, compiled.plan, text.text), ...grpcTlsChanges(this.#base, compiled.plan, text.text)] : []
      if (!compiled.ok) {
        result = { result: 'failure', sha256: oldSha, problems: compiled.problems }
      } else if (fixed.length > 0) {
        result = { result: 'failure', sha256: oldSha, problems: fixed }
      } else if (compiled.plan.loaded.sha256 === oldSha && compiled.plan.loaded.grpcTls?.sha256 === this.#planOf(old).loaded.grpcTls?.sha256) {
        // A renewed certificate comes with the same file text: its bytes are compared too.
        result = { result: 'unchanged', sha256: oldSha }
      } else {
        const next = await this.#prepare(compiled.plan, old)
        this.#base = compiled.plan
        this.#current = next // one reference swap: in-flight requests keep the state they started with
        result = { result: 'success', sha256: compiled.plan.loaded.sha256, ...notesOf(this.#planOf(old), compiled.plan) }
        this.#emitSafely('change', next, old)
      }
    } catch (err) {
      result = { result: 'failure', sha256: oldSha, problems: [{ file: this.file, path: '', message: `cannot apply the config: ${(err as Error)?.message ?? String(err)}` }] }
    }
    this.#emitSafely('reload', result)
    return result
  }

  #emitSafely<K extends 'change' | 'reload'>(event: K, ...args: K extends 'change' ? [R, R] : [ReloadResult]): void {
    try {
      ;(this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args)
    } catch {
      // A listener's failure is its own; the swap has happened and stays.
    }
  }
}

function notesOf(old: Plan, next: Plan): { notes?: readonly string[] } {
  const a = old.config
  const b = next.config
  const notes: string[] = []
  if (a.listen.port !== b.listen.port || a.listen.host !== b.listen.host || a.listen.grpc?.port !== b.listen.grpc?.port || a.listen.grpc?.host !== b.listen.grpc?.host) {
    notes.push('listen addresses take effect on restart only')
  }
  const authWas = a.listen.grpc?.tls?.client_auth
  const authNow = b.listen.grpc?.tls?.client_auth
  if (authWas !== undefined && authNow !== undefined && authWas !== authNow) {
    notes.push(`the gRPC listener's client_auth is now ${authNow} (was ${authWas}): new connections are held to it, and open ones it would have refused are sent GOAWAY (their calls under way finish)`)
  }
  const tls = next.loaded.grpcTls
  if (tls !== undefined && old.loaded.grpcTls !== undefined && tls.sha256 !== old.loaded.grpcTls.sha256) {
    notes.push(!sameClientCa(old.loaded.grpcTls, tls)
      ? 'the gRPC listener\'s certificate, key and CA were read again: new connections get them, and open ones whose client certificate no CA of the new ca_file issued are sent GOAWAY (their calls under way finish)'
      : 'the gRPC listener\'s certificate, key and CA were read again: new connections get them, open ones keep theirs')
  }
  return notes.length > 0 ? { notes } : {}
}

/**
 * Whether the gRPC listener speaks TLS is fixed when its socket is made. A file that turns TLS on
 * or off is refused whole (as the admin settings): a reload that said success while clients still
 * came in the old way would be worse than one that fails. Its certificate, key and CA files are
 * read again instead, and client_auth moves with a reload (GrpcListener.useTls).
 */
function grpcTlsChanges(old: Plan, next: Plan, text: string): ConfigProblem[] {
  const a = old.config.listen.grpc
  const b = next.config.listen.grpc
  if (a === undefined || b === undefined) return [] // no listener, or one added or removed: a restart (listen addresses)
  if ((a.tls === undefined) === (b.tls === undefined)) return []
  const was = a.tls === undefined ? 'cleartext' : 'TLS'
  const now = b.tls === undefined ? 'cleartext' : 'TLS'
  const { lineOf } = parseYaml(text, next.loaded.file)
  const path = ['listen', 'grpc', 'tls']
  return [{
    file: next.loaded.file,
    line: lineOf(path) ?? lineOf(['listen', 'grpc']),
    path: path.join('.'),
    message: `the gRPC listener's TLS is fixed at start: it still runs ${was}, and this file says ${now}; restart the router to change it, or put the old setting back (nothing of this file was applied)`,
  }]
}

const ADMIN_FIXED = ['host', 'port', 'token_file', 'insecure', 'protect_metrics'] as const

/**
 * The admin listener's settings are fixed at start: its socket is bound once, and a check that
 * followed a reload while the socket did not could drop the token on a public address. A file
 * that changes them is refused whole, each changed key located.
 */
function adminChanges(old: Plan, next: Plan, text: string): ConfigProblem[] {
  const a = old.config.admin
  const b = next.config.admin
  const changed = ADMIN_FIXED.filter((k) => a[k] !== b[k])
  if (changed.length === 0) return []
  const { lineOf } = parseYaml(text, next.loaded.file)
  return changed.map((k) => ({
    file: next.loaded.file,
    line: lineOf(['admin', k]),
    path: `admin.${k}`,
    message: `the admin listener's settings are fixed at start: it still runs with ${k}: ${JSON.stringify(a[k])}, and this file says ${JSON.stringify(b[k])}; restart the router to change it, or put the old value back (nothing of this file was applied)`,
  }))
}
