// The router as a process of its own (`node dist/cli/main.js serve`), for tests that need a real
// process: signals, --workers, a broker restart.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'

const CLI = join(import.meta.dirname, '../../dist/cli/main.js')

export interface RouterProcess {
  readonly url: string
  readonly adminUrl: string
  readonly child: ChildProcessWithoutNullStreams
  readonly exited: Promise<number | null>
  /** The first line it printed (predictions on …, admin on …). */
  readonly banner: string
  stderr(): string
}

/** Runs `modelsplit serve --config FILE [args]` as a process of its own; resolves once it listens. */
export async function spawnRouter(configFile: string, args: readonly string[] = []): Promise<RouterProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile, '--log-level', 'warn', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const banner = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('\n')) resolve(out)
    })
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${err}`)))
  })
  const m = /predictions on (\S+), admin on (\S+)/.exec(banner)
  if (m === null) throw new Error(`unexpected banner: ${banner}`)
  return { url: m[1] as string, adminUrl: (m[2] as string).replace(/[,;]$/, ''), banner, child, exited, stderr: () => err }
}
