import { AggregatorRegistry, type Registry } from 'prom-client'

/** One worker's registry as `getMetricsAsJSON()` gives it, and as it crosses the IPC channel. */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>
type Metric = MetricsSnapshot[number]
type Value = Metric['values'][number] & { metricName?: string }

/**
 * The primary's sums of its workers' registries (`serve --workers`). A counter of the replica is
 * what its live workers have counted plus what the workers that died had counted when last seen:
 * without the dead ones a worker's death would make every sum drop, which Prometheus reads as a
 * reset of the whole replica (and rate() then counts everything since its start again). A gauge
 * is a worker's present state, and leaves with it.
 */
export class WorkerMetrics {
  readonly #last = new Map<number, MetricsSnapshot>()
  readonly #gone = new Set<number>()
  #retired: MetricsSnapshot = []

  /** A live worker's registry, as it answered just now. */
  seen(worker: number, snapshot: MetricsSnapshot): void {
    // An answer that crossed its worker's exit: the worker's counts are already retired.
    if (this.#gone.has(worker)) return
    this.#last.set(worker, snapshot)
  }

  /** A worker exited: what it had counted, as last seen, stays in the sums for good. */
  retire(worker: number): void {
    this.#gone.add(worker)
    const last = this.#last.get(worker)
    this.#last.delete(worker)
    if (last !== undefined) this.#retired = merge(this.#retired, cumulative(last))
  }

  /**
   * The exposition: each live worker's last answer (a worker late to answer is counted as it
   * last was) and the retired counts, merged by each metric's own aggregator.
   */
  async exposition(): Promise<{ contentType: string; body: string }> {
    const registry = AggregatorRegistry.aggregate([...this.#last.values(), this.#retired])
    return { contentType: registry.contentType, body: await registry.metrics() }
  }
}

/** The series that only grow: counters, histograms, and a summary's _sum and _count. */
function cumulative(snapshot: MetricsSnapshot): MetricsSnapshot {
  const out: Metric[] = []
  for (const m of snapshot) {
    const type = String(m.type)
    if (type === 'counter' || type === 'histogram') out.push(m)
    else if (type === 'summary') {
      const values = (m.values as Value[]).filter((v) => v.metricName?.endsWith('_sum') === true || v.metricName?.endsWith('_count') === true)
      out.push({ ...m, values })
    }
  }
  return out
}

/**
 * Two sets of retired counts as one: a series counted by every worker alike (aggregator max, as
 * config reloads) keeps the larger, one dropped from cluster sums (omit) stays out, and the rest
 * (each worker its own share) add up.
 */
function merge(a: MetricsSnapshot, b: MetricsSnapshot): MetricsSnapshot {
  const byName = new Map<string, { metric: Metric; cells: Map<string, Value> }>()
  for (const m of [...a, ...b]) {
    if (m.aggregator === 'omit') continue
    let entry = byName.get(m.name)
    if (entry === undefined) {
      entry = { metric: m, cells: new Map() }
      byName.set(m.name, entry)
    }
    for (const v of m.values as Value[]) {
      const key = `${v.metricName ?? ''}\u0000${JSON.stringify(Object.entries(v.labels).sort(([x], [y]) => x.localeCompare(y)))}`
      const had = entry.cells.get(key)
      entry.cells.set(key, had === undefined ? v : { ...v, value: combine(m.aggregator, had.value, v.value) })
    }
  }
  return [...byName.values()].map(({ metric, cells }) => ({ ...metric, values: [...cells.values()] }))
}

function combine(aggregator: Metric['aggregator'], a: number, b: number): number {
  switch (aggregator) {
    case 'max': return Math.max(a, b)
    case 'min': return Math.min(a, b)
    case 'first': return a
    default: return a + b
  }
}
