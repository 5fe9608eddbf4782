import { rendezvousHash } from '../assign/index.js'
import type { Plan, RoutePlan, ShadowPlan } from './plan.js'
import { readUserId, type MissingReason, type RequestView } from './user-id.js'

export type { RequestView } from './user-id.js'

/** How a request came to its model (the `source` label of modelsplit_assignments_total). */
export type AssignmentSource = 'hash' | 'override' | 'missing_user_id'

/**
 * What the router does with one request, and why. The caller owns the object and passes it in,
 * so deciding allocates nothing; `decide` overwrites every field.
 */
export interface Decision {
  /** Index in route.targets of the model that answers; -1 when the request is rejected. */
  target: number
  source: AssignmentSource
  userId: string | undefined
  /** Why the user id could not be used, or null when it was (or an override decided). */
  missing: MissingReason | null
  /** An override header named a model this route does not know; counted, then ignored. */
  unknownOverride: boolean
}

/** A fresh decision object for a caller to reuse. */
export function newDecision(): Decision {
  return { target: -1, source: 'hash', userId: undefined, missing: null, unknownOverride: false }
}

/**
 * Chooses the model: override header, then the user id's hash, then the missing_user_id policy.
 * Pure but for `Math.random` under `missing_user_id: random`; reads no transport types.
 */
export function decide(route: RoutePlan, request: RequestView, d: Decision, random: () => number = Math.random): void {
  d.target = -1
  d.source = 'hash'
  d.userId = undefined
  d.missing = null
  d.unknownOverride = false
  if (route.overrides.size > 0) {
    const forced = request.headers['x-modelsplit-model']
    if (typeof forced === 'string' && forced !== '') {
      const index = route.overrides.get(forced)
      if (index !== undefined) {
        d.target = index
        d.source = 'override'
        return
      }
      d.unknownOverride = true
    }
  }
  const id = readUserId(route.sources, request)
  if (id !== 'absent' && id !== 'body_not_json') {
    d.userId = id
    d.target = route.assigner.pick(id)
    return
  }
  d.missing = id
  d.source = 'missing_user_id'
  const policy = route.missing
  if (policy === 'reject') return
  d.target = policy === 'random' ? route.assigner.pickRandom(random()) : policy
}

/** The route whose path prefix matches a request path (segment-wise), if any. */
export function matchRoute<R extends { readonly path: string }>(routes: readonly R[], pathname: string): R | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i] as R
    const p = r.path
    if (pathname.startsWith(p) && (pathname.length === p.length || pathname.charCodeAt(p.length) === 47 /* / */ || p === '/')) return r
  }
  return undefined
}

/** Whether this user's requests are mirrored to a shadow: by hash, or at random without a user id. */
export function isShadowed(target: ShadowPlan, userId: string | undefined, random: () => number = Math.random): boolean {
  if (target.threshold >= 2 ** 32) return true
  const h = userId === undefined ? Math.floor(random() * 2 ** 32) : rendezvousHash(target.table, 0, userId)
  return h < target.threshold
}

/** The plan's route by name (admin and CLI look-ups; not for the request path). */
export function routeByName(plan: Plan, name: string): RoutePlan | undefined {
  return plan.routes.find((r) => r.name === name)
}
