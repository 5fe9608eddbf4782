import { srmTest } from '../stats/index.js'
import type { ExperimentInput } from './types.js'
import type { SrmReport } from './report.js'

/** The sample-ratio check: on users where the unit is the user and users are counted, else on requests. */
export function srmOf(input: ExperimentInput): SrmReport {
  const arms = input.arms
  const byUser = input.analysis.unit === 'user' && arms.some((a) => a.users !== undefined)
  const observed = arms.map((a) => (byUser ? a.users ?? 0 : a.requests))
  const expected = arms.map((a) => (byUser ? a.expectedUsers : a.expectedRequests) ?? Number.NaN)
  const weights = expected.every((e) => Number.isFinite(e)) && expected.some((e) => e > 0) ? expected : arms.map((a) => a.weight)
  const t = srmTest(observed, weights)
  return {
    unit: byUser ? 'user' : 'request',
    chi2: t.chi2,
    df: t.df,
    p_value: t.pValue,
    mismatch: t.mismatch,
    observed: Object.fromEntries(arms.map((a, i) => [a.model, observed[i] as number])),
    ...(byUser && input.userSampleFraction !== undefined ? { sampled_fraction: input.userSampleFraction } : {}),
  }
}
