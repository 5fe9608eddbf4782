import type { FastifyInstance } from 'fastify'
import { CONSOLE_JS } from './app.js'
import { CONSOLE_CSS, CONSOLE_HTML } from './page.js'

/** What the console serves; readable without the token (it holds no data: the page asks for it). */
export const CONSOLE_PATHS: readonly string[] = ['/', '/console.js', '/console.css']

// Nothing but this origin: no CDN, no inline script, no framing, no form posting elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** GET / on the admin listener: the operator console (one page polling the admin API). */
export function registerConsole(admin: FastifyInstance): void {
  const send = (type: string, body: string) => async (_request: unknown, reply: { header(k: string, v: string): unknown; type(t: string): unknown; send(b: string): unknown }) => {
    reply.header('content-security-policy', CSP)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('cache-control', 'no-cache')
    reply.type(type)
    return reply.send(body)
  }
  admin.get('/', send('text/html; charset=utf-8', CONSOLE_HTML))
  admin.get('/console.js', send('text/javascript; charset=utf-8', CONSOLE_JS))
  admin.get('/console.css', send('text/css; charset=utf-8', CONSOLE_CSS))
}
