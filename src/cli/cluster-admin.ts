import type { Worker } from 'node:cluster'
import type { AdminDeps, LlmCounts, ShadowCounts, ShadowPair } from '../admin/index.js'
import { sumLlmCounts } from '../experiment/index.js'
import type { OperatorAction } from '../decisions/host.js'
import { WorkerMetrics, type MetricsSnapshot } from '../metrics/index.js'
import type { DeliveryStatus } from '../record/delivery.js'
import type { Router } from '../server.js'

// `serve --workers`: what the primary's admin listener asks its workers. Every worker runs the
// router, decision engine included (with evaluation.prometheus each decides from the fleet's
// figures), and has the admin handlers of a single process; the primary serves those same
// handlers (admin/index.ts) with answers it asks the workers for over IPC.

/** A question of the primary's admin to a worker; the worker answers `{ ms: 'answer', id, value }`. */
export type AdminQuestion =
  | { readonly ms: 'metrics'; readonly id: number }
  | { readonly ms: 'rollouts'; readonly id: number; readonly route?: string }
  | { readonly ms: 'rollout-act'; readonly id: number; readonly route: string; readonly action: OperatorAction }
  | { readonly ms: 'readiness'; readonly id: number }
  | { readonly ms: 'shadows'; readonly id: number }
  | { readonly ms: 'llm'; readonly id: number }

/**
 * Asks every listening worker; resolves with the answers in by `timeoutMs`. A worker that exits
 * meanwhile is not waited for.
 */
export type AskEach = <T>(make: (id: number) => AdminQuestion, timeoutMs: number) => Promise<Map<Worker, T>>

/** What the primary's admin takes from its workers, and the hook that keeps a dead worker's counts. */
export type FromWorkers = Required<Pick<AdminDeps, 'metricsText' | 'rollouts' | 'readiness' | 'shadows' | 'llm'>> & { retire(worker: Worker): void }

type ActResult = Awaited<ReturnType<NonNullable<AdminDeps['rollouts']>['act']>>
type SinkState = DeliveryStatus | { readonly sink: string }

/** How long a scrape waits for a worker before counting it as it last answered (Prometheus' own timeout is 10 s). */
export const SCRAPE_WAIT_MS = 1000
/** How long /readyz waits for the workers' sink states (a Kubernetes probe gives up after 1 s). */
const READY_WAIT_MS = 500
const STATUS_WAIT_MS = 2000
const ACT_WAIT_MS = 10_000

/** The worker's side: one admin question, answered from this worker's router. */
export async function answerAdmin(router: Router, q: AdminQuestion): Promise<unknown> {
  switch (q.ms) {
    case 'metrics': return router.metrics.registry.getMetricsAsJSON()
    case 'rollouts': return q.route === undefined ? router.decisions.list() : router.decisions.status(q.route) ?? null
    case 'rollout-act': return router.decisions.act(q.route, q.action)
    case 'shadows': return router.shadowCounts()
    case 'llm': return router.llmCounts()
    case 'readiness': {
      // The single process's own /readyz, so the sink's state reads the same in both modes.
      const res = await router.admin.inject({ method: 'GET', url: '/readyz' })
      return (res.json() as { sink?: unknown }).sink ?? null
    }
  }
}

/** The primary's side: the admin deps that come from the workers, and what it keeps of those that died. */
export function primaryAdmin(askEach: AskEach): FromWorkers {
  const metrics = new WorkerMetrics()
  // The last list a worker gave: what /admin/rollouts shows in the instant no worker can answer.
  let known: Record<string, unknown>[] = []
  return {
    // A scrape never waits on a dying worker, and never loses what a dead one counted.
    async metricsText() {
      for (const [w, snapshot] of await askEach<MetricsSnapshot>((id) => ({ ms: 'metrics', id }), SCRAPE_WAIT_MS)) metrics.seen(w.id, snapshot)
      return metrics.exposition()
    },
    retire: (worker) => metrics.retire(worker.id),
    rollouts: {
      // Every worker decides alike; the oldest one answers (a worker that died meanwhile leaves it to the next).
      async list() {
        const answer = oldest(await askEach<Record<string, unknown>[]>((id) => ({ ms: 'rollouts', id }), STATUS_WAIT_MS))
        if (answer !== undefined) known = answer
        return known
      },
      async get(route) {
        const answer = oldest(await askEach<Record<string, unknown> | null>((id) => ({ ms: 'rollouts', id, route }), STATUS_WAIT_MS))
        return answer === undefined ? known.find((r) => r.route === route) : answer ?? undefined
      },
      // Every worker takes the action at once (each serves its share of the users with the weights
      // it decides); they carry the same state, so they answer alike: the oldest speaks for all.
      async act(route, action) {
        const answer = oldest(await askEach<ActResult>((id) => ({ ms: 'rollout-act', id, route, action }), ACT_WAIT_MS))
        return answer ?? { ok: false, status: 503, message: 'no worker answered (they are restarting): try again' }
      },
    },
    // Each worker compared the shadows of its own share of the requests: the replica's counts are their sums.
    async shadows() {
      return sumShadows([...(await askEach<ShadowCounts>((id) => ({ ms: 'shadows', id }), STATUS_WAIT_MS)).values()])
    },
    // Each worker served its share of the users: an arm's requests, tokens and cost are the sums.
    async llm() {
      return sumLlmCounts([...(await askEach<LlmCounts>((id) => ({ ms: 'llm', id }), STATUS_WAIT_MS)).values()])
    },
    // Each worker has its own connection to the sink and its own spool: /readyz says how the
    // replica's records fare (spooling if any worker spools, bytes and drops summed), and each worker's.
    async readiness() {
      const answers = await askEach<SinkState | null>((id) => ({ ms: 'readiness', id }), READY_WAIT_MS)
      const byWorker = [...answers].sort(([a], [b]) => a.id - b.id).filter((e): e is [Worker, SinkState] => e[1] !== null)
      if (byWorker.length === 0) return {}
      return { sink: mergeSinks(byWorker.map(([, s]) => s)), sink_by_worker: Object.fromEntries(byWorker.map(([w, s]) => [w.id, s])) }
    },
  }
}

function oldest<T>(answers: Map<Worker, T>): T | undefined {
  return [...answers].sort(([a], [b]) => a.id - b.id)[0]?.[1]
}

/** The workers' sink states as one, in the shape a single process shows. */
export function mergeSinks(states: readonly SinkState[]): SinkState {
  const delivering = states.filter((s): s is DeliveryStatus => 'state' in s)
  const first = delivering[0]
  if (first === undefined) return states[0] as SinkState
  return {
    ...first,
    state: delivering.some((s) => s.state === 'spooling') ? 'spooling' : delivering.some((s) => s.state === 'starting') ? 'starting' : 'delivering',
    reachable: delivering.every((s) => s.reachable),
    spooled_bytes: delivering.reduce((n, s) => n + s.spooled_bytes, 0),
    last_error: delivering.find((s) => s.last_error !== null)?.last_error ?? null,
    dropped: delivering.reduce((n, s) => n + s.dropped, 0),
  }
}

/**
 * Every worker's comparison counts, and the judge's verdicts, summed per route and (primary, shadow)
 * pair, in first-seen order: each worker judged the pairs of its own share of the requests.
 */
export function sumShadows(answers: readonly ShadowCounts[]): ShadowCounts {
  const routes = new Map<string, Map<string, ShadowPair>>()
  for (const answer of answers) {
    for (const r of answer) {
      let pairs = routes.get(r.route)
      if (pairs === undefined) routes.set(r.route, pairs = new Map())
      for (const p of r.pairs) {
        const key = `${p.primary}\u0000${p.shadow}`
        const sum = pairs.get(key)
        if (sum === undefined) pairs.set(key, { ...p, ...(p.judged !== undefined ? { judged: { ...p.judged } } : {}) })
        else {
          sum.agree += p.agree
          sum.disagree += p.disagree
          sum.error += p.error
          if (p.judged !== undefined) {
            const j = sum.judged ??= { wins: 0, ties: 0, losses: 0 }
            j.wins += p.judged.wins
            j.ties += p.judged.ties
            j.losses += p.judged.losses
          }
        }
      }
    }
  }
  return [...routes].map(([route, pairs]) => ({ route, pairs: [...pairs.values()] }))
}
