// The node event listeners of an HTTP exchange (request body, response close and drain, the model's
// timer): module functions whose `this` is the req or res, finding the exchange through a symbol
// on it, so a request registers the same functions and builds no closures.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Exchange } from './exchange.js'

/** The slot on req and res that holds the request's exchange. */
export const kExchange = Symbol('modelsplit.exchange')
export type Tagged = { [kExchange]?: Exchange }

// Module-level listeners: `this` is the req or res, and the exchange hangs off it.
export function onResponseClose(this: ServerResponse & Tagged): void {
  this[kExchange]?.onClose()
}
export function onBodyData(this: IncomingMessage & Tagged, chunk: Buffer): void {
  this[kExchange]?.onBodyData(chunk)
}
export function onBodyEnd(this: IncomingMessage & Tagged): void {
  this[kExchange]?.onBodyEnd()
}
export function onBodyError(this: IncomingMessage & Tagged): void {
  this[kExchange]?.onBodyError()
}
export function onBodyTimeout(this: IncomingMessage & Tagged): void {
  this[kExchange]?.onBodyTimeout()
}
export function onStreamData(this: IncomingMessage & Tagged, chunk: Buffer): void {
  this[kExchange]?.onStreamData(chunk)
}
export function onStreamEnd(this: IncomingMessage & Tagged): void {
  this[kExchange]?.onStreamEnd()
}
export function onResponseDrain(this: ServerResponse & Tagged): void {
  this[kExchange]?.onDrain()
}
export function onUpstreamTimeout(ex: Exchange): void {
  ex.onTimeout()
}
