// @grpc/grpc-js for tests: the Open Inference Protocol's ModelInfer messages from
// test/fixtures/grpc/inference.proto (@grpc/proto-loader), and unary calls that resolve with
// what grpc-js reports (value or error, response metadata, status).
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

export const INFER = '/inference.GRPCInferenceService/ModelInfer'
const PROTO = join(import.meta.dirname, '../fixtures/grpc/inference.proto')

const definition = loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true })
const service = definition['inference.GRPCInferenceService'] as grpc.ServiceDefinition
const modelInfer = service.ModelInfer as grpc.MethodDefinition<InferRequest, InferResponse>

export interface Tensor {
  name: string
  datatype: string
  shape: (string | number)[]
  contents?: { fp32_contents?: number[]; fp64_contents?: number[]; int64_contents?: string[] } | null
}
export interface InferRequest {
  model_name: string
  id?: string
  inputs?: Tensor[]
  outputs?: { name: string }[]
}
export interface InferResponse {
  model_name: string
  id: string
  outputs: Tensor[]
  raw_output_contents: Buffer[]
}

export const encodeRequest = (r: InferRequest): Buffer => modelInfer.requestSerialize(r)
export const decodeRequest = (b: Buffer): InferRequest => modelInfer.requestDeserialize(b)
export const encodeResponse = (r: InferResponse): Buffer => modelInfer.responseSerialize(r)
export const decodeResponse = (b: Buffer): InferResponse => modelInfer.responseDeserialize(b)
const identity = (b: Buffer): Buffer => b

export interface Reply<T> {
  readonly value?: T
  readonly error?: grpc.ServiceError
  /** The response metadata (headers): x-request-id, x-modelsplit-model. */
  readonly headers: grpc.Metadata
  readonly status: grpc.StatusObject
}

/** One unary call through grpc-js; resolves once grpc-js reported its status. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: string,
  serialize: (r: Req) => Buffer,
  deserialize: (b: Buffer) => Res,
  request: Req,
  metadata: Record<string, string | Buffer> = {},
  options: grpc.CallOptions = {},
): { call: grpc.ClientUnaryCall; done: Promise<Reply<Res>> } {
  const md = new grpc.Metadata()
  for (const [k, v] of Object.entries(metadata)) md.set(k, v)
  let headers = new grpc.Metadata()
  let settled: { value?: Res; error?: grpc.ServiceError } | undefined
  let status: grpc.StatusObject | undefined
  let resolve: (r: Reply<Res>) => void = () => undefined
  const done = new Promise<Reply<Res>>((r) => { resolve = r })
  const finish = (): void => {
    if (settled !== undefined && status !== undefined) resolve({ ...settled, headers, status })
  }
  const call = client.makeUnaryRequest(method, serialize, deserialize, request, md, options, (error, value) => {
    settled = error === null ? { ...(value !== undefined ? { value } : {}) } : { error }
    finish()
  })
  call.on('metadata', (m: grpc.Metadata) => { headers = m })
  call.on('status', (s: grpc.StatusObject) => {
    status = s
    finish()
  })
  return { call, done }
}

/** A ModelInfer call, decoded both ways: the typed answer and nothing else. */
export function infer(client: grpc.Client, request: InferRequest, metadata: Record<string, string | Buffer> = {}, options: grpc.CallOptions = {}): { call: grpc.ClientUnaryCall; done: Promise<Reply<InferResponse>> } {
  return unary(client, INFER, encodeRequest, decodeResponse, request, metadata, options)
}

/** A ModelInfer call whose answer is kept as the bytes of its message. */
export function inferRaw(client: grpc.Client, request: InferRequest, metadata: Record<string, string | Buffer> = {}): Promise<Reply<Buffer>> {
  return unary(client, INFER, encodeRequest, identity, request, metadata).done
}

export const one = (md: grpc.Metadata, key: string): string | undefined => {
  const v = md.get(key)[0]
  return v === undefined ? undefined : String(v)
}

/**
 * A router config (YAML) serving ModelInfer over TLS with the certificate and key files named (and
 * `tlsExtra`, more keys of `listen.grpc.tls` starting with a comma) in front of one model, `a`.
 */
export const tlsInferConfig = (modelUrl: string, certFile: string, keyFile: string, tlsExtra = ''): string =>
  `listen: { host: 127.0.0.1, port: 0, grpc: { host: 127.0.0.1, port: 0, tls: { cert_file: ${certFile}, key_file: ${keyFile}${tlsExtra} } } }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "${modelUrl}" }
routes:
  - name: infer
    grpc: { method: ${INFER} }
    split: [{ model: a, weight: 1 }]
`
