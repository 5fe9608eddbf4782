// Primary vs shadow prediction comparison: pure functions, no I/O, no imports from the rest of src.
export { parseModelJson } from './parse-json.js'
export type { ParseResult } from './parse-json.js'
export { parseJsonPointer, getByPointer } from './pointer.js'
export type { PointerLookup } from './pointer.js'
export { compilePredictionSpec, extractPrediction } from './extract.js'
export type { PredictionSpec, ExtractResult } from './extract.js'
export { comparePredictions } from './compare.js'
export type { CompareOptions, Comparison } from './compare.js'
