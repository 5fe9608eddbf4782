// Tensor answers of inference servers, decoded and compared output by output, instance by
// instance. Pure. Formats: the Open Inference Protocol (KServe v2) gRPC ModelInferResponse and
// REST `/v2/models/{name}/infer` JSON (https://github.com/kserve/open-inference-protocol), and TF
// Serving's PredictResponse (tensorflow/core/framework/tensor.proto).
import { bytesOf, fields, pushFixed, pushVarints, stringOf, type WireField } from './protobuf.js'

/** A tensor's elements, flattened row-major: numbers, 64-bit integers exactly, or byte strings. */
export type TensorData =
  | { readonly kind: 'number'; readonly values: number[] }
  | { readonly kind: 'bigint'; readonly values: bigint[] }
  | { readonly kind: 'bytes'; readonly values: Buffer[] }

export interface Tensor {
  readonly name: string
  /** OIP datatype names: BOOL, UINT8…UINT64, INT8…INT64, FP16, BF16, FP32, FP64, BYTES. */
  readonly datatype: string
  readonly shape: readonly number[]
  readonly data: TensorData
}

const WIDTH: Record<string, number> = {
  BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, BF16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8,
}

/** An IEEE 754 half (binary16) from its bits. */
export function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exp = (bits >> 10) & 0x1f
  const frac = bits & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

function elementCount(shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Elements from raw little-endian bytes by datatype (BYTES: each a 4-byte LE length, then its bytes). */
export function decodeRaw(datatype: string, raw: Buffer): TensorData {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length)
  if (datatype === 'BYTES') {
    const values: Buffer[] = []
    let i = 0
    while (i < raw.length) {
      if (i + 4 > raw.length) throw new Error('BYTES contents end inside a length prefix')
      const n = view.getUint32(i, true)
      if (i + 4 + n > raw.length) throw new Error('a BYTES element runs past the end of its contents')
      values.push(raw.subarray(i + 4, i + 4 + n))
      i += 4 + n
    }
    return { kind: 'bytes', values }
  }
  const width = WIDTH[datatype]
  if (width === undefined) throw new Error(`unknown datatype ${datatype}`)
  if (raw.length % width !== 0) throw new Error(`${raw.length} raw bytes are not a whole number of ${datatype} elements`)
  const n = raw.length / width
  if (datatype === 'INT64' || datatype === 'UINT64') {
    const values: bigint[] = new Array(n)
    for (let k = 0; k < n; k++) values[k] = datatype === 'INT64' ? view.getBigInt64(k * 8, true) : view.getBigUint64(k * 8, true)
    return { kind: 'bigint', values }
  }
  const values: number[] = new Array(n)
  for (let k = 0; k < n; k++) {
    const at = k * width
    switch (datatype) {
      case 'BOOL': values[k] = view.getUint8(at) === 0 ? 0 : 1; break
      case 'UINT8': values[k] = view.getUint8(at); break
      case 'INT8': values[k] = view.getInt8(at); break
      case 'UINT16': values[k] = view.getUint16(at, true); break
      case 'INT16': values[k] = view.getInt16(at, true); break
      case 'FP16': values[k] = halfToNumber(view.getUint16(at, true)); break
      case 'BF16': values[k] = new Float32Array(new Uint32Array([view.getUint16(at, true) << 16]).buffer)[0] as number; break
      case 'UINT32': values[k] = view.getUint32(at, true); break
      case 'INT32': values[k] = view.getInt32(at, true); break
      case 'FP32': values[k] = view.getFloat32(at, true); break
      default: values[k] = view.getFloat64(at, true)
    }
  }
  return { kind: 'number', values }
}

// --- OIP gRPC: ModelInferResponse ----------------------------------------------------------------

/**
 * The outputs of an OIP ModelInferResponse (outputs = 5, raw_output_contents = 6). Each output's
 * elements come from raw_output_contents[i] when the answer uses raw contents, else from the
 * typed InferTensorContents field its datatype uses.
 */
export function decodeInferResponse(msg: Buffer): Tensor[] {
  return decodeInferTensors(msg, 5, 6, 'output')
}

/**
 * The inputs of an OIP ModelInferRequest (inputs = 5, raw_input_contents = 7), read as the
 * answer's outputs are: an InferInputTensor has the same fields as an output tensor.
 */
export function decodeInferRequest(msg: Buffer): Tensor[] {
  return decodeInferTensors(msg, 5, 7, 'input')
}

function decodeInferTensors(msg: Buffer, tensorField: number, rawField: number, what: 'input' | 'output'): Tensor[] {
  const outputs: WireField[] = []
  const raws: Buffer[] = []
  for (const f of fields(msg)) {
    if (f.number === tensorField && f.wire === 2) outputs.push(f)
    else if (f.number === rawField && f.wire === 2) raws.push(bytesOf(msg, f))
  }
  if (raws.length > 0 && raws.length !== outputs.length) throw new Error(`${outputs.length} ${what}s but ${raws.length} raw_${what}_contents`)
  return outputs.map((o, i) => {
    const body = bytesOf(msg, o)
    let name = ''
    let datatype = ''
    const shape: bigint[] = []
    let contents: Buffer | null = null
    for (const f of fields(body)) {
      if (f.number === 1) name = stringOf(body, f)
      else if (f.number === 2) datatype = stringOf(body, f)
      else if (f.number === 3) pushVarints(body, f, shape)
      else if (f.number === 5) contents = bytesOf(body, f)
    }
    const dims = shape.map((d) => Number(BigInt.asIntN(64, d)))
    const raw = raws[i]
    const data = raw !== undefined ? decodeRaw(datatype, raw) : typedContents(datatype, contents ?? Buffer.alloc(0))
    return checked({ name, datatype, shape: dims, data })
  })
}

/** Which InferTensorContents field holds each datatype (BOOL 1, INT* 2, INT64 3, UINT* 4, UINT64 5, FP32 6, FP64 7, BYTES 8). */
function typedContents(datatype: string, msg: Buffer): TensorData {
  const field = { BOOL: 1, INT8: 2, INT16: 2, INT32: 2, INT64: 3, UINT8: 4, UINT16: 4, UINT32: 4, UINT64: 5, FP32: 6, FP64: 7, BYTES: 8 }[datatype]
  if (field === undefined) throw new Error(`datatype ${datatype} has no typed contents: it must come as raw_output_contents`)
  const ints: bigint[] = []
  const floats: number[] = []
  const bytes: Buffer[] = []
  for (const f of fields(msg)) {
    if (f.number !== field) continue
    if (field === 6 || field === 7) pushFixed(msg, f, field === 6 ? 4 : 8, floats)
    else if (field === 8) bytes.push(bytesOf(msg, f))
    else pushVarints(msg, f, ints)
  }
  if (field === 8) return { kind: 'bytes', values: bytes }
  if (field === 6 || field === 7) return { kind: 'number', values: floats }
  if (field === 3) return { kind: 'bigint', values: ints.map((v) => BigInt.asIntN(64, v)) }
  if (field === 5) return { kind: 'bigint', values: ints }
  // int32 travels sign-extended to 64 bits; bool is 0/1.
  return { kind: 'number', values: ints.map((v) => field === 2 ? Number(BigInt.asIntN(32, v)) : Number(BigInt.asUintN(32, v))) }
}

function checked(t: Tensor): Tensor {
  const n = elementCount(t.shape)
  if (t.data.values.length !== n) throw new Error(`output "${t.name}": shape [${t.shape.join(', ')}] holds ${n} elements, its contents ${t.data.values.length}`)
  return t
}

// --- TF Serving: PredictResponse -------------------------------------------------------------------

/** TensorFlow DataType enum → OIP datatype (types.proto). */
const TF_TYPES: Record<number, string> = {
  1: 'FP32', 2: 'FP64', 3: 'INT32', 4: 'UINT8', 5: 'INT16', 6: 'INT8', 7: 'BYTES', 9: 'INT64', 10: 'BOOL', 14: 'BF16', 17: 'UINT16', 19: 'FP16', 22: 'UINT32', 23: 'UINT64',
}

/** The outputs of a TF Serving PredictResponse (map<string, TensorProto> outputs = 1), in name order. */
export function decodePredictResponse(msg: Buffer): Tensor[] {
  return decodeTensorMap(msg, 1)
}

/** The inputs of a TF Serving PredictRequest (map<string, TensorProto> inputs = 2), in name order. */
export function decodePredictRequest(msg: Buffer): Tensor[] {
  return decodeTensorMap(msg, 2)
}

function decodeTensorMap(msg: Buffer, mapField: number): Tensor[] {
  const out: Tensor[] = []
  for (const f of fields(msg)) {
    if (f.number !== mapField || f.wire !== 2) continue
    const entry = bytesOf(msg, f)
    let name = ''
    let tensor: Buffer | null = null
    for (const e of fields(entry)) {
      if (e.number === 1) name = stringOf(entry, e)
      else if (e.number === 2) tensor = bytesOf(entry, e)
    }
    out.push(decodeTensorProto(name, tensor ?? Buffer.alloc(0)))
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/**
 * A TensorProto: dtype 1, tensor_shape 2 (dim 2 → size 1), tensor_content 4 (raw little-endian),
 * or the typed *_val fields; fewer values than elements repeat the last (TF's own rule).
 */
export function decodeTensorProto(name: string, msg: Buffer): Tensor {
  let dtype = 0
  const shape: number[] = []
  let content: Buffer | null = null
  const ints: bigint[] = []
  const floats: number[] = []
  const strings: Buffer[] = []
  for (const f of fields(msg)) {
    switch (f.number) {
      case 1: { const v: bigint[] = []; pushVarints(msg, f, v); dtype = Number(v[0] ?? 0n); break }
      case 2: {
        const s = bytesOf(msg, f)
        for (const d of fields(s)) {
          if (d.number !== 2) continue
          const dim = bytesOf(s, d)
          let size = 0
          for (const x of fields(dim)) if (x.number === 1) { const v: bigint[] = []; pushVarints(dim, x, v); size = Number(BigInt.asIntN(64, v[0] ?? 0n)) }
          shape.push(size)
        }
        break
      }
      case 4: content = bytesOf(msg, f); break
      case 5: pushFixed(msg, f, 4, floats); break
      case 6: pushFixed(msg, f, 8, floats); break
      case 8: strings.push(bytesOf(msg, f)); break
      case 7: case 10: case 11: case 13: case 16: case 17: pushVarints(msg, f, ints); break
    }
  }
  const datatype = TF_TYPES[dtype]
  if (datatype === undefined) throw new Error(`output "${name}": unsupported TensorFlow dtype ${dtype}`)
  const n = elementCount(shape)
  let data: TensorData
  if (content !== null && datatype !== 'BYTES') data = decodeRaw(datatype, content)
  else if (datatype === 'BYTES') data = { kind: 'bytes', values: repeatLast(strings, n) }
  else if (datatype === 'FP32' || datatype === 'FP64') data = { kind: 'number', values: repeatLast(floats, n) }
  else if (datatype === 'INT64') data = { kind: 'bigint', values: repeatLast(ints.map((v) => BigInt.asIntN(64, v)), n) }
  else if (datatype === 'UINT64') data = { kind: 'bigint', values: repeatLast(ints, n) }
  else if (datatype === 'FP16') data = { kind: 'number', values: repeatLast(ints.map((v) => halfToNumber(Number(v & 0xffffn))), n) }
  else if (datatype === 'BF16') data = decodeRaw('BF16', Buffer.from(new Uint16Array(repeatLast(ints.map((v) => Number(v & 0xffffn)), n)).buffer))
  else data = { kind: 'number', values: repeatLast(ints.map((v) => datatype === 'UINT32' || datatype === 'BOOL' ? Number(BigInt.asUintN(32, v)) : Number(BigInt.asIntN(32, v))), n) }
  return checked({ name, datatype, shape, data })
}

function repeatLast<T>(values: T[], n: number): T[] {
  if (values.length === 0 || values.length >= n) return values
  const last = values[values.length - 1] as T
  while (values.length < n) values.push(last)
  return values
}

// --- OIP REST: the JSON answer -----------------------------------------------------------------------

/**
 * The outputs of an OIP REST answer (`{"outputs": [{name, shape, datatype, data}]}`), data flat or
 * nested row-major. JSON numbers past 2^53 have lost digits in JSON.parse already: INT64 outputs
 * compare exactly only up to 2^53 here (gRPC keeps them whole).
 */
export function tensorsFromJson(body: unknown): Tensor[] {
  const outputs = (body as { outputs?: unknown } | null)?.outputs
  if (!Array.isArray(outputs)) throw new Error('the answer has no "outputs" list')
  return outputs.map((o: unknown, i) => {
    const t = o as { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown }
    if (typeof t.name !== 'string' || typeof t.datatype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data)) {
      throw new Error(`outputs[${i}] needs name, datatype, shape and data`)
    }
    const flat = (t.data as unknown[]).flat(Infinity)
    const shape = (t.shape as unknown[]).map(Number)
    let data: TensorData
    if (t.datatype === 'BYTES') data = { kind: 'bytes', values: flat.map((v) => Buffer.from(String(v), 'utf8')) }
    else if (t.datatype === 'INT64' || t.datatype === 'UINT64') data = { kind: 'bigint', values: flat.map((v) => BigInt(Math.trunc(Number(v)))) }
    else data = { kind: 'number', values: flat.map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : Number(v))) }
    return checked({ name: t.name, datatype: t.datatype, shape, data })
  })
}

// --- comparing --------------------------------------------------------------------------------------

/** Elements agree when |shadow − primary| ≤ atol + rtol·|primary| (numpy.isclose with the primary as reference). */
export interface TensorCompareOptions {
  readonly atol: number
  readonly rtol: number
}

export type OutputProblem = 'missing_in_shadow' | 'missing_in_primary' | 'dtype' | 'shape' | null

export interface OutputComparison {
  readonly name: string
  readonly problem: OutputProblem
  /** Instances (the first dimension; 1 for a scalar) compared, and those whose every element agrees. */
  readonly instances: number
  readonly agreeing: number
  /** Instances whose largest element is at the same index in both (numeric outputs with more than one element per instance); null otherwise. */
  readonly argmaxAgreeing: number | null
  readonly absDiffMax: number | null
}

export interface TensorComparison {
  /** Every output present in both, same dtype and shape, every instance within tolerance. */
  readonly agree: boolean
  readonly outputs: readonly OutputComparison[]
  /** Instances of the primary's batch, and those on which every output agreed. */
  readonly compared: number
  readonly fraction_agree: number
  readonly abs_diff_max: number | null
  readonly abs_diff_mean: number | null
}

/** Compares a shadow's outputs with the primary's, matched by name. */
export function compareTensors(primary: readonly Tensor[], shadow: readonly Tensor[], opts: TensorCompareOptions): TensorComparison {
  const byName = new Map(shadow.map((t) => [t.name, t]))
  const outputs: OutputComparison[] = []
  let batch = 0
  const instanceOk: boolean[] = []
  let diffSum = 0
  let diffCount = 0
  let diffMax: number | null = null
  for (const p of primary) {
    const instances = p.shape.length === 0 ? 1 : p.shape[0] as number
    batch = Math.max(batch, instances)
    const s = byName.get(p.name)
    byName.delete(p.name)
    const problem: OutputProblem = s === undefined ? 'missing_in_shadow' : s.datatype !== p.datatype ? 'dtype' : !sameShape(s.shape, p.shape) ? 'shape' : null
    if (problem !== null || s === undefined) {
      outputs.push({ name: p.name, problem, instances, agreeing: 0, argmaxAgreeing: null, absDiffMax: null })
      for (let i = 0; i < instances; i++) instanceOk[i] = false
      continue
    }
    const stride = instances === 0 ? 0 : p.data.values.length / instances
    let agreeing = 0
    let argmaxAgreeing: number | null = p.data.kind !== 'bytes' && stride > 1 ? 0 : null
    let outMax: number | null = null
    for (let i = 0; i < instances; i++) {
      let ok = true
      for (let k = i * stride; k < (i + 1) * stride; k++) {
        const d = elementDiff(p.data, s.data, k, opts)
        if (d.diff !== null) {
          diffSum += d.diff
          diffCount++
          if (outMax === null || d.diff > outMax) outMax = d.diff
        }
        if (!d.ok) ok = false
      }
      if (ok) agreeing++
      if (argmaxAgreeing !== null && argmax(p.data, i * stride, stride) === argmax(s.data, i * stride, stride)) argmaxAgreeing++
      instanceOk[i] = (instanceOk[i] ?? true) && ok
    }
    if (outMax !== null && (diffMax === null || outMax > diffMax)) diffMax = outMax
    outputs.push({ name: p.name, problem: null, instances, agreeing, argmaxAgreeing, absDiffMax: outMax })
  }
  for (const s of byName.values()) {
    outputs.push({ name: s.name, problem: 'missing_in_primary', instances: 0, agreeing: 0, argmaxAgreeing: null, absDiffMax: null })
  }
  let agreed = 0
  for (let i = 0; i < batch; i++) if (instanceOk[i] !== false) agreed++
  const extra = outputs.some((o) => o.problem === 'missing_in_primary')
  return {
    agree: !extra && outputs.every((o) => o.problem === null && o.agreeing === o.instances),
    outputs,
    compared: batch,
    fraction_agree: batch === 0 ? (extra ? 0 : 1) : (extra ? 0 : agreed / batch),
    abs_diff_max: diffMax,
    abs_diff_mean: diffCount === 0 ? null : diffSum / diffCount,
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

const NO_DIFF = { ok: true, diff: null } as const

/** One element: within tolerance, and |Δ| (null for byte strings). NaN agrees with NaN, ±Inf with itself. */
function elementDiff(p: TensorData, s: TensorData, k: number, opts: TensorCompareOptions): { ok: boolean; diff: number | null } {
  if (p.kind === 'bytes') return (p.values[k] as Buffer).equals(s.values[k] as Buffer) ? NO_DIFF : { ok: false, diff: null }
  if (p.kind === 'bigint') {
    const a = p.values[k] as bigint
    const b = s.values[k] as bigint
    // The difference of two 64-bit integers is exact as a bigint; only its size is rounded.
    const diff = Number(a > b ? a - b : b - a)
    return { ok: diff <= opts.atol + opts.rtol * Math.abs(Number(a)), diff }
  }
  const a = p.values[k] as number
  const b = s.values[k] as number
  if (Number.isNaN(a) || Number.isNaN(b)) return { ok: Number.isNaN(a) && Number.isNaN(b), diff: null }
  if (!Number.isFinite(a) || !Number.isFinite(b)) return { ok: a === b, diff: a === b ? 0 : Infinity }
  const diff = Math.abs(a - b)
  return { ok: diff <= opts.atol + opts.rtol * Math.abs(a), diff }
}

function argmax(data: TensorData, start: number, n: number): number {
  let best = 0
  for (let k = 1; k < n; k++) {
    const v = data.values[start + k] as number | bigint
    const b = data.values[start + best] as number | bigint
    if (v > b) best = k
  }
  return best
}
