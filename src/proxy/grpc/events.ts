// The stream listeners of a gRPC call: module functions, the same for every call, registered on
// its two streams (the client's and the model's); `this` is the stream and the call hangs off it
// by a symbol, so a call builds no closures.
import type { ClientHttp2Stream, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import type { GrpcForward } from './forward.js'

export const kCall = Symbol('modelsplit.grpcCall')
export type Tagged = { [kCall]?: GrpcForward }

export function onClientData(this: ServerHttp2Stream & Tagged, chunk: Buffer): void {
  this[kCall]?.onClientData(chunk)
}
export function onClientEnd(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientEnd()
}
export function onClientClose(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientClose()
}
export function onWantTrailers(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onWantTrailers()
}
export function onClientDrain(this: ServerHttp2Stream & Tagged): void {
  this[kCall]?.onClientDrain()
}
export function onUpstreamDrain(this: ClientHttp2Stream & Tagged): void {
  this[kCall]?.onUpstreamDrain()
}
export function onUpstreamResponse(this: ClientHttp2Stream & Tagged, headers: IncomingHttpHeaders): void {
  this[kCall]?.onUpstreamResponse(headers)
}
export function onUpstreamData(this: ClientHttp2Stream & Tagged, chunk: Buffer): void {
  this[kCall]?.onUpstreamData(chunk)
}
export function onUpstreamTrailers(this: ClientHttp2Stream & Tagged, trailers: IncomingHttpHeaders): void {
  this[kCall]?.onUpstreamTrailers(trailers)
}
export function onUpstreamClose(this: ClientHttp2Stream & Tagged): void {
  this[kCall]?.onUpstreamClose()
}
export function onUpstreamError(this: ClientHttp2Stream & Tagged, err: Error): void {
  this[kCall]?.onUpstreamError(err)
}
export function onDeadline(call: GrpcForward): void {
  call.onDeadline()
}
