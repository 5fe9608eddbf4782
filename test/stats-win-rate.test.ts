// Win-rate statistics against scipy (test/fixtures/stats-win-rate.json, written by
// scripts/win_rate_oracle.py from scipy.stats.binomtest and scipy.special.betaln).
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { winRate } from '../src/stats/index.js'

interface Row { wins: number; ties: number; losses: number; signP: number; sequentialP: number; low: number | null; high: number | null }
const oracle = JSON.parse(readFileSync(new URL('./fixtures/stats-win-rate.json', import.meta.url), 'utf8')) as { rows: Row[] }

/** Relative agreement, with an absolute floor for values near 0. */
function close(actual: number, expected: number, rel = 1e-9): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(Math.max(rel * Math.abs(expected), 1e-300))
}

describe('winRate against scipy', () => {
  it.each(oracle.rows.map((r) => [`${r.wins}/${r.ties}/${r.losses}`, r] as const))('%s', (_name, r) => {
    const w = winRate({ wins: r.wins, ties: r.ties, losses: r.losses })
    expect(w.decided).toBe(r.wins + r.losses)
    close(w.signP, r.signP)
    close(w.sequentialP, r.sequentialP, 1e-8)
    if (r.low === null || r.high === null) {
      expect(w.share).toBeNaN()
      return
    }
    close(w.share, r.wins / (r.wins + r.losses))
    expect(Math.abs(w.low - r.low)).toBeLessThan(1e-12)
    expect(Math.abs(w.high - r.high)).toBeLessThan(1e-12)
  })

  it('never gives a sequential p below the sign test\'s on the same counts (it pays for looking often)', () => {
    for (const r of oracle.rows) {
      const w = winRate(r)
      expect(w.sequentialP).toBeGreaterThanOrEqual(w.signP * 0.999)
    }
  })
})
