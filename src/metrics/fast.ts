import type { Registry } from 'prom-client'

// Counters and histograms for the request path. prom-client validates and hashes the label set
// on every inc()/observe(), even on a child bound with labels(), which the profile showed on every
// request (three to seven times each). These keep a child's numbers in plain fields: binding
// (labels()) does the look-up once, and inc()/observe() only add. prom-client's Registry reads them
// at scrape time through the same get() its own metrics have, so the exposition, cluster
// aggregation and names are unchanged.

type Labels<N extends string> = Partial<Record<N, string | number>>

interface Options<N extends string> {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly N[]
  readonly registers: readonly Registry[]
}

interface Value {
  readonly labels: Record<string, string | number>
  readonly value: number
  readonly metricName?: string
}

function keyOf<N extends string>(names: readonly N[], labels: Labels<N>): string {
  let key = ''
  for (const n of names) {
    const v = labels[n]
    if (v === undefined) throw new Error(`label ${n} is missing`)
    key += `${String(v)}\u0000`
  }
  return key
}

function pick<N extends string>(names: readonly N[], labels: Labels<N>): Record<string, string | number> {
  const out: Record<string, string | number> = {}
  for (const n of names) out[n] = labels[n] as string | number
  for (const k of Object.keys(labels)) {
    if (!(names as readonly string[]).includes(k)) throw new Error(`label ${k} is not one of ${names.join(', ')}`)
  }
  return out
}

/** One labelled series of a FastCounter. */
export class CounterChild {
  value = 0
  constructor(readonly labels: Record<string, string | number>) {}

  inc(n = 1): void {
    this.value += n
  }
}

/** A Prometheus counter whose bound children cost one addition per inc(). */
export class FastCounter<N extends string = string> {
  readonly name: string
  readonly help: string
  readonly type = 'counter'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly N[]
  readonly #children = new Map<string, CounterChild>()

  constructor(opts: Options<N>) {
    this.name = opts.name
    this.help = opts.help
    this.#labelNames = opts.labelNames
    for (const r of opts.registers) r.registerMetric(this as never)
  }

  /** The child for a label set, made on first use; keep it and call inc() on it. */
  labels(labels: Labels<N>): CounterChild {
    const key = keyOf(this.#labelNames, labels)
    let child = this.#children.get(key)
    if (child === undefined) {
      child = new CounterChild(pick(this.#labelNames, labels))
      this.#children.set(key, child)
    }
    return child
  }

  inc(labels: Labels<N>, n = 1): void {
    if (!Number.isFinite(n) || n < 0) throw new TypeError(`a counter only goes up, by a finite amount; got ${n}`)
    this.labels(labels).inc(n)
  }

  reset(): void {
    this.#children.clear()
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values: Value[] = []
    for (const c of this.#children.values()) values.push({ labels: c.labels, value: c.value })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}

/** One labelled series of a FastHistogram: cumulative-free bucket counts, sum and count. */
export class HistogramChild {
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor(readonly labels: Record<string, string | number>, readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length)
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return
    const b = this.bounds
    const counts = this.counts
    for (let i = 0; i < b.length; i++) {
      if (value <= (b[i] as number)) {
        counts[i] = (counts[i] as number) + 1
        break
      }
    }
    this.sum += value
    this.count++
  }
}

/** A Prometheus histogram whose bound children cost a bucket search and three additions. */
export class FastHistogram<N extends string = string> {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #labelNames: readonly N[]
  readonly #bounds: readonly number[]
  readonly #children = new Map<string, HistogramChild>()

  constructor(opts: Options<N> & { readonly buckets: readonly number[] }) {
    this.name = opts.name
    this.help = opts.help
    this.#labelNames = opts.labelNames
    this.#bounds = [...opts.buckets].sort((a, b) => a - b)
    for (const r of opts.registers) r.registerMetric(this as never)
  }

  labels(labels: Labels<N>): HistogramChild {
    const key = keyOf(this.#labelNames, labels)
    let child = this.#children.get(key)
    if (child === undefined) {
      child = new HistogramChild(pick(this.#labelNames, labels), this.#bounds)
      this.#children.set(key, child)
    }
    return child
  }

  observe(labels: Labels<N>, value: number): void {
    this.labels(labels).observe(value)
  }

  reset(): void {
    this.#children.clear()
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values: Value[] = []
    for (const c of this.#children.values()) {
      let cumulative = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += c.counts[i] as number
        values.push({ labels: { le: this.#bounds[i] as number, ...c.labels }, value: cumulative, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: { le: '+Inf', ...c.labels }, value: c.count, metricName: `${this.name}_bucket` })
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` })
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
