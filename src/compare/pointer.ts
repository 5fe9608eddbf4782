/** Result of resolving a JSON Pointer; `value` is set only when `found` is true. */
export type PointerLookup = { found: boolean; value?: unknown }

// RFC 6901 §4: an array index is "0" or a decimal without leading zeros; "-" never resolves.
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/

/** Splits an RFC 6901 JSON Pointer (`/predictions/0/score`) into unescaped reference tokens. */
export function parseJsonPointer(p: string): string[] {
  // RFC 6901 §5: the empty pointer refers to the whole document.
  if (p === '') return []
  if (p.startsWith('#')) {
    throw new Error(`invalid JSON Pointer "${p}": use the plain form "${safeDecode(p.slice(1))}", not the URI fragment form`)
  }
  if (p.charCodeAt(0) !== 0x2f) {
    throw new Error(`invalid JSON Pointer "${p}": it must start with "/", e.g. "/${p}"`)
  }
  const tokens = p.slice(1).split('/')
  for (let i = 0; i < tokens.length; i++) {
    const raw = tokens[i] as string
    if (!raw.includes('~')) continue
    // RFC 6901 §3: "~" is only valid as "~0" or "~1".
    if (/~(?![01])/.test(raw)) {
      throw new Error(`invalid JSON Pointer "${p}": "~" must be followed by 0 or 1 (write "~0" for "~" and "~1" for "/")`)
    }
    // RFC 6901 §4: decode ~1 before ~0, so "~01" becomes "~1" and not "/".
    tokens[i] = raw.replaceAll('~1', '/').replaceAll('~0', '~')
  }
  return tokens
}

/** Resolves parsed pointer tokens against a JSON value, touching own properties only. */
export function getByPointer(value: unknown, tokens: readonly string[]): PointerLookup {
  let current = value
  for (const token of tokens) {
    if (Array.isArray(current)) {
      if (!ARRAY_INDEX.test(token)) return { found: false }
      const index = Number(token)
      if (index >= current.length) return { found: false }
      current = current[index]
    } else if (typeof current === 'object' && current !== null) {
      // Own properties only: "constructor" or "__proto__" must not reach Object.prototype.
      if (!Object.hasOwn(current, token)) return { found: false }
      current = (current as Record<string, unknown>)[token]
    } else {
      return { found: false }
    }
  }
  return { found: true, value: current }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
