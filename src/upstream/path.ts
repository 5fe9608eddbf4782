/**
 * Why a request path may not be joined to a model's base URL, or null when it may.
 *
 * The path after the route prefix is appended to the model's base path, so it must not be able
 * to climb out of it: dot segments (RFC 3986 §5.2.4), also percent-encoded (%2e), are refused, as
 * are encoded slashes (%2f) and backslashes, raw or encoded (%5c): some servers and frameworks
 * treat `\` as `/` (the WHATWG URL parser does for http URLs), so `x\..\..\b` would climb out.
 * NUL (%00) is refused too, and `..;param` (a dot segment to servlet containers). Paths that pass
 * cannot leave the base path once normalised. A `%` not followed by two hex digits is refused:
 * RFC 3986 §2.1 allows `%` only as the start of a percent-encoded octet, and servers disagree on
 * what such a path means (left as is, decoded in part, or refused), so the model would be guessing.
 */
export function badPath(rest: string): string | null {
  // Fast path: nothing that could form a dot segment or an escape.
  const pct = rest.indexOf('%')
  if (pct < 0 && rest.indexOf('\\') < 0 && rest.indexOf('/.') < 0) return null
  if (rest.indexOf('\\') >= 0) return 'backslashes are not allowed in paths'
  for (let i = pct; i >= 0; i = rest.indexOf('%', i + 1)) {
    if (!isHex(rest.charCodeAt(i + 1)) || !isHex(rest.charCodeAt(i + 2))) {
      return `invalid percent-encoding ("${rest.slice(i, i + 3)}"): % must be followed by two hex digits (RFC 3986 §2.1)`
    }
  }
  const lower = rest.toLowerCase()
  if (lower.includes('%5c')) return 'encoded backslashes (%5C) are not allowed in paths'
  if (lower.includes('%2f')) return 'encoded slashes (%2F) are not allowed in paths'
  if (lower.includes('%00')) return 'NUL (%00) is not allowed in paths'
  const decodedDots = lower.replace(/%2e/g, '.')
  for (const segment of decodedDots.split('/')) {
    // Servlet containers (Tomcat, Jetty) drop `;parameters` before resolving: `..;x` is `..` there.
    const semi = segment.indexOf(';')
    const name = semi < 0 ? segment : segment.slice(0, semi)
    if (name === '.' || name === '..') return `dot segments ("${segment}") are not allowed in paths`
  }
  return null
}

/** 0-9, A-F, a-f (NaN past the end of the string is none of them). */
function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}
