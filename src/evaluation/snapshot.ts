import { RouteAccumulator, type RouteSpec, type WeightPeriod } from '../experiment/index.js'
import type { RoutePlan } from '../plan/index.js'
import type { Totals } from '../stats/index.js'
import type { TallyView } from './experiments.js'
import type { Tally } from './tally.js'

/** One route's experiment in one process, as plain data (it crosses the cluster's IPC). */
export interface RouteSnapshot {
  readonly route: string
  readonly spec: RouteSpec
  readonly assigned: readonly number[]
  readonly periods: readonly WeightPeriod[]
  readonly cells: readonly (readonly [model: string, metric: string, totals: Totals, sum: readonly number[], count: readonly number[]])[]
  /** The user sample: its level and its users as flat [hash, arm, period] triples. */
  readonly users: { readonly level: number; readonly entries: readonly number[] }
}

/** A process's tally as plain data: every route's experiment. */
export interface TallySnapshot {
  readonly routes: readonly RouteSnapshot[]
}

/** The snapshot of one tally. */
export function snapshotTally(tally: Tally): TallySnapshot {
  return {
    routes: tally.routes().map((acc) => ({
      route: acc.route,
      spec: acc.spec,
      assigned: acc.assigned.map((a) => a.count),
      periods: acc.periods,
      cells: [...acc.cells].map(([key, c]) => {
        const [model, metric] = key.split('\u0000') as [string, string]
        return [model, metric, c.acc.totals(), Array.from(c.sum), Array.from(c.count)] as const
      }),
      users: { level: acc.users.level, entries: acc.users.entries().flat() },
    })),
  }
}

/**
 * Merges two stable totals (Chan, Golub & LeVeque 1979's pairwise update): the merged mean and
 * M2 are what one accumulator fed both samples would hold, to rounding, without the raw values.
 */
export function mergeTotals(a: Totals, b: Totals): Totals {
  if (b.n === 0) return a
  if (a.n === 0) return b
  const n = a.n + b.n
  // b's mean expressed against a's shift: the shifts are close, so their difference is exact.
  const delta = ((b.shift - a.shift) + b.offset) - a.offset
  return {
    n,
    sum: a.sum + b.sum,
    shift: a.shift,
    offset: a.offset + (delta * b.n) / n,
    m2: a.m2 + b.m2 + (delta * delta * a.n * b.n) / n,
  }
}

/**
 * One route's experiment from every worker's: requests, period starts and bucket totals add,
 * stable totals merge, and the user samples unite at the highest level any worker reached (a user
 * seen by two workers counts once, at its earliest period). Sequential minima are each worker's
 * own and do not carry over: the merged view reads the snapshot p.
 */
export function mergeRoute(parts: readonly RouteSnapshot[]): RouteAccumulator | undefined {
  const first = parts[0]
  if (first === undefined) return undefined
  const same = parts.filter((p) => p.spec.identity === first.spec.identity)
  const merged = new RouteAccumulator(first.route, first.spec)
  first.periods.forEach((p, i) => {
    merged.periods.push({ ...p, from: same.reduce((s, x) => s + (x.periods[i]?.from ?? 0), 0) })
    merged.users.newPeriod()
  })
  merged.users.atLeast(Math.max(...same.map((p) => p.users.level)))
  for (const part of same) {
    part.assigned.forEach((n, i) => { const a = merged.assigned[i]; if (a !== undefined) a.count += n })
    for (const [model, metric, totals, sum, count] of part.cells) {
      const cell = merged.cell(model, metric)
      Object.assign(cell.acc, mergeTotals(cell.acc.totals(), totals))
      sum.forEach((v, b) => { cell.sum[b] = (cell.sum[b] as number) + v })
      count.forEach((v, b) => { cell.count[b] = (cell.count[b] as number) + v })
    }
    const e = part.users.entries
    for (let i = 0; i + 2 < e.length; i += 3) merged.users.merge(e[i] as number, e[i + 1] as number, e[i + 2] as number)
  }
  return merged
}

/** Every worker's tally as one view. */
export function mergeTallies(snapshots: readonly TallySnapshot[]): TallyView {
  const byRoute = new Map<string, RouteSnapshot[]>()
  for (const s of snapshots) for (const r of s.routes) byRoute.set(r.route, [...(byRoute.get(r.route) ?? []), r])
  return {
    input: (route: RoutePlan) => mergeRoute(byRoute.get(route.name) ?? [])?.input('none'),
  }
}
