import { isIP } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import { LOOPBACK_HOSTS } from '../config/schema.js'

/** Why a request is refused before any admin handler runs, or undefined to go on. */
export type Refusal =
  | { readonly kind: 'host'; readonly message: string }
  | { readonly kind: 'cross-site'; readonly message: string }
  | { readonly kind: 'simple-mutation'; readonly message: string }

/** The header a client without a JSON body sends to show it is not a form or a no-cors fetch. */
export const ADMIN_REQUEST_HEADER = 'x-modelsplit-admin'

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * A Host a browser can only send when it really connects to this listener: `localhost`, an IP
 * literal (the browser connects to that very address, so no DNS answer can rebind it) or the
 * configured admin.host. Any other name may be an attacker's domain that now resolves to us
 * (DNS rebinding); webpack-dev-server and Vite allow the same set by default.
 */
export function isHostAllowed(host: string | undefined, adminHost: string): boolean {
  if (host === undefined) return true // HTTP/1.0 without Host: no browser sends that
  const name = hostname(host)
  if (name === undefined) return false
  if (name === 'localhost' || LOOPBACK_HOSTS.includes(name)) return true
  if (isIP(name.startsWith('[') ? name.slice(1, -1) : name) !== 0) return true
  return name === adminHost.toLowerCase().replace(/\.$/, '')
}

/**
 * Browser requests from another origin, and mutations a browser could send cross-origin without
 * a CORS preflight. The admin never answers a preflight with Access-Control-Allow-*, so a
 * non-simple request (Fetch standard, "CORS-safelisted request-header") never leaves a foreign page.
 */
export function browserRefusal(method: string, headers: IncomingHttpHeaders): Refusal | undefined {
  const origin = headers.origin
  if (origin !== undefined && !isSameOrigin(origin, headers.host)) {
    return {
      kind: 'cross-site',
      message: `admin requests from another origin are refused (Origin: ${origin.slice(0, 100)}): `
        + 'open the console at the admin\'s own address, or call the API from outside a browser',
    }
  }
  // Fetch Metadata (W3C): 'none' is the operator typing the address, 'same-origin' the console.
  const site = headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return {
      kind: 'cross-site',
      message: `admin requests from another site are refused (Sec-Fetch-Site: ${String(site).slice(0, 20)}): `
        + 'open the console at the admin\'s own address',
    }
  }
  if (SAFE_METHODS.has(method) || isNonSimple(headers)) return undefined
  // A body-less request with no trace of a browser (curl -X POST, the CLI) is not a form or a
  // fetch from a page: every browser since 2020 sends Origin with a POST, and Sec-Fetch-Site too
  // to loopback. Anything with a body or a browser's headers must show it is not a simple request.
  const hasBody = headers['content-type'] !== undefined
    || headers['transfer-encoding'] !== undefined
    || (headers['content-length'] ?? '0') !== '0'
  const fromBrowser = origin !== undefined || site !== undefined || headers.referer !== undefined
  if (!hasBody && !fromBrowser) return undefined
  return {
    kind: 'simple-mutation',
    message: `${method} on the admin API needs Content-Type: application/json or the header X-Modelsplit-Admin: 1 `
      + '(a form or a no-cors fetch from a web page cannot send either)',
  }
}

/** A request a browser sends cross-origin only after a preflight the admin never grants. */
function isNonSimple(headers: IncomingHttpHeaders): boolean {
  if (headers[ADMIN_REQUEST_HEADER] !== undefined || headers.authorization !== undefined) return true
  const type = headers['content-type']?.split(';')[0]?.trim().toLowerCase()
  return type === 'application/json'
}

function isSameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false
  let o: URL
  let expected: URL
  try {
    o = new URL(origin) // 'null' (sandboxed frames, file:, a no-referrer POST) throws: refused
    if (o.protocol !== 'http:' && o.protocol !== 'https:') return false
    expected = new URL(`${o.protocol}//${host}`) // a TLS proxy in front keeps the Host but says https
  } catch {
    return false
  }
  return o.origin === expected.origin
}

/** `Host` without its port, lower-cased, without a trailing dot; undefined if it is not a host. */
function hostname(host: string): string | undefined {
  const h = host.trim().toLowerCase()
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::\d{1,5})?$/.exec(h)
  return m?.[1]?.replace(/\.$/, '')
}
