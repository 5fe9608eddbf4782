/** One instant-vector sample of a Prometheus answer. */
export interface VectorSample {
  readonly metric: Record<string, string>
  readonly value: [number, string]
}

const TIMEOUT_MS = 5000

/**
 * An instant query against Prometheus' HTTP API at a time (ms since the epoch); a string says why
 * there is no answer (unreachable, refused, not a vector), for the caller to hold on and report.
 */
export async function queryVector(url: string, query: string, timeMs: number): Promise<VectorSample[] | string> {
  const target = `${url}/api/v1/query?query=${encodeURIComponent(query)}&time=${(timeMs / 1000).toFixed(3)}`
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
  if (body.status !== 'success' || body.data?.resultType !== 'vector' || !Array.isArray(body.data.result)) {
    return `Prometheus refused a query (${res.status}: ${body.error ?? 'no vector'})`
  }
  return body.data.result as VectorSample[]
}
