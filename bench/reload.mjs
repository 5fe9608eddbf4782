// The reload case: under load, rewrite the config every second ramping a canary 10 → 50 → 10;
// no request may fail.
import { runLoad } from './load.mjs'
import { scrape } from './router.mjs'
import { routerConfig, writeConfig } from './topology.mjs'

const RAMP = [10, 20, 30, 40, 50, 40, 30, 20, 10]

/** Resolves to `{ load, writes, reloads, failures, pass }` after `duration` seconds (at least one ramp). */
export async function runReloadCase(router, { configFile, urls, connections, duration }) {
  const seconds = Math.max(duration, RAMP.length + 1)
  let writes = 0
  let stop = false
  const before = await scrape(router.adminUrl)
  const ticker = (async () => {
    for (let i = 1; !stop; i++) {
      await new Promise((r) => setTimeout(r, 1000))
      if (stop) break
      await writeConfig(configFile, routerConfig(urls, { canary: RAMP[i % RAMP.length] }))
      writes++
    }
  })()
  const load = await runLoad({ url: router.url, path: '/canary/predict', connections, duration: seconds })
  stop = true
  await ticker
  await new Promise((r) => setTimeout(r, 300))
  const after = await scrape(router.adminUrl)
  const reloads = after.sum('modelsplit_config_reloads_total', 'result="success"') - before.sum('modelsplit_config_reloads_total', 'result="success"')
  const failures = after.sum('modelsplit_config_reloads_total', 'result="failure"') - before.sum('modelsplit_config_reloads_total', 'result="failure"')
  const canary = after.sum('modelsplit_requests_total', 'route="canary",model="model_b"')
  const total = after.sum('modelsplit_requests_total', 'route="canary"')
  return { load, seconds, writes, reloads, failures, canaryShare: total > 0 ? canary / total : 0, pass: load.errors === 0 && failures === 0 && reloads > 0 }
}
