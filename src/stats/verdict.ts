/** The verdict strings shown to users, exactly. */
export type Verdict =
  | 'collecting data'
  | 'candidate better'
  | 'candidate worse'
  | 'no detectable difference'
  | 'sample ratio mismatch: investigate'

/** What the verdict rule looks at for one candidate against the control. */
export interface VerdictInput {
  /** From srmTest over all arms. */
  readonly srmMismatch: boolean
  /** Outcomes recorded in the control arm. */
  readonly controlOutcomes: number
  /** Outcomes recorded in the candidate arm. */
  readonly candidateOutcomes: number
  /** Always-valid (mSPRT) p-value. */
  readonly pSequential: number
  /** Candidate − control. */
  readonly absLift: number
  /** Per-arm sample size needed for the MDE (NaN if unknown). */
  readonly requiredPerArm: number
  /** Significance level; default 0.05. */
  readonly alpha?: number
  /** Outcomes each arm needs before any call is made; default 100. */
  readonly minSamplePerArm?: number
  /** Whether a higher metric is an improvement; default true. */
  readonly higherIsBetter?: boolean
}

/**
 * Verdict for one candidate, first matching rule wins: SRM mismatch → `sample ratio mismatch: investigate`;
 * either arm below `minSamplePerArm` outcomes → `collecting data`; always-valid p < alpha → `candidate better`
 * or `candidate worse` by the lift's sign (flipped when `higherIsBetter` is false); both arms at or above
 * the required sample size → `no detectable difference`; otherwise `collecting data`.
 */
export function verdict(input: VerdictInput): Verdict {
  const alpha = input.alpha ?? 0.05
  const minSample = input.minSamplePerArm ?? 100
  const higherIsBetter = input.higherIsBetter ?? true
  if (input.srmMismatch) return 'sample ratio mismatch: investigate'
  const smallest = Math.min(input.controlOutcomes, input.candidateOutcomes)
  if (!(smallest >= minSample)) return 'collecting data'
  if (input.pSequential < alpha && input.absLift !== 0 && !Number.isNaN(input.absLift)) {
    return input.absLift > 0 === higherIsBetter ? 'candidate better' : 'candidate worse'
  }
  if (smallest >= input.requiredPerArm) return 'no detectable difference'
  return 'collecting data'
}

// Order used to summarise several candidates in one word: a regression is the most urgent news.
const SEVERITY: readonly Verdict[] = [
  'sample ratio mismatch: investigate',
  'candidate worse',
  'candidate better',
  'collecting data',
  'no detectable difference',
]

/** Combines per-candidate verdicts into one: the first present in SRM, worse, better, collecting, no difference. */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  for (const v of SEVERITY) if (verdicts.includes(v)) return v
  return 'collecting data'
}
