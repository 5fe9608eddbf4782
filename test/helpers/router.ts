import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildServer, type Router } from '../../src/server.js'

export interface RunningRouter {
  readonly url: string
  readonly adminUrl: string
  readonly router: Router
  readonly configFile: string
  /** Rewrites the config file (the router only sees it on reload or through the watcher). */
  writeConfig(yaml: string): Promise<void>
  close(): Promise<void>
}

/** Writes `yaml` to a temp file and starts a real router on ephemeral 127.0.0.1 ports. */
export async function startRouter(yaml: string, opts: { watch?: boolean } = {}): Promise<RunningRouter> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-test-'))
  const configFile = join(dir, 'router.yaml')
  await writeFile(configFile, yaml)
  const router = await buildServer({ configFile, watch: opts.watch ?? false, defaultMetrics: false })
  const { url, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0 })
  return {
    url, adminUrl, router, configFile,
    writeConfig: (text) => writeFile(configFile, text),
    async close() {
      await router.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Parses Prometheus text format into `name{labels} value` → number. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}
