/** How p-values of one family (a route's metrics × candidates) are adjusted. */
export type Correction = 'holm' | 'bh' | 'none'

/**
 * Adjusted p-values in the input's order. Holm (1979): step-down, adj(i) = max over j ≤ i of
 * (m − j + 1)·p(j), controlling the family-wise error rate. Benjamini–Hochberg (1995): step-up,
 * adj(i) = min over j ≥ i of m·p(j)/j, controlling the false discovery rate. Both capped at 1, as
 * statsmodels' multipletests does. A missing p (NaN) stays NaN and counts in m as a p of 1.
 */
export function adjustPValues(p: readonly number[], method: Correction): number[] {
  const m = p.length
  if (method === 'none' || m <= 1) return [...p]
  const order = p.map((_, i) => i).sort((a, b) => value(p[a]) - value(p[b]) || a - b)
  const out = new Array<number>(m)
  if (method === 'holm') {
    let running = 0
    order.forEach((idx, rank) => {
      running = Math.max(running, Math.min(1, (m - rank) * value(p[idx])))
      out[idx] = running
    })
  } else {
    let running = 1
    for (let rank = m - 1; rank >= 0; rank--) {
      const idx = order[rank] as number
      running = Math.min(running, Math.min(1, (m * value(p[idx])) / (rank + 1)))
      out[idx] = running
    }
  }
  return out.map((x, i) => (Number.isNaN(p[i] as number) ? Number.NaN : x))
}

function value(x: number | undefined): number {
  return x === undefined || Number.isNaN(x) ? 1 : x
}
