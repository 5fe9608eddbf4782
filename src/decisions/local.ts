import { LATENCY_BUCKETS } from '../metrics/index.js'
import { answered, type Arm, type RouteRuntime } from '../proxy/runtime.js'
import { experimentOf, type RouteExperiment } from '../evaluation/index.js'
import type { DecisionData, DecisionHost } from './host.js'
import { bucketQuantile } from './histogram.js'
import type { ShadowEvidence } from './promotion.js'
import type { ArmWindow } from './rollout.js'
import type { WinTally } from '../stats/index.js'

interface Snapshot {
  readonly requests: number
  readonly errors: number
  readonly counts: Float64Array
  readonly total: number
}

/** This replica's own counters and tallies (single process). */
export class LocalData implements DecisionData {
  readonly #host: DecisionHost
  readonly #snaps = new Map<string, { at: number; models: Map<string, Snapshot> }>()

  constructor(host: DecisionHost) {
    this.#host = host
  }

  async experiment(route: RouteRuntime): Promise<RouteExperiment> {
    return experimentOf(route.plan, { input: (r) => this.#host.experiment(r) })
  }


  /**
   * Marks where a step's window starts: the counters now. While the router is being built there
   * are none yet, and a window with no start counts from zero, i.e. since this process began
   * (counters are per process, so after a restart that is all there is).
   */
  startWindow(routeName: string, at: number): void {
    let route: RouteRuntime | undefined
    try {
      route = this.#host.runtime().routes.find((r) => r.name === routeName)
    } catch {
      route = undefined
    }
    this.#snaps.set(routeName, { at, models: route === undefined ? new Map() : this.#snapshot(route) })
  }

  #snapshot(route: RouteRuntime): Map<string, Snapshot> {
    const out = new Map<string, Snapshot>()
    for (const arm of route.targets) out.set(arm.model, snapArm(arm))
    return out
  }

  /** Each arm's requests, errors and p99 since the step began (or since this process began). */
  async window(route: RouteRuntime, since: number): Promise<Map<string, ArmWindow>> {
    const known = this.#snaps.get(route.name)
    const base = known !== undefined && known.at === since ? known : { at: since, models: new Map<string, Snapshot>() }
    const now = this.#snapshot(route)
    const out = new Map<string, ArmWindow>()
    for (const [model, b] of now) {
      const a = base.models.get(model) ?? { requests: 0, errors: 0, counts: new Float64Array(b.counts.length), total: 0 }
      const counts = b.counts.map((c, i) => c - (a.counts[i] ?? 0))
      out.set(model, { requests: b.requests - a.requests, errors: b.errors - a.errors, p99: bucketQuantile(LATENCY_BUCKETS, counts, b.total - a.total, 0.99) })
    }
    return out
  }

  async shadow(route: RouteRuntime, model: string, control: string): Promise<ShadowEvidence> {
    const shadow = route.shadows.find((s) => s.model === model)
    const c = shadow?.comparisons.get(control)
    const arm = route.targets.find((t) => t.model === control)
    const { requests, errors } = answered(shadow?.byCode ?? [])
    return {
      compared: (c?.agree.value ?? 0) + (c?.disagree.value ?? 0),
      agreed: c?.agree.value ?? 0,
      requests,
      errors,
      shadowP99: shadow === undefined ? null : bucketQuantile(LATENCY_BUCKETS, shadow.duration.counts, shadow.duration.count, 0.99),
      controlP99: arm === undefined ? null : bucketQuantile(LATENCY_BUCKETS, arm.duration.counts, arm.duration.count, 0.99),
    }
  }

  /** The judge's own tallies (this process's verdicts since it started). */
  async judged(route: RouteRuntime, primary: string, shadow: string): Promise<WinTally> {
    return this.#host.judged?.(route.name, primary, shadow) ?? { wins: 0, ties: 0, losses: 0 }
  }

}

function snapArm(arm: Arm): Snapshot {
  const { requests, errors } = answered(arm.byCode)
  return { requests, errors, counts: Float64Array.from(arm.duration.counts), total: arm.duration.count }
}

