export { analyseExperiment } from './analyse.js'
export type {
  ComparisonReport,
  ExperimentInput,
  ExperimentReport,
  JsonInterval,
  MetricType,
  ModelReport,
  ModelTotals,
  SrmReport,
} from './analyse.js'
export { twoProportionZTest, welchTTest } from './comparisons.js'
export type { Lift, Proportion, WelchResult, ZTestResult } from './comparisons.js'
export { meanInterval, wilsonInterval } from './intervals.js'
export type { MeanInterval, RateInterval } from './intervals.js'
export { remainingSamples, requiredSampleSize } from './sample-size.js'
export type { BinarySampleSizeInput, ContinuousSampleSizeInput, SampleSizeInput } from './sample-size.js'
export { msprtFromVariance, msprtPValue } from './sequential.js'
export type { MsprtOptions, MsprtResult } from './sequential.js'
export { srmTest } from './srm.js'
export type { SrmResult } from './srm.js'
export { Accumulator, meanDifference, moments } from './summary.js'
export type { Moments, Sample, Summary, Totals } from './summary.js'
export { combineVerdicts, verdict } from './verdict.js'
export type { Verdict, VerdictInput } from './verdict.js'
export { phi, phiInverse, studentCdf, studentQuantile, studentTwoSidedP, zCritical } from './distributions.js'
export { logFactorial, signTestP, winRate } from './win-rate.js'
export type { WinRate, WinTally } from './win-rate.js'
