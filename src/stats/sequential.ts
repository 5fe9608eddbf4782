import { meanDifference, moments } from './summary.js'
import type { Sample } from './summary.js'

/** Options for the mixture SPRT. */
export interface MsprtOptions {
  /** Mixing variance τ² of the normal prior on the true difference, in squared metric units. */
  readonly tau2?: number
  /** Minimum detectable effect (absolute); when `tau2` is absent, τ² = mde². */
  readonly mde?: number
}

/** Always-valid p-value and the pieces it came from. */
export interface MsprtResult {
  readonly pValue: number
  readonly lambda: number
  readonly tau2: number
  /** Effective per-arm sample size V / (σ²_A/n_A + σ²_B/n_B); the harmonic mean of n_A, n_B when σ_A = σ_B. */
  readonly n: number
  readonly thetaHat: number
}

// Default τ when neither τ² nor an MDE is given: a tenth of the per-arm standard deviation,
// i.e. a N(0, 0.1²) prior on the standardised effect (online effects are usually this small or smaller).
const DEFAULT_STANDARDISED_TAU = 0.1

/**
 * Snapshot always-valid p-value for candidate − control from the normal-mixture SPRT
 * (Johari, Koomen, Pekelis & Walsh, "Always Valid Inference", 2017/2022):
 * Λ = √(V/(V + nτ²)) · exp(n²τ²θ̂² / (2V(V + nτ²))), V = σ²_A + σ²_B, p = min(1, 1/Λ).
 *
 * Per-arm sample sizes may differ, so n is the effective size V / (σ²_A/n_A + σ²_B/n_B), which makes
 * V/n the exact variance of θ̂ (the harmonic mean of n_A and n_B when the variances are equal).
 * τ² defaults to mde², else to (0.1·√(V/2))². σ² are plug-in sample variances.
 * This is computed from the current totals: the guarantee of always-valid inference applies to the
 * running minimum of this value over time, which a caller that polls may keep; the snapshot alone
 * is still ≥ the fixed-horizon normal p-value at every n.
 */
export function msprtPValue(control: Sample, candidate: Sample, options: MsprtOptions = {}): MsprtResult {
  const a = moments(control)
  const b = moments(candidate)
  const v = a.variance + b.variance
  const varTheta = a.variance / a.n + b.variance / b.n
  const n = v / varTheta
  const thetaHat = meanDifference(a, b)
  const tau2 = options.tau2 ?? (options.mde === undefined ? DEFAULT_STANDARDISED_TAU ** 2 * (v / 2) : options.mde ** 2)
  const spread = v + n * tau2
  const logLambda = 0.5 * Math.log(v / spread) + (n * n * tau2 * thetaHat * thetaHat) / (2 * v * spread)
  const lambda = Math.exp(logLambda)
  // Work with log Λ so a huge Λ gives p ≈ 0 rather than 1/Infinity noise; NaN stays NaN.
  const pValue = Number.isNaN(logLambda) ? Number.NaN : Math.min(1, Math.exp(-logLambda))
  return { pValue, lambda, tau2, n, thetaHat }
}

/**
 * The same always-valid p-value from a difference and its variance alone: with s² = V/n the
 * variance of θ̂, Λ = √(s²/(s² + τ²)) · exp(τ²θ̂² / (2s²(s² + τ²))). This is what a clustered
 * (user-level) analysis feeds it, where V/n comes from the delta method over buckets.
 */
export function msprtFromVariance(thetaHat: number, variance: number, tau2: number): number {
  const spread = variance + tau2
  const logLambda = 0.5 * Math.log(variance / spread) + (tau2 * thetaHat * thetaHat) / (2 * variance * spread)
  return Number.isNaN(logLambda) ? Number.NaN : Math.min(1, Math.exp(-logLambda))
}
