import { phiInverse, zCritical } from './distributions.js'

/** Inputs for a binary metric: the control's rate. */
export interface BinarySampleSizeInput {
  readonly baselineRate: number
  readonly mde: number
  readonly alpha?: number
  readonly power?: number
}

/** Inputs for a continuous metric: the control's mean (unused by the formula, kept for symmetry) and standard deviation. */
export interface ContinuousSampleSizeInput {
  readonly mean?: number
  readonly sd: number
  readonly mde: number
  readonly alpha?: number
  readonly power?: number
}

/** Either kind of sample-size input. */
export type SampleSizeInput = BinarySampleSizeInput | ContinuousSampleSizeInput

/**
 * Per-arm sample size for a two-sided test with equal arms, rounded up; NaN when undefined (mde = 0, NaN inputs).
 *
 * Binary: n = (z₁₋α/₂·√(2p̄q̄) + z₁₋β·√(p₁q₁ + p₂q₂))² / δ² with p₂ = p₁ + δ (or p₁ − δ if that exceeds 1)
 * and p̄ = (p₁ + p₂)/2 (Fleiss, Levin & Paik 2003, eq. 4.14 without continuity correction).
 * Continuous: n = 2σ²(z₁₋α/₂ + z₁₋β)² / δ² (normal approximation).
 */
export function requiredSampleSize(input: SampleSizeInput): number {
  const alpha = input.alpha ?? 0.05
  const power = input.power ?? 0.8
  const delta = Math.abs(input.mde)
  const zAlpha = zCritical(1 - alpha)
  const zBeta = phiInverse(power)
  if (!(delta > 0)) return Number.NaN
  let n: number
  if ('baselineRate' in input) {
    const p1 = input.baselineRate
    const p2 = p1 + delta <= 1 ? p1 + delta : p1 - delta
    const pBar = (p1 + p2) / 2
    const root = zAlpha * Math.sqrt(2 * pBar * (1 - pBar)) + zBeta * Math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    n = (root * root) / (delta * delta)
  } else {
    const z = zAlpha + zBeta
    n = (2 * input.sd * input.sd * z * z) / (delta * delta)
  }
  // Guard against 3841.0000000001 from rounding turning into 3842.
  return Number.isFinite(n) ? Math.ceil(n - 1e-9) : Number.NaN
}

/** Samples still needed per arm: max(0, required − current), NaN when required is NaN. */
export function remainingSamples(requiredPerArm: number, currentPerArm: number): number {
  return Number.isNaN(requiredPerArm) ? Number.NaN : Math.max(0, requiredPerArm - currentPerArm)
}
