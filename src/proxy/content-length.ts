// Reading a model's declared Content-Length straight from undici's raw header buffers, so sizing a
// captured answer costs no header object and no string per header name.

const CONTENT_LENGTH = Buffer.from('content-length', 'latin1')

/** Whether a raw header name is Content-Length, in any case, without a string of it. */
function isContentLength(name: Buffer): boolean {
  if (name.length !== 14) return false
  // ASCII letters differ from their lower case in bit 0x20 only; the '-' (at 7) must be itself.
  for (let j = 0; j < 14; j++) {
    const b = name[j] as number
    if (j === 7 ? b !== 0x2d : (b | 0x20) !== CONTENT_LENGTH[j]) return false
  }
  return true
}

/** A response's Content-Length from undici's raw headers, or 0 when it has none (or a bad one). */
export function declaredLength(raw: readonly Buffer[]): number {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer
    if (isContentLength(name)) {
      const n = Number((raw[i + 1] as Buffer).toString('latin1'))
      return Number.isSafeInteger(n) && n > 0 ? n : 0
    }
  }
  return 0
}
