/**
 * The order a router stops in, for one process and for the primary of many (`serve --workers`).
 * Each mode registers the parts it has; `stop()` runs them in this order whatever order they
 * started in, so the sequence is written once, here:
 *
 * - `decisions`: rollouts and bandits take no new step while the router drains (a step under way
 *   finishes meanwhile, and is awaited before `records`);
 * - `mlflow`: no new run or alias write (one under way finishes or is cut, as for decisions);
 * - `watcher`: the config file is no longer followed (a reload mid-drain would bind a new plan);
 * - `traffic`: the prediction listener (or the workers) stops accepting, in-flight requests and
 *   their shadows finish up to `shutdown_timeout_ms`, then their records are complete;
 * - `pools`: upstream connections close;
 * - `tracing`: the last spans go out, within what is left of the budget;
 * - `records`: what decisions and MLflow had under way is in, then the sink writes (or spools)
 *   everything it accepted;
 * - `admin`: last, so /readyz answers "not ready" and /metrics stays readable while it drains.
 */
export const STOP_ORDER = ['decisions', 'mlflow', 'watcher', 'traffic', 'pools', 'tracing', 'records', 'admin'] as const

export type PartName = typeof STOP_ORDER[number]

/** Stops one part; `remainingMs()` is what is left of the shutdown budget. */
export type StopPart = (remainingMs: () => number) => Promise<void> | void

/** One ordered shutdown, started at most once; a part that fails is logged and the rest still stop. */
export class Lifecycle {
  readonly #parts = new Map<PartName, StopPart[]>()
  #stopping: Promise<void> | undefined
  readonly #log: (message: string, err: unknown) => void

  constructor(log: (message: string, err: unknown) => void) {
    this.#log = log
  }

  /** Registers how a part stops (a part may have several stops, run in registration order). */
  add(name: PartName, stop: StopPart): void {
    const list = this.#parts.get(name)
    if (list === undefined) this.#parts.set(name, [stop])
    else list.push(stop)
  }

  /** Whether stop() has begun. */
  get isStopping(): boolean {
    return this.#stopping !== undefined
  }

  /** Stops every registered part in STOP_ORDER within `budgetMs()` (read when it begins); safe to call twice. */
  stop(budgetMs: () => number): Promise<void> {
    this.#stopping ??= this.#run(budgetMs())
    return this.#stopping
  }

  async #run(budgetMs: number): Promise<void> {
    const startedAt = performance.now()
    const remainingMs = (): number => Math.max(0, budgetMs - (performance.now() - startedAt))
    for (const name of STOP_ORDER) {
      for (const stop of this.#parts.get(name) ?? []) {
        try {
          await stop(remainingMs)
        } catch (err) {
          this.#log(`shutdown: stopping ${name} failed; stopping the rest`, err)
        }
      }
    }
  }
}

/**
 * How `serve` runs once it listens, in either mode: SIGHUP reloads the config and then reopens the
 * record files (the logrotate convention), SIGTERM or SIGINT ends the wait. The handlers are in
 * place before the banner is written, so a signal sent as soon as the router says it is up drains
 * instead of ending the process by its default action. Resolves with the signal.
 */
export async function serveUntilSignalled(opts: {
  readonly banner: string
  readonly out: NodeJS.WritableStream
  readonly onHangup: () => Promise<void>
}): Promise<NodeJS.Signals> {
  const onHup = (): void => { void opts.onHangup() }
  process.on('SIGHUP', onHup)
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
  })
  opts.out.write(opts.banner)
  const signal = await signalled
  process.off('SIGHUP', onHup)
  return signal
}
