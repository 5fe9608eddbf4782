/**
 * Estimates from per-bucket totals (Deng, Knoblich & Lu, "Applying the Delta Method in Metric
 * Analytics", KDD 2018). Units (users) are hashed into buckets, so every bucket holds whole users
 * and bucket totals are independent draws: a mean is the ratio of two totals, R = Σy / Σx, and its
 * variance is the delta method's over the buckets,
 *   Var(R) = G/(G − 1) · Σ_b (y_b − R·x_b)² / (Σx)²,
 * with G the buckets that hold any of the arm's data. This is exactly the cluster-robust
 * (clusters = buckets) variance of the intercept of an OLS fit of the outcomes (statsmodels'
 * cov_type="cluster" with its default small-sample factor G/(G − 1)).
 */

/** Per-bucket totals of one quantity for one arm: the numerator (Σ values) and denominator (count, or another metric's Σ). */
export interface BucketSeries {
  readonly num: ArrayLike<number>
  readonly den: ArrayLike<number>
}

/** A ratio of totals with its delta-method variance. */
export interface RatioEstimate {
  readonly estimate: number
  /** Variance of the estimate (not of a unit); NaN below two non-empty buckets. */
  readonly variance: number
  /** Non-empty buckets (clusters). */
  readonly groups: number
  readonly num: number
  readonly den: number
}

/** Σ num / Σ den and its delta-method variance over the buckets. */
export function ratioEstimate(s: BucketSeries): RatioEstimate {
  let num = 0
  let den = 0
  let groups = 0
  const k = s.num.length
  for (let b = 0; b < k; b++) {
    const y = s.num[b] as number
    const x = s.den[b] as number
    num += y
    den += x
    if (x !== 0 || y !== 0) groups++
  }
  const estimate = den > 0 ? num / den : Number.NaN
  if (!(groups > 1 && den > 0)) return { estimate, variance: Number.NaN, groups, num, den }
  let ss = 0
  for (let b = 0; b < k; b++) {
    const d = (s.num[b] as number) - estimate * (s.den[b] as number)
    ss += d * d
  }
  return { estimate, variance: ((groups / (groups - 1)) * ss) / (den * den), groups, num, den }
}

/**
 * Covariance of two ratio estimates of the same arm (a metric and its CUPED covariate), from the
 * same buckets: G/(G − 1) · Σ_b (y_b − R·x_b)(z_b − Q·w_b) / (Σx·Σw), G the buckets that hold either.
 */
export function ratioCovariance(a: BucketSeries, ra: RatioEstimate, c: BucketSeries, rc: RatioEstimate): number {
  let groups = 0
  let s = 0
  const k = a.num.length
  for (let b = 0; b < k; b++) {
    const ya = a.num[b] as number
    const xa = a.den[b] as number
    const yc = c.num[b] as number
    const xc = c.den[b] as number
    if (ya !== 0 || xa !== 0 || yc !== 0 || xc !== 0) groups++
    s += (ya - ra.estimate * xa) * (yc - rc.estimate * xc)
  }
  if (!(groups > 1) || !(ra.den > 0) || !(rc.den > 0)) return Number.NaN
  return ((groups / (groups - 1)) * s) / (ra.den * rc.den)
}

/** Welch–Satterthwaite degrees of freedom of a difference of two estimates, each with G − 1 of its own. */
export function welchDf(va: number, ga: number, vb: number, gb: number): number {
  const v = va + vb
  return (v * v) / ((va * va) / Math.max(1, ga - 1) + (vb * vb) / Math.max(1, gb - 1))
}

/** One arm's metric and covariate, for CUPED. */
export interface CupedArm {
  readonly y: RatioEstimate
  readonly x: RatioEstimate
  /** Cov(Ȳ, X̄) of this arm. */
  readonly cov: number
}

/** CUPED's θ and the adjusted difference of candidate − control. */
export interface CupedResult {
  /** θ = Σ_arms Cov(Ȳ, X̄) / Σ_arms Var(X̄), pooled over the two arms. */
  readonly theta: number
  readonly diff: number
  readonly variance: number
  /** 1 − Var(adjusted) / Var(unadjusted): the share of the difference's variance CUPED removed. */
  readonly reduction: number
  /** Each arm's Var(Ȳ − θ·X̄): the adjusted statistic's Welch degrees of freedom weigh these. */
  readonly controlVariance: number
  readonly candidateVariance: number
}

/**
 * CUPED (Deng, Xu, Kohavi & Walker, WSDM 2013) on ratio estimates: Δ_cv = ΔȲ − θ·ΔX̄ with θ pooled
 * over both arms, Var(Δ_cv) = Σ_arms Var(Ȳ) − 2θ·Cov(Ȳ, X̄) + θ²·Var(X̄). Undefined (NaN θ) when the
 * covariate has no variance in either arm; the caller then keeps the unadjusted difference.
 */
export function cuped(control: CupedArm, candidate: CupedArm): CupedResult {
  const theta = (control.cov + candidate.cov) / (control.x.variance + candidate.x.variance)
  const raw = candidate.y.variance + control.y.variance
  const diff = (candidate.y.estimate - control.y.estimate) - theta * (candidate.x.estimate - control.x.estimate)
  const adj = (a: CupedArm): number => a.y.variance - 2 * theta * a.cov + theta * theta * a.x.variance
  const controlVariance = adj(control)
  const candidateVariance = adj(candidate)
  const variance = controlVariance + candidateVariance
  return { theta, diff, variance, reduction: 1 - variance / raw, controlVariance, candidateVariance }
}

/** Per-bucket linearised residuals of a ratio estimate, d_b = (y_b − R·x_b) / Σx, and which buckets hold data. */
export interface Residuals {
  readonly d: Float64Array
  readonly occupied: Uint8Array
}

/** The residuals whose G/(G − 1)·Σd² is the ratio's delta-method variance. */
export function residualsOf(s: BucketSeries, r: RatioEstimate): Residuals {
  const k = s.num.length
  const d = new Float64Array(k)
  const occupied = new Uint8Array(k)
  for (let b = 0; b < k; b++) {
    const y = s.num[b] as number
    const x = s.den[b] as number
    if (y === 0 && x === 0) continue
    occupied[b] = 1
    d[b] = (y - r.estimate * x) / r.den
  }
  return { d, occupied }
}

/** d_y − θ·d_x over the buckets either holds (CUPED's adjusted residuals). */
export function adjustedResiduals(y: Residuals, x: Residuals, theta: number): Residuals {
  const k = y.d.length
  const d = new Float64Array(k)
  const occupied = new Uint8Array(k)
  for (let b = 0; b < k; b++) {
    occupied[b] = (y.occupied[b] as number) | (x.occupied[b] as number)
    d[b] = (y.d[b] as number) - theta * (x.d[b] as number)
  }
  return { d, occupied }
}

/**
 * How uncertain a variance estimate V = Σ u_b (u_b = G/(G − 1)·d_b², over the G occupied buckets)
 * is itself: G/(G − 1)·Σ (u_b − V/G)². A few heavy users make it large, and then the t test's
 * degrees of freedom must be fewer than Welch's, which assumes V nearly known.
 */
export function varianceOfVariance(r: Residuals): number {
  let g = 0
  for (let b = 0; b < r.d.length; b++) g += r.occupied[b] as number
  if (g < 2) return Number.NaN
  const f = g / (g - 1)
  let v = 0
  for (let b = 0; b < r.d.length; b++) if (r.occupied[b] === 1) v += f * (r.d[b] as number) ** 2
  const mean = v / g
  let ss = 0
  for (let b = 0; b < r.d.length; b++) if (r.occupied[b] === 1) ss += (f * (r.d[b] as number) ** 2 - mean) ** 2
  return f * ss
}

/**
 * Degrees of freedom of a lift's t statistic: Satterthwaite's 2V²/Var(V̂) from the spread of the
 * buckets' squared residuals (Var(V̂) summed over the arms), or Welch's from each arm's G − 1,
 * whichever is fewer. With well-behaved buckets the two agree (about G); with heavy-tailed users
 * (a few who send 50 outcomes each) the variance is noisier than Welch assumes, and its df say so.
 */
export function liftDf(va: number, ga: number, vb: number, gb: number, noiseA: number, noiseB: number): number {
  const welch = welchDf(va, ga, vb, gb)
  const v = va + vb
  const noise = (2 * v * v) / (noiseA + noiseB)
  return Number.isFinite(noise) && noise > 0 ? Math.min(welch, noise) : welch
}
