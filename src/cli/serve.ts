import cluster from 'node:cluster'
import type { Plan } from '../plan/index.js'
import { runPrimary, runWorker } from './cluster.js'
import { serveUntilSignalled } from '../lifecycle.js'
import { buildServer } from '../server.js'
import type { Io } from './run.js'

/**
 * `modelsplit serve`: runs until SIGTERM/SIGINT, reloads on SIGHUP; resolves to the exit code.
 * With `workers` > 1, runs them as node:cluster workers behind one primary (cli/cluster.ts).
 */
export async function serve(configFile: string, plan: Plan, logLevel: string, io: Io, workers = 1): Promise<number> {
  if (cluster.isWorker) return runWorker(configFile, plan, logLevel)
  if (workers > 1) return runPrimary(configFile, plan, workers, logLevel, io)
  const router = await buildServer({ configFile, plan, logger: { level: logLevel } })
  const { url, adminUrl, grpcUrl } = await router.listen()

  const signal = await serveUntilSignalled({
    banner: `modelsplit: predictions on ${url}, admin on ${adminUrl}${grpcUrl === undefined ? '' : `, gRPC on ${grpcUrl}`} (config ${configFile}, sha256 ${plan.loaded.sha256.slice(0, 12)})\n`,
    out: io.out,
    onHangup: async () => {
      await router.reload()
      await router.reopenRecords()
    },
  })
  router.app.log.info(`${signal}: draining in-flight requests (shutdown_timeout_ms=${router.current().config.shutdown_timeout_ms})`)
  await router.close()
  router.app.log.info('stopped')
  return 0
}
