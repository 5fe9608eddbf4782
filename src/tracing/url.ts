/** The traces URL: a bare origin (or `/`) gets OTLP's `/v1/traces`, any other path is used as written. */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint)
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/v1/traces'
  return url.toString()
}
