import { createHash } from 'node:crypto'
import { StateFile } from '../state-file.js'
import type { RoutePlan } from '../plan/index.js'
import type { DecisionEntry, DecisionHost } from './host.js'
import type { RolloutState } from './rollout.js'

/** A route's decisions: what the engine keeps, saves and restores. */
export interface RouteDecisions {
  /** Hash of the route's decision definition: a change restarts the decision. */
  definition: string
  rollout: RolloutState | null
  bandit: { shares: Record<string, number>; winner: string | null; probability_best: Record<string, number>; expected_loss: Record<string, number> } | null
  history: DecisionEntry[]
  /** The last boundary this replica decided the route at (ms). */
  decidedAt?: number
}

/** A route's decisions as /admin/rollouts shows them: as of the weights in force. */
export type DecisionView = Pick<RouteDecisions, 'rollout' | 'bandit' | 'history'>

/** A copy of every route's decisions to show (the history copied: later notes do not reach it). */
export function snapshotOf(routes: Map<string, RouteDecisions>): Map<string, DecisionView> {
  return new Map([...routes].map(([name, d]) => [name, { rollout: d.rollout, bandit: d.bandit, history: d.history.slice() }]))
}

const STATE_VERSION = 1

/** The decisions' state file beside the records: a restart resumes from it. */
export class DecisionState {
  readonly #file: StateFile
  readonly #host: DecisionHost

  constructor(host: DecisionHost, path: string) {
    this.#host = host
    this.#file = new StateFile(path, (message) => host.log('warn', `decision state: ${message}`))
  }

  /** The saved decisions into `routes`; unreadable or of another version: logged, and none. */
  load(routes: Map<string, RouteDecisions>): void {
    const text = this.#file.read()
    if (text === undefined) return // no state yet
    try {
      const saved = JSON.parse(text) as { version: number; routes: Record<string, RouteDecisions> }
      if (saved.version !== STATE_VERSION) throw new Error(`version ${saved.version}, expected ${STATE_VERSION}`)
      for (const [route, d] of Object.entries(saved.routes)) routes.set(route, d)
    } catch (err) {
      this.#host.log('warn', `decision state in ${this.#file.path} cannot be read (${(err as Error).message}); decisions start over`)
    }
  }

  /** Writes the state atomically: a temp file, then a rename over the old one. */
  save(routes: Map<string, RouteDecisions>): Promise<void> {
    return this.#file.save(JSON.stringify({ version: STATE_VERSION, routes: Object.fromEntries(routes) }))
  }
}

/** The hash of what a route decides on: a change of it starts the decision over. */
export function definitionOf(route: RoutePlan): string {
  const c = route.config
  // The registered versions behind the arms are part of it (a new version is judged afresh); a
  // route without MLflow versions keeps the definition it always had.
  const arms = route.targets.slice(0, c.split.length)
  const versions = arms.some((t) => t.registry !== null) ? { versions: arms.map((t) => t.registry?.version ?? null) } : {}
  return createHash('sha256').update(JSON.stringify({ rollout: c.rollout, bandit: c.bandit, models: c.split.map((s) => s.model), ...versions })).digest('hex').slice(0, 16)
}
