import { randomBytes } from 'node:crypto'
import { recordJson } from './schema.js'

/**
 * One record on its way to a remote sink: the record's JSON exactly as the file sink writes it,
 * with what a transport needs beside it. The id (a CloudEvents id) is made once, when the record
 * is accepted, and kept through the spool and every retry, so a consumer can drop a record it
 * already has by id.
 */
export interface Envelope {
  readonly id: string
  /** The record's `type`: prediction, outcome or decision. */
  readonly type: string
  /** The partition key: request_id (decisions: the route); null when the record has neither. */
  readonly key: string | null
  /** The record's `ts`. */
  readonly time: string
  /** The record as JSON, no trailing newline. */
  readonly value: string
  /** Bytes the record takes in memory and in the spool (the value's UTF-8 length and a little more). */
  readonly bytes: number
}

// Per envelope beyond its value: the id, key and time (in the spool line, as headers on the wire).
const OVERHEAD_BYTES = 96

/** Makes envelopes: ids are this process's random prefix and a counter, unique without coordination. */
export class EnvelopeFactory {
  readonly #prefix = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}-`
  #seq = 0

  /** Whether this factory made the envelope with this id (rather than an earlier run, through the spool). */
  owns(id: string): boolean {
    return id.startsWith(this.#prefix)
  }

  /** The envelope of `record`, or undefined when it cannot be serialized (the error is thrown to the caller). */
  make(record: object): Envelope | undefined {
    const value = recordJson(record)
    if (value === undefined) return undefined
    const r = record as { type?: unknown; request_id?: unknown; route?: unknown; ts?: unknown }
    const type = typeof r.type === 'string' ? r.type : 'record'
    const key = type === 'decision' ? str(r.route) : str(r.request_id)
    return { id: this.#prefix + (++this.#seq).toString(36), type, key, time: typeof r.ts === 'string' ? r.ts : new Date().toISOString(), value, bytes: Buffer.byteLength(value) + OVERHEAD_BYTES }
  }
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

/** The CloudEvents type of a record type: `org.modelsplit.prediction`, `.outcome`, `.decision`. */
export function cloudEventType(type: string): string {
  return `org.modelsplit.${type}`
}
