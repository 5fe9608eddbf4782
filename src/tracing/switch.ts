import { sameTracing, type Tracing, type TracingPlan } from './types.js'

/**
 * The tracing in force, changed by reloads: the SDK is loaded only when `tracing` is configured, and
 * a reload that changes it swaps the provider (the old one exports what it holds and stops). Changes
 * run one after another; `holder.tracing` is what requests read.
 */
export class TracingSwitch {
  #chain: Promise<void> = Promise.resolve()
  readonly #holder: { tracing: Tracing | null }
  readonly #onError: (err: unknown) => void

  constructor(holder: { tracing: Tracing | null }, onError: (err: unknown) => void) {
    this.#holder = holder
    this.#onError = onError
  }

  /** Puts `wanted` in force (null: off) once the changes before it are done. */
  use(wanted: TracingPlan | null): Promise<void> {
    const holder = this.#holder
    this.#chain = this.#chain.then(async () => {
      const old = holder.tracing
      if (sameTracing(old?.plan ?? null, wanted)) return
      holder.tracing = wanted === null ? null : (await import('./index.js')).startTracing(wanted)
      await old?.shutdown()
    }).catch((err: unknown) => { setImmediate(() => this.#onError(err)) })
    return this.#chain
  }

  /** Exports the last spans and stops, after any change under way, within `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void> {
    return this.#chain.then(() => this.#holder.tracing?.shutdown(timeoutMs))
  }
}
