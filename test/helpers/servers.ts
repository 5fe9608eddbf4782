import { onTestFinished } from 'vitest'
import { startRouter, type RunningRouter } from './router.js'
import { startUpstream, type Upstream } from './upstream.js'

/** Starts an upstream that is closed when the current test finishes. */
export async function upstream(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const u = await startUpstream(...args)
  onTestFinished(() => u.close())
  return u
}

/** Starts a router (temp config file, ephemeral ports) that is closed when the current test finishes. */
export async function router(...args: Parameters<typeof startRouter>): Promise<RunningRouter> {
  const r = await startRouter(...args)
  onTestFinished(() => r.close())
  return r
}
