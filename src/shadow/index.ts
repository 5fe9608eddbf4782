export { ShadowDispatcher } from './dispatch.js'
export type { ShadowOutcome, ShadowSink } from './dispatch.js'
export { Observation, Observer } from './observation.js'
export type { PredictionRecord, RecordSink, ShadowDrop, ShadowResult } from './observation.js'
