/** One instant-vector sample of a Prometheus answer. */
export interface VectorSample {
  readonly metric: Record<string, string>
  readonly value: [number, string]
}

/** One series of a range-vector answer: its raw samples, oldest first ([seconds, value]). */
export interface MatrixSeries {
  readonly metric: Record<string, string>
  readonly values: [number, string][]
}

const TIMEOUT_MS = 5000

/**
 * An instant query against Prometheus' HTTP API at a time (ms since the epoch); a string says why
 * there is no answer (unreachable, refused, not a vector), for the caller to hold on and report.
 */
export function queryVector(url: string, query: string, timeMs: number): Promise<VectorSample[] | string> {
  return ask<VectorSample>(url, query, timeMs, 'vector')
}

/** An instant query of a range-vector selector (`x[5m]`): every raw sample in the range, per series. */
export function queryMatrix(url: string, query: string, timeMs: number): Promise<MatrixSeries[] | string> {
  return ask<MatrixSeries>(url, query, timeMs, 'matrix')
}

async function ask<T>(url: string, q: string, timeMs: number, type: 'vector' | 'matrix'): Promise<T[] | string> {
  const target = `${url}/api/v1/query?query=${encodeURIComponent(q)}&time=${(timeMs / 1000).toFixed(3)}`
  let res: Response
  try {
    res = await fetch(target, { signal: AbortSignal.timeout(TIMEOUT_MS) })
  } catch (err) {
    return `Prometheus at ${url} unreachable (${(err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message})`
  }
  let body: { status?: string; data?: { resultType?: string; result?: unknown }; error?: string }
  try {
    body = await res.json() as typeof body
  } catch {
    return `Prometheus answered ${res.status} without JSON`
  }
  if (body.status !== 'success' || body.data?.resultType !== type || !Array.isArray(body.data.result)) {
    return `Prometheus refused a query (${res.status}: ${body.error ?? `no ${type}`})`
  }
  return body.data.result as T[]
}
