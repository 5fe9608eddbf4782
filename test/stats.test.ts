import { describe, expect, it } from 'vitest'
import {
  Accumulator,
  analyseExperiment,
  combineVerdicts,
  meanInterval,
  moments,
  msprtPValue,
  remainingSamples,
  requiredSampleSize,
  srmTest,
  twoProportionZTest,
  verdict,
  welchTTest,
  wilsonInterval,
} from '../src/stats/index.js'
import { studentQuantile } from '../src/stats/distributions.js'
import wilsonCases from './fixtures/stats-wilson.json' with { type: 'json' }
import proportionCases from './fixtures/stats-proportions.json' with { type: 'json' }
import srmCases from './fixtures/stats-srm.json' with { type: 'json' }
import sampleSizeCases from './fixtures/stats-sample-size.json' with { type: 'json' }
import type { ExperimentInput, SampleSizeInput, Summary, Totals, VerdictInput } from '../src/stats/index.js'

/** Builds (n, Σx, Σx²) from raw values. */
function summarise(values: readonly number[]): Summary {
  let sum = 0
  let sumSquares = 0
  for (const x of values) {
    sum += x
    sumSquares += x * x
  }
  return { n: values.length, sum, sumSquares }
}

/** Builds (n, Σx, Σx²) with a given mean and sample variance. */
function fromMoments(n: number, mean: number, variance: number): Summary {
  return { n, sum: n * mean, sumSquares: (n - 1) * variance + n * mean * mean }
}

// Student (1908) / Cushny & Peebles sleep data, R `datasets::sleep` (extra hours of sleep, groups 1 and 2).
const SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
const SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

describe('wilsonInterval', () => {
  it.each(wilsonCases)('$source', ({ successes, n, low, high }) => {
    const r = wilsonInterval(successes, n)
    expect(r.rate).toBeCloseTo(successes / n, 12)
    expect(r.low).toBeCloseTo(low, 4)
    expect(r.high).toBeCloseTo(high, 4)
  })

  it('returns NaN for n = 0 (no data, no rate)', () => {
    const r = wilsonInterval(0, 0)
    expect(r.rate).toBeNaN()
    expect(r.low).toBeNaN()
    expect(r.high).toBeNaN()
  })

  it('widens with confidence', () => {
    const r90 = wilsonInterval(81, 263, 0.9)
    const r99 = wilsonInterval(81, 263, 0.99)
    expect(r99.high - r99.low).toBeGreaterThan(r90.high - r90.low)
  })
})

describe('meanInterval', () => {
  it('matches R t.test on the sleep differences (paired): mean 1.58, CI 0.7001142–2.4598858', () => {
    // R: with(sleep, t.test(extra[group == 2], extra[group == 1], paired = TRUE)):
    // t = 4.0621, df = 9, p = 0.002833, 95% CI 0.7001142 2.4598858, mean difference 1.58.
    const diffs = SLEEP_2.map((x, i) => x - (SLEEP_1[i] ?? 0))
    const r = meanInterval(summarise(diffs))
    expect(r.mean).toBeCloseTo(1.58, 10)
    expect(r.df).toBe(9)
    expect(r.mean / r.se).toBeCloseTo(4.0621, 4)
    expect(r.low).toBeCloseTo(0.7001142, 6)
    expect(r.high).toBeCloseTo(2.4598858, 6)
  })

  it('uses the n − 1 sample variance: R var(sleep$extra[1:10]) = 3.200556', () => {
    const r = meanInterval(summarise(SLEEP_1))
    expect(r.mean).toBeCloseTo(0.75, 12)
    expect(r.variance).toBeCloseTo(3.2005556, 6)
    expect(r.sd).toBeCloseTo(Math.sqrt(3.2005556), 6)
  })

  it('gives NaN bounds below two observations and zero width for constant data', () => {
    expect(meanInterval({ n: 1, sum: 3, sumSquares: 9 }).low).toBeNaN()
    expect(meanInterval({ n: 0, sum: 0, sumSquares: 0 }).mean).toBeNaN()
    const constant = meanInterval({ n: 1000, sum: 700, sumSquares: 490 })
    expect(constant.variance).toBe(0)
    expect(constant.low).toBeCloseTo(0.7, 12)
  })
})

describe('studentQuantile', () => {
  // Any t table (e.g. Fisher & Yates; R qt(0.975, df)): 12.7062 (1), 2.262157 (9), 1.983972 (100).
  it.each([
    [1, 12.706205],
    [9, 2.262157],
    [100, 1.983972],
    [1e9, 1.959964],
  ])('qt(0.975, %d) = %d', (df, expected) => {
    expect(studentQuantile(0.975, df)).toBeCloseTo(expected, 5)
    expect(studentQuantile(0.025, df)).toBeCloseTo(-expected, 5)
  })
})

describe('twoProportionZTest', () => {
  it.each(proportionCases)('$source', (c) => {
    const r = twoProportionZTest(c.control, c.candidate)
    expect(r.z * r.z).toBeCloseTo(c.z2, 3)
    expect(r.pValue / c.pValue).toBeCloseTo(1, 3)
    expect(r.absLift).toBeCloseTo(c.absLift, 6)
    expect(r.absLiftLow).toBeCloseTo(c.absLiftLow, 4)
    expect(r.absLiftHigh).toBeCloseTo(c.absLiftHigh, 4)
    expect(r.relLift).toBeCloseTo(c.relLift, 6)
    expect(r.relLiftLow).toBeCloseTo(c.relLiftLow, 5)
    expect(r.relLiftHigh).toBeCloseTo(c.relLiftHigh, 5)
  })

  it('is antisymmetric: swapping arms flips z and the lift, keeps p', () => {
    const a = { n: 11037, successes: 104 }
    const b = { n: 11034, successes: 189 }
    const ab = twoProportionZTest(a, b)
    const ba = twoProportionZTest(b, a)
    expect(ba.z).toBeCloseTo(-ab.z, 12)
    expect(ba.pValue).toBeCloseTo(ab.pValue, 15)
    expect(ba.absLift).toBeCloseTo(-ab.absLift, 15)
  })
})

describe('welchTTest', () => {
  it('matches R t.test(extra ~ group, data = sleep) (Welch): t = -1.8608, df = 17.776, p = 0.07939', () => {
    // R reports group 1 − group 2: 95% CI -3.3654832 0.2054832. We report candidate (2) − control (1).
    const r = welchTTest(summarise(SLEEP_1), summarise(SLEEP_2))
    expect(r.t).toBeCloseTo(1.8608, 4)
    expect(r.df).toBeCloseTo(17.776, 3)
    expect(r.pValue).toBeCloseTo(0.07939, 5)
    expect(r.absLift).toBeCloseTo(1.58, 12)
    expect(r.absLiftLow).toBeCloseTo(-0.2054832, 6)
    expect(r.absLiftHigh).toBeCloseTo(3.3654832, 6)
  })

  it('relative lift CI by the delta method (Deng, Knoblich & Lu 2018): sleep 2.10667, CI -2.77527–6.98860', () => {
    // Hand-computed with Python NormalDist: r = 2.33/0.75; se = √(v₂/10 + r²·v₁/10)/0.75, v₁ = 3.200556, v₂ = 4.009.
    const r = welchTTest(summarise(SLEEP_1), summarise(SLEEP_2))
    expect(r.relLift).toBeCloseTo(2.1066667, 6)
    expect(r.relLiftLow).toBeCloseTo(-2.7752672, 5)
    expect(r.relLiftHigh).toBeCloseTo(6.9886005, 5)
  })

  it('agrees with the z-test on large 0/1 samples', () => {
    const control = { n: 11037, sum: 104, sumSquares: 104 }
    const candidate = { n: 11034, sum: 189, sumSquares: 189 }
    const w = welchTTest(control, candidate)
    const z = twoProportionZTest({ n: 11037, successes: 104 }, { n: 11034, successes: 189 })
    expect(w.absLift).toBeCloseTo(z.absLift, 12)
    expect(Math.log10(w.pValue)).toBeCloseTo(Math.log10(z.pValue), 0)
  })
})

describe('msprtPValue', () => {
  it('matches the Johari et al. normal-mixture formula: n = 1000/arm, θ̂ = 0.1, σ² = 1, τ² = 0.01 → Λ = 3.27872, p = 0.304997', () => {
    // Hand-computed (Python): V = 2, Λ = √(2/12)·exp(10⁶·0.01·0.01/(2·2·12)).
    const r = msprtPValue(fromMoments(1000, 0, 1), fromMoments(1000, 0.1, 1), { tau2: 0.01 })
    expect(r.n).toBeCloseTo(1000, 9)
    expect(r.lambda).toBeCloseTo(3.278722, 5)
    expect(r.pValue).toBeCloseTo(0.304997, 5)
  })

  it('uses the effective n = V / (σ²_A/n_A + σ²_B/n_B) for unequal arms: 1857.14, p = 0.0108999', () => {
    // Hand-computed (Python): n_A = 1000, σ²_A = 4; n_B = 3000, σ²_B = 9; θ̂ = 0.3; τ² = 0.04.
    const r = msprtPValue(fromMoments(1000, 10, 4), fromMoments(3000, 10.3, 9), { tau2: 0.04 })
    expect(r.n).toBeCloseTo(1857.142857, 5)
    expect(r.lambda).toBeCloseTo(91.744349, 4)
    expect(r.pValue).toBeCloseTo(0.0108999, 6)
  })

  it('is the harmonic mean of the arm sizes when the variances are equal', () => {
    const r = msprtPValue(fromMoments(1000, 0, 1), fromMoments(4000, 0, 1))
    expect(r.n).toBeCloseTo(1600, 9)
  })

  it('decreases as evidence accumulates at a fixed true effect', () => {
    const ps = [1000, 2000, 4000, 8000, 16000].map(
      (n) => msprtPValue(fromMoments(n, 0, 1), fromMoments(n, 0.1, 1), { tau2: 0.01 }).pValue,
    )
    for (let i = 1; i < ps.length; i++) expect(ps[i]).toBeLessThan(ps[i - 1] ?? 1)
    expect(ps.at(-1)).toBeLessThan(1e-6)
  })

  it('is never below the fixed-horizon normal p-value (min over τ² of 1/Λ is z·e^((1−z²)/2) ≥ 2Φ(−z))', () => {
    for (const tau2 of [1e-4, 1e-3, 0.01, 0.1, 1]) {
      for (const theta of [0, 0.02, 0.05, 0.1, 0.2]) {
        const a = fromMoments(2000, 0, 1)
        const b = fromMoments(2000, theta, 1)
        const seq = msprtPValue(a, b, { tau2 }).pValue
        const z = theta / Math.sqrt(2 / 2000)
        const fixed = welchTTest(a, b).pValue
        expect(seq).toBeGreaterThanOrEqual(fixed)
        expect(seq).toBeGreaterThanOrEqual(Math.min(1, z * Math.exp((1 - z * z) / 2)) - 1e-12)
      }
    }
  })

  it('is 1 with no difference and defaults τ² to mde², else to (0.1σ)²', () => {
    expect(msprtPValue(fromMoments(500, 1, 1), fromMoments(500, 1, 1)).pValue).toBe(1)
    expect(msprtPValue(fromMoments(500, 1, 1), fromMoments(500, 1, 1), { mde: 0.2 }).tau2).toBeCloseTo(0.04, 12)
    expect(msprtPValue(fromMoments(500, 1, 4), fromMoments(500, 1, 4)).tau2).toBeCloseTo(0.04, 9)
  })

  it('stays finite for overwhelming evidence (p → 0, not NaN)', () => {
    const r = msprtPValue(fromMoments(1e6, 0, 1), fromMoments(1e6, 1, 1), { tau2: 1 })
    expect(r.pValue).toBe(0)
  })
})

describe('requiredSampleSize', () => {
  it.each(sampleSizeCases)('$source', ({ input, n }) => {
    expect(requiredSampleSize(input as SampleSizeInput)).toBe(n)
  })

  it('grows as alpha shrinks and power grows; NaN for a zero MDE', () => {
    const base = requiredSampleSize({ baselineRate: 0.1, mde: 0.02 })
    expect(requiredSampleSize({ baselineRate: 0.1, mde: 0.02, alpha: 0.01 })).toBeGreaterThan(base)
    expect(requiredSampleSize({ baselineRate: 0.1, mde: 0.02, power: 0.9 })).toBeGreaterThan(base)
    expect(requiredSampleSize({ baselineRate: 0.1, mde: 0 })).toBeNaN()
  })

  it('tests downward when baseline + mde would exceed 1', () => {
    expect(requiredSampleSize({ baselineRate: 0.95, mde: 0.1 })).toBe(requiredSampleSize({ baselineRate: 0.85, mde: 0.1 }))
  })

  it('remainingSamples never goes negative', () => {
    expect(remainingSamples(3841, 1000)).toBe(2841)
    expect(remainingSamples(3841, 5000)).toBe(0)
    expect(remainingSamples(Number.NaN, 5000)).toBeNaN()
  })
})

describe('srmTest', () => {
  it.each(srmCases)('$source', ({ observed, weights, chi2, df, pValue, mismatch }) => {
    const r = srmTest(observed, weights)
    expect(r.chi2).toBeCloseTo(chi2, 3)
    expect(r.df).toBe(df)
    expect(r.pValue / pValue).toBeCloseTo(1, 2)
    expect(r.mismatch).toBe(mismatch)
  })

  it('has nothing to test with one weighted arm or no traffic', () => {
    expect(srmTest([100, 5], [1, 0])).toEqual({ chi2: 0, df: 0, pValue: 1, mismatch: false })
    expect(srmTest([0, 0], [1, 1])).toEqual({ chi2: 0, df: 1, pValue: 1, mismatch: false })
  })

  it('rejects mismatched lengths with a message that says what to pass', () => {
    expect(() => srmTest([1, 2], [1])).toThrow(/one weight per arm/)
  })
})

describe('verdict', () => {
  const base: VerdictInput = {
    srmMismatch: false,
    controlOutcomes: 5000,
    candidateOutcomes: 5000,
    pSequential: 0.5,
    absLift: 0.01,
    requiredPerArm: 10000,
  }

  it.each<[string, Partial<VerdictInput>, string]>([
    ['SRM wins over a significant result', { srmMismatch: true, pSequential: 1e-9 }, 'sample ratio mismatch: investigate'],
    ['SRM wins over too little data', { srmMismatch: true, controlOutcomes: 3 }, 'sample ratio mismatch: investigate'],
    ['below the minimum sample, even if significant', { candidateOutcomes: 99, pSequential: 1e-9 }, 'collecting data'],
    ['configurable minimum sample', { candidateOutcomes: 99, pSequential: 1e-9, minSamplePerArm: 50 }, 'candidate better'],
    ['not significant, required sample not reached', {}, 'collecting data'],
    ['significant, positive lift', { pSequential: 0.01 }, 'candidate better'],
    ['significant, negative lift', { pSequential: 0.01, absLift: -0.01 }, 'candidate worse'],
    ['lower is better flips the sign', { pSequential: 0.01, higherIsBetter: false }, 'candidate worse'],
    ['lower is better, negative lift', { pSequential: 0.01, absLift: -0.01, higherIsBetter: false }, 'candidate better'],
    ['p exactly alpha is not significant', { pSequential: 0.05 }, 'collecting data'],
    ['custom alpha', { pSequential: 0.03, alpha: 0.01 }, 'collecting data'],
    ['required sample reached, not significant', { requiredPerArm: 5000 }, 'no detectable difference'],
    ['unknown required sample keeps collecting', { requiredPerArm: Number.NaN }, 'collecting data'],
    ['NaN p-value is not significant', { pSequential: Number.NaN, requiredPerArm: 100 }, 'no detectable difference'],
  ])('%s', (_name, patch, expected) => {
    expect(verdict({ ...base, ...patch })).toBe(expected)
  })

  it('combineVerdicts puts a regression first', () => {
    expect(combineVerdicts(['candidate better', 'candidate worse'])).toBe('candidate worse')
    expect(combineVerdicts(['no detectable difference', 'collecting data'])).toBe('collecting data')
    expect(combineVerdicts([])).toBe('collecting data')
  })
})

describe('analyseExperiment', () => {
  const binary: ExperimentInput = {
    type: 'binary',
    control: 'v1',
    weights: { v1: 50, v2: 50 },
    mde: 0.02,
    models: {
      v1: { assignments: 20000, n: 20000, sum: 2000, sumSquares: 2000 },
      v2: { assignments: 20050, n: 20050, sum: 2600, sumSquares: 2600 },
    },
  }

  it('reports a clear binary win with snake_case, JSON-safe fields', () => {
    const report = analyseExperiment(binary)
    const json: unknown = JSON.parse(JSON.stringify(report))
    expect(json).toEqual(report)
    expect(report.verdict).toBe('candidate better')
    expect(report.srm.mismatch).toBe(false)
    expect(report.srm.df).toBe(1)
    expect(report.models.v1).toMatchObject({ weight: 50, assignments: 20000, outcomes: 20000, rate: 0.1 })
    const c = report.comparisons.v2
    expect(c).toBeDefined()
    expect(Object.keys(c ?? {}).sort()).toEqual([
      'abs_lift',
      'abs_lift_ci',
      'p_value',
      'p_value_sequential',
      'rel_lift',
      'rel_lift_ci',
      'remaining',
      'required_per_arm',
      'verdict',
    ])
    expect(c?.abs_lift).toBeCloseTo(2600 / 20050 - 0.1, 12)
    expect(c?.required_per_arm).toBe(3841)
    expect(c?.remaining).toBe(0)
    expect(c?.p_value_sequential).toBeGreaterThanOrEqual(c?.p_value ?? 1)
  })

  it('says candidate worse when lower is better', () => {
    expect(analyseExperiment({ ...binary, higherIsBetter: false }).verdict).toBe('candidate worse')
  })

  it('flags SRM over assignments, whatever the outcomes say', () => {
    const skewed = { ...binary, models: { ...binary.models, v2: { assignments: 21200, n: 20050, sum: 2600, sumSquares: 2600 } } }
    const report = analyseExperiment(skewed)
    expect(report.srm.mismatch).toBe(true)
    expect(report.verdict).toBe('sample ratio mismatch: investigate')
    expect(report.comparisons.v2?.verdict).toBe('sample ratio mismatch: investigate')
  })

  it('says no detectable difference once the required sample is reached with equal rates', () => {
    const report = analyseExperiment({
      ...binary,
      models: {
        v1: { assignments: 5000, n: 5000, sum: 500, sumSquares: 500 },
        v2: { assignments: 5000, n: 5000, sum: 500, sumSquares: 500 },
      },
    })
    expect(report.comparisons.v2?.p_value).toBeCloseTo(1, 12)
    expect(report.verdict).toBe('no detectable difference')
  })

  it('collects data at the start and reports nulls, not NaN, for empty arms', () => {
    const report = analyseExperiment({
      ...binary,
      weights: { v1: 50, v2: 50, v3: 0 },
      models: {
        v1: { assignments: 0, n: 0, sum: 0, sumSquares: 0 },
        v2: { assignments: 0, n: 0, sum: 0, sumSquares: 0 },
      },
    })
    expect(report.verdict).toBe('collecting data')
    expect(report.models.v1).toMatchObject({ rate: null, ci: [null, null] })
    expect(report.models.v3).toMatchObject({ weight: 0, assignments: 0, outcomes: 0 })
    expect(report.comparisons.v3).toBeUndefined()
    expect(report.comparisons.v2?.p_value).toBeNull()
    expect(report.comparisons.v2?.required_per_arm).toBeNull()
    expect(JSON.stringify(report)).not.toMatch(/NaN/)
  })

  it('analyses a continuous metric with Welch and the pooled-sd sample size', () => {
    const control = fromMoments(400, 120, 900)
    const candidate = fromMoments(410, 112, 1000)
    const report = analyseExperiment({
      type: 'continuous',
      control: 'v1',
      weights: { v1: 1, v2: 1 },
      mde: 5,
      higherIsBetter: false,
      models: { v1: { assignments: 400, ...control }, v2: { assignments: 410, ...candidate } },
    })
    const w = welchTTest(control, candidate)
    expect(report.models.v1).toMatchObject({ mean: 120 })
    expect(report.comparisons.v2?.p_value).toBeCloseTo(w.pValue, 12)
    // 2σ² = 900 + 1000: n = 1900·(1.959964 + 0.841621)²/25 = 596.6 → 597.
    expect(report.comparisons.v2?.required_per_arm).toBe(597)
    expect(report.comparisons.v2?.remaining).toBe(197)
    expect(moments(control).variance).toBeCloseTo(900, 6)
    expect(report.verdict).toBe('candidate better')
  })

  it('names the missing control', () => {
    expect(() => analyseExperiment({ ...binary, control: 'v0' })).toThrow(/control "v0"/)
  })
})

/** Deterministic normal draws: a 31-bit LCG through Box–Muller. */
function draws(n: number, mean: number, sd: number, seed: number): number[] {
  let state = seed
  const uniform = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648
    return (state + 0.5) / 2147483648
  }
  return Array.from({ length: n }, () => mean + sd * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()))
}

/** Σ with Neumaier's compensation: exact to about one rounding. */
function fsum(values: Iterable<number>): number {
  let s = 0
  let c = 0
  for (const x of values) {
    const t = s + x
    c += Math.abs(s) >= Math.abs(x) ? (s - t) + x : (x - t) + s
    s = t
  }
  return s + c
}

/** The two-pass reference: compensated mean of x − x₀, then compensated Σ(x − mean)². */
function twoPass(values: readonly number[]): Totals {
  const n = values.length
  const shift = values[0] ?? 0
  const offset = fsum(values.map((x) => x - shift)) / n
  return { n, sum: fsum(values), shift, offset, m2: fsum(values.map((x) => (x - shift - offset) ** 2)) }
}

function accumulate(values: readonly number[]): Totals {
  const acc = new Accumulator()
  for (const x of values) acc.add(x)
  return acc.totals()
}

const relative = (got: number, want: number): number => Math.abs(got / want - 1)

describe('stable totals (Welford on shifted values)', () => {
  const control = draws(10_000, 1e6, 0.25, 7)
  const candidate = draws(10_000, 1e6 + 0.01, 0.25, 11)

  it('values near 1e6 with sd 0.25: Welch p and CI half-width equal a two-pass reference to 1e-9', () => {
    const want = welchTTest(twoPass(control), twoPass(candidate))
    const got = welchTTest(accumulate(control), accumulate(candidate))
    expect(want.pValue).toBeGreaterThan(1e-4)
    expect(want.pValue).toBeLessThan(0.5)
    expect(relative(got.pValue, want.pValue)).toBeLessThan(1e-9)
    expect(relative(got.absLiftHigh - got.absLift, want.absLiftHigh - want.absLift)).toBeLessThan(1e-9)
    const ciWant = meanInterval(twoPass(control))
    const ciGot = meanInterval(accumulate(control))
    expect(relative(ciGot.high - ciGot.mean, ciWant.high - ciWant.mean)).toBeLessThan(1e-9)
    expect(relative(msprtPValue(accumulate(control), accumulate(candidate), { mde: 0.01 }).pValue, msprtPValue(twoPass(control), twoPass(candidate), { mde: 0.01 }).pValue)).toBeLessThan(1e-9)
  })

  it('the same data as raw sums (what Prometheus keeps) loses the variance to cancellation', () => {
    const want = welchTTest(twoPass(control), twoPass(candidate))
    const raw = welchTTest(summarise(control), summarise(candidate))
    expect(relative(raw.pValue, want.pValue)).toBeGreaterThan(1e-3)
  })

  it('matches the textbook on small data: R var(sleep$extra[1:10]) = 3.200556', () => {
    const t = accumulate(SLEEP_1)
    expect(t.sum).toBeCloseTo(7.5, 12)
    expect(moments(t).mean).toBeCloseTo(0.75, 12)
    expect(moments(t).variance).toBeCloseTo(3.2005556, 6)
    expect(welchTTest(accumulate(SLEEP_1), accumulate(SLEEP_2)).pValue).toBeCloseTo(welchTTest(summarise(SLEEP_1), summarise(SLEEP_2)).pValue, 12)
  })

  it('keeps 0/1 sums exact and gives NaN moments below one and two values', () => {
    const acc = new Accumulator()
    expect(moments(acc.totals()).mean).toBeNaN()
    for (let i = 0; i < 1000; i++) acc.add(i % 3 === 0 ? 1 : 0)
    expect(acc.sum).toBe(334)
    expect(moments(acc.totals()).mean).toBeCloseTo(0.334, 12)
    const one = new Accumulator()
    one.add(5)
    expect(moments(one.totals())).toMatchObject({ n: 1, mean: 5 })
    expect(moments(one.totals()).variance).toBeNaN()
  })

  it('analyseExperiment reads stable totals for continuous metrics', () => {
    const report = analyseExperiment({
      type: 'continuous', control: 'v1', weights: { v1: 1, v2: 1 }, mde: 0.01,
      models: { v1: { assignments: 10_000, ...accumulate(control) }, v2: { assignments: 10_000, ...accumulate(candidate) } },
    })
    const want = welchTTest(twoPass(control), twoPass(candidate))
    expect(relative(report.comparisons.v2?.p_value ?? 0, want.pValue)).toBeLessThan(1e-9)
  })
})
