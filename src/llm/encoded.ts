// An answer the server compressed (Content-Encoding: gzip, deflate or br) passes to the client as
// the server sent it, byte for byte: rewriting it would mean decoding and encoding again on the
// request path. What the metrics need (usage) is read from a copy, kept up to a bound and decoded
// once at the answer's end, bounded again in what it may grow to.
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'

export type ContentEncoding = 'gzip' | 'deflate' | 'br'

/** The encoding named by a Content-Encoding value we can decode; null for identity or anything else. */
export function encodingOf(value: string): ContentEncoding | null {
  const v = value.trim().toLowerCase()
  return v === 'gzip' || v === 'x-gzip' ? 'gzip' : v === 'deflate' ? 'deflate' : v === 'br' ? 'br' : null
}

const GZIP_MAGIC_0 = 0x1f
const GZIP_MAGIC_1 = 0x8b

/** Whether a captured body is gzip (its magic bytes: no JSON or SSE text starts with 0x1f). */
export function isGzip(body: Buffer): boolean {
  return body.length >= 2 && body[0] === GZIP_MAGIC_0 && body[1] === GZIP_MAGIC_1
}

/** Decodes a body, its output at most maxBytes; null when it is not valid or too large. */
export function decode(body: Buffer, encoding: ContentEncoding, maxBytes: number): Buffer | null {
  try {
    const opts = { maxOutputLength: Math.max(1, maxBytes) }
    return encoding === 'gzip' ? gunzipSync(body, opts) : encoding === 'deflate' ? inflateSync(body, opts) : brotliDecompressSync(body, opts)
  } catch {
    return null
  }
}

/** A bounded copy of an encoded answer's bytes as they pass. */
export class EncodedCopy {
  #parts: Buffer[] = []
  #bytes = 0
  /** Past the bound: the copy was dropped, nothing will be decoded. */
  tooLarge = false

  constructor(readonly encoding: ContentEncoding, readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    if (this.tooLarge) return
    if (this.#bytes + chunk.length > this.maxBytes) {
      this.tooLarge = true
      this.#parts = []
      return
    }
    // The chunk is the one sent to the client: it is not written to again, so keeping it costs no copy.
    this.#parts.push(chunk)
    this.#bytes += chunk.length
  }

  /** The decoded answer (at most maxBytes), or null when it was too large or does not decode. */
  decoded(): Buffer | null {
    if (this.tooLarge) return null
    const body = this.#parts.length === 1 ? this.#parts[0] as Buffer : Buffer.concat(this.#parts)
    this.#parts = []
    return decode(body, this.encoding, this.maxBytes)
  }
}
