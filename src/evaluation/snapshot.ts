import type { Totals } from '../stats/index.js'
import type { Tally } from './tally.js'

/** A process's tally as plain data (it crosses the cluster's IPC): assignments and outcome totals per arm. */
export interface TallySnapshot {
  readonly assignments: readonly (readonly [route: string, model: string, count: number])[]
  readonly outcomes: readonly (readonly [route: string, model: string, metric: string, totals: Totals])[]
}

/** What the statistics read of a tally: one process's, or the merge of several. */
export interface TallyReader {
  assignments(route: string, model: string): number
  outcomes(route: string, model: string, metric: string): Totals
}

const EMPTY: Totals = Object.freeze({ n: 0, sum: 0, shift: 0, offset: 0, m2: 0 })

/** The snapshot of one tally. */
export function snapshotTally(tally: Tally): TallySnapshot {
  return { assignments: tally.assignmentEntries(), outcomes: tally.outcomeEntries() }
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

/** Every worker's tally as one: counts add, totals merge. */
export function mergeTallies(snapshots: readonly TallySnapshot[]): TallyReader {
  const assignments = new Map<string, number>()
  const outcomes = new Map<string, Totals>()
  for (const s of snapshots) {
    for (const [route, model, count] of s.assignments) {
      const key = `${route}\u0000${model}`
      assignments.set(key, (assignments.get(key) ?? 0) + count)
    }
    for (const [route, model, metric, totals] of s.outcomes) {
      const key = `${route}\u0000${model}\u0000${metric}`
      outcomes.set(key, mergeTotals(outcomes.get(key) ?? EMPTY, totals))
    }
  }
  return {
    assignments: (route, model) => assignments.get(`${route}\u0000${model}`) ?? 0,
    outcomes: (route, model, metric) => outcomes.get(`${route}\u0000${model}\u0000${metric}`) ?? EMPTY,
  }
}
