import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { freePort } from './upstream.js'

/** Replaced by the chosen port in the http-context config given to startNginx(). */
export const PORT_PLACEHOLDER = '{{port}}'

export interface RunningNginx {
  readonly url: string
  readonly port: number
  /** prefix dir holding nginx.conf, error.log, pid and temp paths */
  readonly dir: string
  close(): Promise<void>
}

const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 5_000
const MAX_PORT_TRIES = 5

/** Path of an nginx binary ($NGINX_BIN, PATH, then the usual sbin dirs), or null if there is none. */
export function findNginx(): string | null {
  const fromEnv = process.env.NGINX_BIN
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean)
  // Debian puts nginx in /usr/sbin, which a non-root user's PATH usually lacks.
  dirs.push('/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin')
  const candidates = fromEnv ? [fromEnv] : dirs.map((d) => join(d, 'nginx'))
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // not there: try the next
    }
  }
  return null
}

/**
 * Starts a private nginx (no master process, one worker, everything under a fresh temp dir)
 * whose `http {}` block holds `httpConf`; `{{port}}` in it becomes a free 127.0.0.1 port, e.g.
 * `server { listen 127.0.0.1:{{port}}; location / { return 200 ok; } }`.
 * Resolves once the port accepts connections.
 */
export async function startNginx(httpConf: string): Promise<RunningNginx> {
  if (!httpConf.includes(PORT_PLACEHOLDER)) {
    throw new Error(`startNginx: the config needs a listen directive on ${PORT_PLACEHOLDER}`)
  }
  const bin = findNginx()
  if (bin === null) throw new Error('startNginx: nginx not found; run scripts/install-nginx.sh')

  let lastError: unknown
  for (let attempt = 0; attempt < MAX_PORT_TRIES; attempt++) {
    const port = await freePort()
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-nginx-'))
    try {
      await writeFile(join(dir, 'nginx.conf'), renderConf(dir, httpConf.replaceAll(PORT_PLACEHOLDER, String(port))))
      const child = spawn(bin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      let stderr = ''
      child.stderr?.setEncoding('utf8')
      child.stderr?.on('data', (chunk: string) => {
        stderr += chunk
      })
      const exited = waitExit(child)
      try {
        await waitListening(port, exited)
      } catch (err) {
        await stop(child, exited)
        const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
        throw new Error(`nginx did not start on port ${port}: ${(log + stderr).trim()}`, { cause: err })
      }
      return {
        url: `http://127.0.0.1:${port}`,
        port,
        dir,
        close: async () => {
          await stop(child, exited)
          await rm(dir, { recursive: true, force: true })
        },
      }
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      lastError = err
      // Someone took the port between our probe and nginx's bind: try another one.
      if (!String((err as Error).message).includes('Address already in use')) throw err
    }
  }
  throw new Error(`nginx: no free port after ${MAX_PORT_TRIES} tries`, { cause: lastError })
}

function renderConf(dir: string, httpConf: string): string {
  const p = (name: string): string => join(dir, name)
  return `daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path ${p('client_body')};
    proxy_temp_path ${p('proxy')};
    fastcgi_temp_path ${p('fastcgi')};
    uwsgi_temp_path ${p('uwsgi')};
    scgi_temp_path ${p('scgi')};
    default_type text/plain;
    keepalive_requests 100000;

${httpConf}
}
`
}

type Exit = { code: number | null; signal: NodeJS.Signals | null }

function waitExit(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
    // A spawn failure (ENOENT, EACCES) emits 'error' and may never emit 'exit'.
    child.once('error', () => resolve({ code: -1, signal: null }))
  })
}

async function waitListening(port: number, exited: Promise<Exit>): Promise<void> {
  let gone: Exit | undefined
  void exited.then((e) => {
    gone = e
  })
  const deadline = Date.now() + START_TIMEOUT_MS
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (gone) throw new Error(`nginx exited early (code ${gone.code}, signal ${gone.signal})`)
    if (await canConnect(port)) return
    if (Date.now() > deadline) throw new Error(`nginx not listening after ${START_TIMEOUT_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => {
      socket.destroy()
      resolve(false)
    })
  })
}

async function stop(child: ChildProcess, exited: Promise<Exit>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    await exited
    return
  }
  const pid = child.pid
  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
  kill('SIGTERM') // nginx: fast shutdown
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS)
  })
  const result = await Promise.race([exited, timedOut])
  clearTimeout(timer)
  if (result === 'timeout') {
    kill('SIGKILL')
    await exited
  }
}
