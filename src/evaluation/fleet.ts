import type { ExperimentInput } from '../experiment/index.js'
import { queryVector, type VectorSample } from '../metrics/prom-query.js'
import type { RoutePlan } from '../plan/index.js'
import { specOf, type TallyView } from './experiments.js'
import type { Tally } from './tally.js'

/**
 * Every replica's totals, from Prometheus: requests by hash, per-bucket outcome sums and counts
 * (they add up across replicas, so the user-level analysis of their sum is the fleet's), raw
 * count, sum and sum of squares per arm (unit request), and each replica's sampled users with the
 * number expected. The weight periods are this replica's (every replica applies the same plans):
 * the fleet's requests at each period's start weigh its shares. A string says why the fleet's
 * numbers cannot be had.
 */
export async function fleetTally(url: string, routes: readonly RoutePlan[], local: Tally, now: number): Promise<TallyView | string> {
  const queries = [
    'sum by (route, model) (modelsplit_assignments_total{source="hash"})',
    'sum by (route, model, metric) (modelsplit_outcomes_total)',
    'sum by (route, model, metric) (modelsplit_outcome_value_sum)',
    'sum by (route, model, metric) (modelsplit_outcome_value_squares_sum)',
    'sum by (route, model, metric, bucket) (modelsplit_outcome_bucket_value_sum)',
    'sum by (route, model, metric, bucket) (modelsplit_outcome_bucket_count)',
    'sum by (route, model) (modelsplit_experiment_users)',
    'sum by (route, model) (modelsplit_experiment_users_expected)',
  ]
  const answers = await Promise.all(queries.map((q) => queryVector(url, q, now)))
  for (const x of answers) if (typeof x === 'string') return x
  const [assigned, count, sum, squares, bucketSum, bucketCount, users, usersExpected] = answers as VectorSample[][]
  const key = (...parts: (string | undefined)[]): string => parts.join('\u0000')
  const table = (v: VectorSample[] | undefined, labels: readonly string[]): Map<string, number> =>
    new Map((v ?? []).map((s) => [key(...labels.map((l) => s.metric[l])), Number(s.value[1])]))
  const a = table(assigned, ['route', 'model'])
  const [n, total, sq] = [count, sum, squares].map((v) => table(v, ['route', 'model', 'metric'])) as [Map<string, number>, Map<string, number>, Map<string, number>]
  const u = table(users, ['route', 'model'])
  const ue = table(usersExpected, ['route', 'model'])
  const buckets = new Map<string, { sum: Float64Array; count: Float64Array }>()
  const fill = (v: VectorSample[] | undefined, field: 'sum' | 'count'): void => {
    for (const s of v ?? []) {
      const route = routes.find((r) => r.name === s.metric.route)
      const b = Number(s.metric.bucket)
      if (route === undefined || !Number.isInteger(b) || b < 0 || b >= route.config.analysis.buckets) continue
      const k = key(s.metric.route, s.metric.model, s.metric.metric)
      let cell = buckets.get(k)
      if (cell === undefined) buckets.set(k, cell = { sum: new Float64Array(route.config.analysis.buckets), count: new Float64Array(route.config.analysis.buckets) })
      cell[field][b] = Number(s.value[1])
    }
  }
  fill(bucketSum, 'sum')
  fill(bucketCount, 'count')
  // The fleet's requests per route at the start of each weight period after the first.
  const expected = new Map<string, number>()
  for (const route of routes) {
    const periods = local.periods(route.name)
    if (periods.length === 0) continue
    const starts: number[] = [0]
    for (const p of periods.slice(1)) {
      const v = await queryVector(url, `sum(modelsplit_assignments_total{route=${JSON.stringify(route.name)},source="hash"})`, p.at)
      if (typeof v === 'string') return v
      starts.push(Number(v[0]?.value[1] ?? 0))
    }
    let routeTotal = 0
    for (const [k, v] of a) if (k.startsWith(`${route.name}\u0000`)) routeTotal += v
    periods.forEach((p, i) => {
      const span = (starts[i + 1] ?? routeTotal) - (starts[i] as number)
      for (const [model, share] of Object.entries(p.shares)) expected.set(key(route.name, model), (expected.get(key(route.name, model)) ?? 0) + span * share)
    })
  }
  return {
    input: (route: RoutePlan): ExperimentInput => {
      const b = route.config.analysis.buckets
      const empty = { sum: new Float64Array(b), count: new Float64Array(b) }
      const byUser = route.config.analysis.unit === 'user'
      return {
        route: route.name,
        ...specOf(route),
        arms: route.assigner.models.map((model, i) => ({
          model,
          weight: route.assigner.shares[i] ?? 0,
          requests: a.get(key(route.name, model)) ?? 0,
          ...(expected.has(key(route.name, model)) ? { expectedRequests: expected.get(key(route.name, model)) as number } : {}),
          ...(byUser ? { users: u.get(key(route.name, model)) ?? 0, expectedUsers: ue.get(key(route.name, model)) ?? 0 } : {}),
        })),
        cells: (model, metric) => buckets.get(key(route.name, model, metric)) ?? empty,
        totals: (model, metric) => {
          const k = key(route.name, model, metric)
          return { n: n.get(k) ?? 0, sum: total.get(k) ?? 0, sumSquares: sq.get(k) ?? 0 }
        },
        runningMin: (k, p) => local.runningMin(route.name, `fleet\u0000${k}`, p),
      }
    },
  }
}
