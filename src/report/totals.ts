import type { Config, RouteConfig } from '../config/index.js'
import { RouteAccumulator, analyseExperiment, type RouteExperiment } from '../experiment/index.js'
import { lookSchedule } from './reduction.js'

/** One row of the reduction's output (see reductionSql): `kind` and the columns that kind uses. */
export interface TotalsRow {
  readonly kind: 'requests' | 'period' | 'users' | 'cell' | 'totals' | 'route'
  readonly route: string
  readonly model?: string | null
  readonly metric?: string | null
  readonly arm?: number | null
  readonly period?: number | null
  readonly bucket?: number | null
  readonly seg?: number | null
  readonly lvl?: number | null
  readonly n?: number | null
  readonly sum?: number | null
  readonly shift?: number | null
  readonly offset?: number | null
  readonly m2?: number | null
  readonly ts?: string | null
  readonly shares?: string | null
  readonly first_prediction?: number | null
  readonly first_outcome?: number | null
}

const KINDS: ReadonlySet<unknown> = new Set(['requests', 'period', 'users', 'cell', 'totals', 'route'])

/** The row in a parsed line, or a sentence saying what is wrong with it. */
export function asTotalsRow(value: unknown): TotalsRow | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object'
  const row = value as Record<string, unknown>
  if (!KINDS.has(row.kind)) return `kind ${JSON.stringify(row.kind)} is not one of ${[...KINDS].join(', ')}`
  if (typeof row.route !== 'string') return 'route is not a string'
  for (const k of ['arm', 'period', 'bucket', 'seg', 'lvl', 'n', 'sum', 'shift', 'offset', 'm2', 'first_prediction', 'first_outcome']) {
    const v = row[k]
    if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isFinite(v))) return `${k} is not a finite number`
  }
  return row as unknown as TotalsRow
}

interface RouteRows {
  requests: TotalsRow[]
  periods: TotalsRow[]
  users: TotalsRow[]
  cells: TotalsRow[]
  totals: TotalsRow[]
  route: TotalsRow | undefined
}

/**
 * The experiments from the totals an engine reduced the records to (reductionSql): each route's
 * RouteAccumulator is rebuilt as the report's replay would have left it (requests per arm, weight
 * periods, the user sample at its level, per-bucket and stable totals) and the router's analysis
 * reads it. The sequential p's running minima are folded at the same looks (route-wide outcome
 * counts), as each segment between two looks arrives whole.
 */
export class TotalsAccumulator {
  readonly #routes = new Map<string, RouteRows>()
  rows = 0

  add(row: TotalsRow): void {
    this.rows++
    let r = this.#routes.get(row.route)
    if (r === undefined) this.#routes.set(row.route, r = { requests: [], periods: [], users: [], cells: [], totals: [], route: undefined })
    switch (row.kind) {
      case 'requests': r.requests.push(row); break
      case 'period': r.periods.push(row); break
      case 'users': r.users.push(row); break
      case 'cell': r.cells.push(row); break
      case 'totals': r.totals.push(row); break
      case 'route': r.route = row; break
    }
  }

  /** The statistics of every route of the config that declares metrics, as `report --config` over the records. */
  result(config: Config): RouteExperiment[] {
    return config.routes.filter((r) => r.metrics.length > 0).map((r) => analyseExperiment(this.#rebuild(r).input('read')))
  }

  #rebuild(config: RouteConfig): RouteAccumulator {
    const models = config.split.map((s) => s.model)
    const acc = new RouteAccumulator(config.name, { identity: '', models, control: config.control, analysis: config.analysis, metrics: config.metrics })
    const rows = this.#routes.get(config.name)
    const weights = weightsOf(config)
    if (rows === undefined) {
      acc.setShares(weights, 0)
      return acc
    }
    const first = rows.route
    // An outcome before any prediction: the report adopted the config's weights then.
    if (first?.first_outcome != null && (first.first_prediction == null || first.first_outcome < first.first_prediction)) {
      acc.setShares(weights, Date.parse(first.ts ?? ''), 0)
    }
    const periodIndex = new Map<number, number>()
    for (const p of [...rows.periods].sort((a, b) => (a.period ?? 0) - (b.period ?? 0))) {
      acc.setShares(sharesOf(p.shares, models, weights), Date.parse(p.ts ?? ''), p.n ?? 0)
      periodIndex.set(p.period ?? 0, acc.periods.length - 1)
    }
    for (const q of rows.requests) {
      const a = acc.assigned[q.arm ?? -1]
      if (a !== undefined) a.count += q.n ?? 0
    }
    usersInto(acc, rows.users, periodIndex)
    outcomesInto(acc, rows, first?.n ?? 0)
    if (acc.periods.length === 0) acc.setShares(weights, 0)
    return acc
  }
}

/** The user sample as UserSample leaves it: the lowest level that keeps at most its capacity. */
function usersInto(acc: RouteAccumulator, users: readonly TotalsRow[], periodIndex: ReadonlyMap<number, number>): void {
  if (users.length === 0) return
  let level = 0
  const atOrAbove = (l: number): number => users.reduce((n, u) => n + ((u.lvl ?? 0) >= l ? u.n ?? 0 : 0), 0)
  while (atOrAbove(level) > acc.users.capacity && level < 32) level++
  acc.users.atLeast(level)
  for (const u of users) {
    if ((u.lvl ?? 0) < level) continue
    const p = periodIndex.get(u.period ?? 0) ?? 0
    while (acc.users.counts.length <= p) acc.users.newPeriod()
    const c = acc.users.counts[p] as Float64Array
    const arm = u.arm ?? 0
    c[arm] = (c[arm] ?? 0) + (u.n ?? 0)
  }
}

/** Outcomes, one look segment at a time, with a checkpoint where the live accumulator took a look. */
function outcomesInto(acc: RouteAccumulator, rows: RouteRows, outcomes: number): void {
  const segments = new Map<number, { cells: TotalsRow[]; totals: TotalsRow[] }>()
  const of = (seg: number): { cells: TotalsRow[]; totals: TotalsRow[] } => {
    let s = segments.get(seg)
    if (s === undefined) segments.set(seg, s = { cells: [], totals: [] })
    return s
  }
  for (const c of rows.cells) of(c.seg ?? 0).cells.push(c)
  for (const t of rows.totals) of(t.seg ?? 0).totals.push(t)
  const looks = lookSchedule(Math.max(outcomes, 1))
  for (const seg of [...segments.keys()].sort((a, b) => a - b)) {
    const s = segments.get(seg) as { cells: TotalsRow[]; totals: TotalsRow[] }
    for (const c of s.cells) {
      const cell = acc.cell(c.model ?? '', c.metric ?? '')
      const b = (c.bucket ?? 0) % cell.sum.length
      cell.sum[b] = (cell.sum[b] as number) + (c.sum ?? 0)
      cell.count[b] = (cell.count[b] as number) + (c.n ?? 0)
    }
    for (const t of s.totals) {
      const a = acc.cell(t.model ?? '', t.metric ?? '').acc
      const nb = t.n ?? 0
      if (nb === 0) continue
      if (a.n === 0) {
        a.n = nb
        a.sum = t.sum ?? 0
        a.shift = t.shift ?? 0
        a.offset = t.offset ?? 0
        a.m2 = t.m2 ?? 0
        continue
      }
      // Chan, Golub & LeVeque's merge, on offsets from the one shift (the route's first value).
      const n = a.n + nb
      const delta = (t.offset ?? 0) + ((t.shift ?? 0) - a.shift) - a.offset
      a.offset += (delta * nb) / n
      a.m2 += (t.m2 ?? 0) + (delta * delta * a.n * nb) / n
      a.n = n
      a.sum += t.sum ?? 0
    }
    const look = looks[seg]
    if (look !== undefined && outcomes >= look) acc.checkpoint()
  }
}

/** The shares a prediction recorded, in split order (a model it does not name: 0); none recorded: the config's weights. */
function sharesOf(text: string | null | undefined, models: readonly string[], weights: readonly number[]): number[] {
  let recorded: unknown = null
  try {
    recorded = text === null || text === undefined ? null : JSON.parse(text)
  } catch {
    recorded = null
  }
  if (typeof recorded !== 'object' || recorded === null) return [...weights]
  const r = recorded as Record<string, unknown>
  return models.map((m) => (typeof r[m] === 'number' ? r[m] : 0))
}

function weightsOf(r: RouteConfig): number[] {
  const total = r.split.reduce((a, s) => a + s.weight, 0)
  return r.split.map((s) => (total > 0 ? s.weight / total : 0))
}
