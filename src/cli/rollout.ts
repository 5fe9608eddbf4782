import { readFile } from 'node:fs/promises'
import type { Io } from './run.js'

export const ROLLOUT_ACTIONS = ['status', 'pause', 'resume', 'abort', 'promote'] as const
export type RolloutAction = (typeof ROLLOUT_ACTIONS)[number]

/**
 * `modelsplit rollout ACTION [ROUTE] --admin URL`: the same admin API the console uses. `status`
 * without a route lists every route with a rollout or bandit. Exit 0, or 1 with the router's
 * answer when it refuses (a rollout that is not running cannot be paused, …).
 */
export async function rolloutCommand(action: RolloutAction, route: string | undefined, admin: string, json: boolean, io: Io, tokenFile?: string): Promise<number> {
  const base = admin.replace(/\/+$/, '')
  const url = action === 'status'
    ? `${base}/admin/rollouts${route === undefined ? '' : `/${encodeURIComponent(route)}`}`
    : `${base}/admin/rollouts/${encodeURIComponent(route ?? '')}/${action}`
  let headers: Record<string, string> = {}
  if (tokenFile !== undefined) {
    try {
      headers = { authorization: `Bearer ${(await readFile(tokenFile, 'utf8')).trim()}` }
    } catch (err) {
      io.err.write(`modelsplit: cannot read --token-file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`)
      return 1
    }
  }
  let res: Response
  try {
    res = await fetch(url, { method: action === 'status' ? 'GET' : 'POST', headers, signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    io.err.write(`modelsplit: cannot reach the admin API at ${base}: ${(err as Error).message}\n`)
    return 1
  }
  const body = await res.json().catch(() => ({})) as Record<string, unknown>
  if (!res.ok) {
    io.err.write(`modelsplit: ${res.status} ${String(body.code ?? '')}: ${String(body.message ?? res.statusText)}\n`)
    return 1
  }
  if (json) {
    io.out.write(JSON.stringify(body, null, 2) + '\n')
    return 0
  }
  const routes = Array.isArray(body.routes) ? body.routes as Record<string, unknown>[] : [body]
  for (const r of routes) io.out.write(describeRoute(r))
  return 0
}

function describeRoute(r: Record<string, unknown>): string {
  const shares = Object.entries((r.effective_shares ?? {}) as Record<string, number>).map(([m, s]) => `${m} ${(100 * s).toFixed(1)}%`).join(', ')
  const head = r.kind === 'rollout'
    ? `${String(r.route)}: rollout of ${String(r.candidate)} against ${String(r.control)}: ${String(r.state)} at ${String(r.percent)}% (step ${Number(r.step) + 1} of ${(r.steps as unknown[] | undefined)?.length ?? '?'})`
    : `${String(r.route)}: bandit`
  const last = (r.decisions as { at: string; kind: string; result: string; reason: string }[] | undefined)?.slice(-5) ?? []
  return `${head}\n  in force: ${shares}\n  next evaluation: ${String(r.next_evaluation ?? '-')}\n${last.map((d) => `  ${d.at} ${d.kind} ${d.result}: ${d.reason}\n`).join('')}`
}
