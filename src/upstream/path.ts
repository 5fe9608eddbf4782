/**
 * Why a request path may not be joined to a model's base URL, or null when it may.
 *
 * The path after the route prefix is appended to the model's base path, so it must not be able
 * to climb out of it: dot segments (RFC 3986 §5.2.4), also percent-encoded (%2e), are refused, as
 * are encoded slashes (%2f) and backslashes, raw or encoded (%5c): some servers and frameworks
 * treat `\` as `/` (the WHATWG URL parser does for http URLs), so `x\..\..\b` would climb out.
 * NUL (%00) is refused too, and `..;param` (a dot segment to servlet containers). Paths that pass
 * cannot leave the base path once normalised.
 */
export function badPath(rest: string): string | null {
  // Fast path: nothing that could form a dot segment or an escape.
  if (rest.indexOf('%') < 0 && rest.indexOf('\\') < 0 && rest.indexOf('/.') < 0) return null
  if (rest.indexOf('\\') >= 0) return 'backslashes are not allowed in paths'
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
