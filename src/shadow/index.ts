export { ShadowDispatcher, mirrorHeaders } from './dispatch.js'
export type { MirrorRequest, ShadowOutcome } from './dispatch.js'
export { Observation, Observer } from './observation.js'
export type { PredictionRecord, RecordSink } from './observation.js'
