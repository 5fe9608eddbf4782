// What a decision counts, the same for an HTTP request and a gRPC call: the missing-user-id
// counters, the assignment by its source, the user's first exposure (unit user) and, for
// feedback, the request id with the arm that answered it.
import type { AssignmentMemory } from '../evaluation/index.js'
import { unitHash } from '../experiment/index.js'
import type { Decision } from '../plan/index.js'
import type { Arm, RouteRuntime } from './runtime.js'

/** Counts decision `d` on `route`; its arm, or undefined when it refuses (no user id). */
export function countDecision(
  route: RouteRuntime,
  d: Decision,
  memory: AssignmentMemory,
  requestId: string,
): Arm | undefined {
  if (d.unknownOverride) route.missingCounters.unknown_override.inc()
  if (d.missing !== null) route.missingCounters[d.missing].inc()
  if (d.target < 0) return undefined
  const arm = route.targets[d.target] as Arm
  if (d.source === 'hash') {
    arm.assignedByHash.inc()
    arm.assigned.count++
    const users = arm.users.sample
    if (users !== null) users.see(unitHash(d.userId as string), d.target)
  } else if (d.source === 'override') arm.assignedByOverride.inc()
  else arm.assignedByMissing.inc()
  if (route.plan.remembers) memory.remember(requestId, route.name, arm.model, d.userId, arm.registry?.version)
  return arm
}
