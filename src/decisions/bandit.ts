import type { BanditConfig } from '../config/decisions.js'
import { moments, type Sample } from '../stats/index.js'
import { Random } from './random.js'

/** One arm's evidence: outcome totals for the bandit's metric. */
export interface BanditArm {
  readonly model: string
  readonly totals: Sample
}

export interface BanditArmResult {
  readonly model: string
  /** Posterior probability that this arm is the best, from the seeded Monte Carlo draw. */
  readonly probability_best: number
  /** Expected loss of choosing this arm: E[max θ − θ_arm]. */
  readonly expected_loss: number
  /** Share of traffic from this boundary on. */
  readonly share: number
  readonly n: number
  readonly mean: number | null
}

export interface BanditResult {
  readonly arms: readonly BanditArmResult[]
  /** The arm all traffic goes to once stop_when holds, else null. */
  readonly winner: string | null
  readonly reason: string
}

/** Monte Carlo draws per decision: the probability-best estimate is within ±0.01 at 95 %. */
export const DRAWS = 10_000

/**
 * Batched Thompson sampling (Chapelle & Li 2011; Scott 2010): each arm's share is its posterior
 * probability of being the best, floored at min_share. Binary metrics: Beta(1 + successes,
 * 1 + failures). Continuous: the mean's normal posterior N(x̄, s²/n) (a flat prior; an arm with
 * fewer than two values draws from the pooled spread so it is explored, not ignored). Draws are
 * seeded from the route and the boundary: the same inputs give the same shares on every replica.
 */
export function thompson(cfg: BanditConfig, metricType: 'binary' | 'continuous', arms: readonly BanditArm[], higherIsBetter: boolean, seed: number): BanditResult {
  const rng = new Random(seed)
  const k = arms.length
  const stats = arms.map((a) => moments(a.totals))
  const pooled = pooledSpread(stats)
  const wins = new Float64Array(k)
  const loss = new Float64Array(k)
  const draw = new Float64Array(k)
  for (let d = 0; d < DRAWS; d++) {
    let best = -Infinity
    let bestIndex = 0
    for (let i = 0; i < k; i++) {
      const s = stats[i] as ReturnType<typeof moments>
      let theta: number
      if (metricType === 'binary') {
        const successes = Math.round((arms[i] as BanditArm).totals.sum)
        theta = rng.beta(1 + successes, 1 + Math.max(0, s.n - successes))
      } else {
        const mean = s.n > 0 ? s.mean : 0
        const variance = s.n > 1 ? s.variance : pooled
        const se = Math.sqrt(variance / Math.max(1, s.n))
        theta = mean + se * rng.normal()
      }
      const value = higherIsBetter ? theta : -theta
      draw[i] = value
      if (value > best) {
        best = value
        bestIndex = i
      }
    }
    wins[bestIndex] = (wins[bestIndex] as number) + 1
    for (let i = 0; i < k; i++) loss[i] = (loss[i] as number) + (best - (draw[i] as number))
  }
  const pBest = Array.from(wins, (w) => w / DRAWS)
  const expectedLoss = Array.from(loss, (l) => l / DRAWS)
  const shares = floorShares(pBest, cfg.min_share)
  let winner: string | null = null
  let reason = `shares follow each arm's probability of being best, floored at min_share ${cfg.min_share}`
  const top = pBest.indexOf(Math.max(...pBest))
  if (cfg.stop_when !== null && (pBest[top] as number) >= cfg.stop_when.probability_best && (expectedLoss[top] as number) <= cfg.stop_when.max_expected_loss) {
    winner = (arms[top] as BanditArm).model
    reason = `${winner} is best with probability ${(pBest[top] as number).toFixed(3)} ≥ ${cfg.stop_when.probability_best} and expected loss ${(expectedLoss[top] as number).toPrecision(3)} ≤ ${cfg.stop_when.max_expected_loss}: all traffic to it`
  }
  return {
    arms: arms.map((a, i) => ({
      model: a.model,
      probability_best: pBest[i] as number,
      expected_loss: expectedLoss[i] as number,
      share: winner === null ? shares[i] as number : a.model === winner ? 1 : 0,
      n: (stats[i] as ReturnType<typeof moments>).n,
      mean: (stats[i] as ReturnType<typeof moments>).n > 0 ? (stats[i] as ReturnType<typeof moments>).mean : null,
    })),
    winner,
    reason,
  }
}

function pooledSpread(stats: readonly ReturnType<typeof moments>[]): number {
  let num = 0
  let den = 0
  for (const s of stats) {
    if (s.n > 1) {
      num += s.variance * (s.n - 1)
      den += s.n - 1
    }
  }
  return den > 0 ? num / den : 1
}

/**
 * Shares proportional to `p`, with every share at least `floor`: arms under the floor are set to
 * it and the rest share what is left in proportion (repeated until no arm falls under).
 */
export function floorShares(p: readonly number[], floor: number): number[] {
  const k = p.length
  const fixed = new Array<boolean>(k).fill(false)
  const out = new Array<number>(k).fill(0)
  for (;;) {
    const free = p.reduce((s, v, i) => (fixed[i] ? s : s + v), 0)
    const left = 1 - floor * fixed.filter(Boolean).length
    let changed = false
    for (let i = 0; i < k; i++) {
      if (fixed[i]) {
        out[i] = floor
        continue
      }
      out[i] = free > 0 ? (left * (p[i] as number)) / free : left / fixed.filter((f) => !f).length
      if ((out[i] as number) < floor) {
        fixed[i] = true
        changed = true
      }
    }
    if (!changed) return out
  }
}
