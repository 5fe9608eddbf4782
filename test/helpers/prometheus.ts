import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { vi, expect } from 'vitest'
import { freePort } from './upstream.js'

/** The prometheus binary on PATH (Debian's package: scripts/install-prometheus.sh), or ''. */
export const prometheusBin = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim()

export interface Sample { metric: Record<string, string>; value: [number, string] }

export interface RunningPrometheus {
  readonly url: string
  /** An instant query; rejects with Prometheus's error when the query does not parse or fails. */
  query(q: string): Promise<Sample[]>
  close(): Promise<void>
}

/**
 * Starts a real Prometheus on a free 127.0.0.1 port with its own data directory, scraping
 * `targets` (host:port) every second and evaluating `ruleFiles` every second (on `atPort` if given).
 */
export async function startPrometheus(targets: readonly string[], ruleFiles: readonly string[] = [], atPort?: number): Promise<RunningPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-prom-'))
  await writeFile(join(dir, 'prometheus.yml'), `global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: ${JSON.stringify(ruleFiles)}
scrape_configs:
  - job_name: modelsplit
    static_configs: [{ targets: ${JSON.stringify(targets)} }]
`)
  // A caller whose routers must know Prometheus' address before it starts picks the port.
  const port = atPort ?? await freePort()
  const url = `http://127.0.0.1:${port}`
  let stderr = ''
  const proc: ChildProcess = spawn(prometheusBin, [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  proc.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
  const close = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await vi.waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${stderr}`)
      expect((await fetch(`${url}/-/ready`)).status).toBe(200)
    }, { timeout: 20_000, interval: 100 })
  } catch (err) {
    await close()
    throw err
  }
  return {
    url,
    async query(q) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(q)}`)
      const body = await res.json() as { status: string; data: { result: Sample[] }; error?: string }
      if (body.status !== 'success') throw new Error(`${q}: ${body.error}`)
      return body.data.result
    },
    close,
  }
}
