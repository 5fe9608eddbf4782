import { queryVector, type VectorSample } from '../metrics/prom-query.js'
import type { Summary } from '../stats/index.js'
import type { Tally } from './tally.js'

/** The experiments' numbers as the admin API reads them. */
export interface FleetTally {
  assignments(route: string, model: string): number
  outcomes(route: string, model: string, metric: string): Summary
  expected(route: string, model: string): number | undefined
  runningMin(route: string, metric: string, candidate: string, p: number): number
}

/**
 * Every replica's totals, from Prometheus: assignments by hash and the outcome count, sum and sum
 * of squares per arm, summed over the replicas it scrapes. The sample-ratio check's periods are
 * this replica's (every replica applies the same plans): the fleet's assignments at each period's
 * start weigh its shares. A string says why the fleet's numbers cannot be had.
 */
export async function fleetTally(url: string, routes: readonly string[], local: Tally, now: number): Promise<FleetTally | string> {
  const [assigned, count, sum, squares] = await Promise.all([
    queryVector(url, 'sum by (route, model) (modelsplit_assignments_total{source="hash"})', now),
    queryVector(url, 'sum by (route, model, metric) (modelsplit_outcomes_total)', now),
    queryVector(url, 'sum by (route, model, metric) (modelsplit_outcome_value_sum)', now),
    queryVector(url, 'sum by (route, model, metric) (modelsplit_outcome_value_squares_sum)', now),
  ])
  for (const x of [assigned, count, sum, squares]) if (typeof x === 'string') return x
  const key = (s: VectorSample, withMetric: boolean): string => `${s.metric.route}\u0000${s.metric.model}${withMetric ? `\u0000${s.metric.metric}` : ''}`
  const table = (v: VectorSample[], withMetric: boolean): Map<string, number> => new Map(v.map((s) => [key(s, withMetric), Number(s.value[1])]))
  const a = table(assigned as VectorSample[], false)
  const [n, total, sq] = [table(count as VectorSample[], true), table(sum as VectorSample[], true), table(squares as VectorSample[], true)]
  // The fleet's assignments per route at the start of each weight period after the first.
  const expected = new Map<string, number>()
  for (const route of routes) {
    const periods = local.periods(route)
    if (periods.length === 0) continue
    const starts: number[] = [0]
    for (const p of periods.slice(1)) {
      const v = await queryVector(url, `sum(modelsplit_assignments_total{route=${JSON.stringify(route)},source="hash"})`, p.at)
      if (typeof v === 'string') return v
      starts.push(Number(v[0]?.value[1] ?? 0))
    }
    let routeTotal = 0
    for (const [k, v] of a) if (k.startsWith(`${route}\u0000`)) routeTotal += v
    periods.forEach((p, i) => {
      const span = (starts[i + 1] ?? routeTotal) - (starts[i] as number)
      for (const [model, share] of Object.entries(p.shares)) {
        const k = `${route}\u0000${model}`
        expected.set(k, (expected.get(k) ?? 0) + span * share)
      }
    })
  }
  return {
    assignments: (route, model) => a.get(`${route}\u0000${model}`) ?? 0,
    outcomes: (route, model, metric) => {
      const k = `${route}\u0000${model}\u0000${metric}`
      return { n: n.get(k) ?? 0, sum: total.get(k) ?? 0, sumSquares: sq.get(k) ?? 0 }
    },
    expected: (route, model) => expected.get(`${route}\u0000${model}`),
    runningMin: (route, metric, candidate, p) => local.runningMin(route, `fleet\u0000${metric}`, candidate, p),
  }
}
