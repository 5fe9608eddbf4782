import { setOwn } from './parse-json.js'
import { getByPointer, parseJsonPointer } from './pointer.js'

/**
 * Where to find the prediction in a response body: `'auto'` recognises the common model-server
 * shapes; a pointer selects one path. `tokens` is filled by `compilePredictionSpec` so requests
 * never re-parse the pointer.
 */
export type PredictionSpec = 'auto' | { readonly pointer: string; readonly tokens?: readonly string[] }

/** Outcome of pulling the prediction out of a parsed response body. */
export type ExtractResult = { ok: true; value: unknown } | { ok: false; reason: string }

const EXPECTED = 'expected "predictions", "outputs", "data.ndarray", "data.tensor" or a top-level array'

/** Turns a config string (`auto` or an RFC 6901 JSON Pointer) into a spec, throwing on an invalid pointer. */
export function compilePredictionSpec(spec: string): PredictionSpec {
  if (spec === 'auto') return 'auto'
  let tokens: string[]
  try {
    tokens = parseJsonPointer(spec)
  } catch (err) {
    throw new Error(`invalid prediction spec: ${(err as Error).message}; or write "auto"`, { cause: err })
  }
  return Object.freeze({ pointer: spec, tokens: Object.freeze(tokens) })
}

/** Finds the prediction inside a parsed response body, by pointer or by recognising the server's shape. */
export function extractPrediction(body: unknown, spec: PredictionSpec): ExtractResult {
  if (spec !== 'auto') return extractByPointer(body, spec)
  if (Array.isArray(body)) {
    // MLflow 1.x scoring server answers with a bare list.
    return { ok: true, value: body }
  }
  if (!isRecord(body)) {
    return { ok: false, reason: `no prediction found: ${EXPECTED}, got ${describe(body)}` }
  }
  // MLflow 2.x, KServe v1 and TF Serving's row format all use "predictions".
  if (Object.hasOwn(body, 'predictions')) return { ok: true, value: body.predictions }
  if (Object.hasOwn(body, 'outputs')) {
    const outputs = body.outputs
    // Open Inference Protocol v2 (KServe v2, Triton): a list of named tensors; TF Serving's
    // columnar format puts the prediction itself under "outputs".
    return isV2TensorList(outputs) ? fromV2Outputs(outputs) : { ok: true, value: outputs }
  }
  const data = body.data
  if (isRecord(data)) {
    // Seldon Core v1 protocol.
    if (Object.hasOwn(data, 'ndarray')) return { ok: true, value: data.ndarray }
    if (isRecord(data.tensor)) return fromSeldonTensor(data.tensor)
  }
  return { ok: false, reason: `no prediction found: ${EXPECTED}, got ${describe(body)}` }
}

function extractByPointer(body: unknown, spec: { readonly pointer: string; readonly tokens?: readonly string[] }): ExtractResult {
  let tokens = spec.tokens
  if (tokens === undefined) {
    // A hand-built spec skipped compilePredictionSpec; the shadow path reports, never throws.
    try {
      tokens = parseJsonPointer(spec.pointer)
    } catch (err) {
      return { ok: false, reason: (err as Error).message }
    }
  }
  const found = getByPointer(body, tokens)
  return found.found ? { ok: true, value: found.value } : { ok: false, reason: `no value at ${spec.pointer}` }
}

type V2Tensor = { name: string; shape: unknown[]; datatype: string; data?: unknown; parameters?: unknown }

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isV2Tensor(value: unknown): value is V2Tensor {
  return isRecord(value) && typeof value.name === 'string' && Array.isArray(value.shape) && typeof value.datatype === 'string'
}

function isV2TensorList(value: unknown): value is V2Tensor[] {
  return Array.isArray(value) && value.length > 0 && value.every(isV2Tensor)
}

function fromV2Outputs(outputs: V2Tensor[]): ExtractResult {
  if (outputs.length === 1) return v2TensorValue(outputs[0] as V2Tensor)
  // Several outputs (e.g. "label" and "probabilities"): compare them field by field by name.
  const byName: Record<string, unknown> = {}
  for (const output of outputs) {
    const tensor = v2TensorValue(output)
    if (!tensor.ok) return tensor
    setOwn(byName, output.name, tensor.value)
  }
  return { ok: true, value: byName }
}

function v2TensorValue(output: V2Tensor): ExtractResult {
  const what = `output "${output.name}"`
  if (!Array.isArray(output.data)) {
    // The binary tensor extension moves the bytes out of the JSON body.
    return { ok: false, reason: `${what} has no "data" array (binary tensor data is not supported)` }
  }
  // OIP v2 allows "data" nested as well as flat; flatten only in that rare case.
  const data = output.data.some(Array.isArray) ? output.data.flat(Infinity) : output.data
  return reshape(data, output.shape, what)
}

function fromSeldonTensor(tensor: Record<string, unknown>): ExtractResult {
  if (!Array.isArray(tensor.shape) || !Array.isArray(tensor.values)) {
    return { ok: false, reason: 'data.tensor needs "shape" and "values" arrays' }
  }
  return reshape(tensor.values, tensor.shape, 'data.tensor')
}

/** Rebuilds nested row-major arrays from flat `data` and a tensor `shape`. */
function reshape(data: readonly unknown[], shape: readonly unknown[], what: string): ExtractResult {
  let size = 1
  for (const dim of shape) {
    if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 0) {
      return { ok: false, reason: `${what} has an invalid shape ${JSON.stringify(shape)}` }
    }
    size *= dim
  }
  if (size !== data.length) {
    return {
      ok: false,
      reason: `${what} has shape ${JSON.stringify(shape)} (${size} elements) but ${data.length} data values`,
    }
  }
  // A rank-0 tensor is a scalar; a rank-1 tensor is the data itself.
  if (shape.length === 0) return { ok: true, value: data[0] }
  if (shape.length === 1) return { ok: true, value: data }
  return { ok: true, value: build(data, shape as readonly number[], 0, 0) }
}

function build(data: readonly unknown[], shape: readonly number[], axis: number, offset: number): unknown[] {
  const length = shape[axis] as number
  if (axis === shape.length - 1) return data.slice(offset, offset + length)
  let stride = 1
  for (let j = axis + 1; j < shape.length; j++) stride *= shape[j] as number
  const out = new Array<unknown>(length)
  for (let i = 0; i < length; i++) out[i] = build(data, shape, axis + 1, offset + i * stride)
  return out
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value !== 'object') return `a ${typeof value}`
  const keys = Object.keys(value)
  return objectWithKeys(keys.length === 0 ? null : keys.slice(0, 5).map((k) => JSON.stringify(k)).join(', '), keys.length > 5)
}

function objectWithKeys(shownKeys: string | null, hasMore: boolean): string {
  return shownKeys === null ? 'an empty object' : `an object with keys ${shownKeys}${hasMore ? ', …' : ''}`
}

/**
 * Why `prediction: auto` finds nothing in an object without "predictions", "outputs" or "data",
 * from its keys: the first five as JSON, joined by ", " (null: it has none), and whether it has more.
 * The text extractPrediction gives for the parsed object, for a caller that read the keys unparsed.
 */
export function noAutoPredictionReason(shownKeys: string | null, hasMore: boolean): string {
  return `no prediction found: ${EXPECTED}, got ${objectWithKeys(shownKeys, hasMore)}`
}
