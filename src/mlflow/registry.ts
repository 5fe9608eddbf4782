// Which registered version serves behind each model: `models.NAME.mlflow` pins a version or names
// an alias, and aliases are resolved through MLflow's Model Registry at load, on reload and every
// `mlflow.refresh`. The last versions resolved are kept in a file beside the records, so a router
// that restarts while MLflow is down serves (and records) the versions it knew.
import { StateFile } from '../state-file.js'
import type { Config, ModelRegistryRef } from '../config/types.js'
import type { MlflowClient } from './client.js'

/** A model's registered version as the registry gave it. */
export interface ResolvedVersion {
  readonly registered: string
  readonly version: string
  readonly alias: string | null
  /** The training run that logged it, and its MLflow 3 logged model (`models:/m-…`), when known. */
  readonly run_id: string | null
  readonly model_id: string | null
  readonly resolved_at: string
}

interface Entry {
  ref: ModelRegistryRef
  resolved: ResolvedVersion | null
  /** Why the last resolution failed; null after a success. */
  error: string | null
}

interface ModelVersionBody {
  model_version?: { name?: string; version?: string; run_id?: string; source?: string }
}

const STATE_VERSION = 1

export class Registry {
  readonly #state: StateFile
  readonly #entries = new Map<string, Entry>()
  /** Versions read from the state file: used for a ref the registry cannot be asked about. */
  readonly #saved = new Map<string, { ref: string; resolved: ResolvedVersion }>()

  constructor(stateFile: string, readonly log: (level: 'info' | 'warn', message: string) => void) {
    this.#state = new StateFile(stateFile, (message) => log('warn', `registry state: ${message}`))
    this.#load()
  }

  /** Model name → version, for every model whose version is known (pinned or resolved). */
  versions(): Map<string, string> {
    const out = new Map<string, string>()
    for (const [name, e] of this.#entries) {
      const v = e.resolved?.version ?? e.ref.version
      if (v !== null) out.set(name, v)
    }
    return out
  }

  /** What /admin/config shows: each model's reference and what it resolved to. */
  status(): Record<string, unknown> {
    return Object.fromEntries([...this.#entries].map(([name, e]) => [name, {
      registered_model: e.ref.model,
      ...(e.ref.alias !== null ? { alias: e.ref.alias } : {}),
      version: e.resolved?.version ?? e.ref.version,
      run_id: e.resolved?.run_id ?? null,
      resolved_at: e.resolved?.resolved_at ?? null,
      error: e.error,
    }]))
  }

  /** The resolved entry of one model (run and logged model ids, for linking). */
  get(model: string): ResolvedVersion | null {
    return this.#entries.get(model)?.resolved ?? null
  }

  /**
   * Resolves every `models.NAME.mlflow` of the config. A model whose registry call fails keeps its
   * last version (from this process or the state file); returns the models whose version changed
   * and what failed.
   */
  async resolve(config: Config, client: MlflowClient | null, attempts?: number): Promise<{ changed: string[]; errors: string[] }> {
    const changed: string[] = []
    const errors: string[] = []
    const wanted = new Map(Object.entries(config.models).filter(([, m]) => m.mlflow !== null).map(([name, m]) => [name, m.mlflow as ModelRegistryRef]))
    if (wanted.size === 0 && this.#entries.size === 0) return { changed, errors }
    for (const name of [...this.#entries.keys()]) if (!wanted.has(name)) this.#entries.delete(name)
    await Promise.all([...wanted].map(async ([name, ref]) => {
      let e = this.#entries.get(name)
      if (e === undefined || refKey(e.ref) !== refKey(ref)) {
        const saved = this.#saved.get(name)
        e = { ref, resolved: saved !== undefined && saved.ref === refKey(ref) ? saved.resolved : null, error: null }
        this.#entries.set(name, e)
      }
      const before = e.resolved?.version ?? ref.version
      if (client === null) return
      const r = await this.#ask(client, ref, attempts)
      const entry = e
      if (typeof r === 'string') {
        entry.error = r
        errors.push(`model ${name}: ${r}${entry.resolved !== null ? ` (keeps version ${entry.resolved.version})` : ''}`)
        return
      }
      entry.resolved = r
      entry.error = null
      if (before !== r.version) {
        changed.push(name)
        if (ref.alias !== null && before !== null) this.log('info', `model ${name}: MLflow alias ${ref.model}@${ref.alias} now points at version ${r.version} (was ${before}); its route's experiment starts over`)
        else if (ref.alias !== null) this.log('info', `model ${name}: MLflow alias ${ref.model}@${ref.alias} is version ${r.version}`)
      }
    }))
    await this.#save()
    return { changed, errors }
  }

  async #ask(client: MlflowClient, ref: ModelRegistryRef, attempts?: number): Promise<ResolvedVersion | string> {
    const r = ref.alias !== null
      ? await client.get<ModelVersionBody>('registered-models/alias', { name: ref.model, alias: ref.alias }, attempts)
      : await client.get<ModelVersionBody>('model-versions/get', { name: ref.model, version: ref.version as string }, attempts)
    const what = ref.alias !== null ? `${ref.model}@${ref.alias}` : `${ref.model} version ${ref.version}`
    if (!r.ok) return `cannot resolve ${what} in the MLflow registry: ${r.message}`
    const mv = r.body.model_version
    if (typeof mv?.version !== 'string' || mv.version === '') return `the MLflow registry answered for ${what} without a version`
    const logged = /^models:\/(m-[0-9a-f]+)$/.exec(mv.source ?? '')
    return {
      registered: ref.model,
      version: mv.version,
      alias: ref.alias,
      run_id: typeof mv.run_id === 'string' && mv.run_id !== '' ? mv.run_id : null,
      model_id: logged?.[1] ?? null,
      resolved_at: new Date().toISOString(),
    }
  }

  #load(): void {
    const text = this.#state.read()
    if (text === undefined) return
    try {
      const saved = JSON.parse(text) as { version: number; models: Record<string, { ref: string; resolved: ResolvedVersion }> }
      if (saved.version !== STATE_VERSION) throw new Error(`version ${saved.version}, expected ${STATE_VERSION}`)
      for (const [name, m] of Object.entries(saved.models)) if (typeof m?.ref === 'string' && typeof m.resolved?.version === 'string') this.#saved.set(name, m)
    } catch (err) {
      this.log('warn', `registry state in ${this.#state.path} cannot be read (${(err as Error).message}); aliases are resolved afresh`)
    }
  }

  #save(): Promise<void> {
    const models: Record<string, { ref: string; resolved: ResolvedVersion }> = {}
    for (const [name, e] of this.#entries) if (e.resolved !== null) models[name] = { ref: refKey(e.ref), resolved: e.resolved }
    return this.#state.save(JSON.stringify({ version: STATE_VERSION, models }))
  }
}

function refKey(ref: ModelRegistryRef): string {
  return ref.alias !== null ? `${ref.model}@${ref.alias}` : `${ref.model}/${ref.version ?? ''}`
}
