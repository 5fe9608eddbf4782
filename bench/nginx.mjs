// A private nginx for the benchmark, modelled on test/helpers/nginx.ts: one worker, no master,
// in the foreground, config generated into a temp dir, no access log, stopped by PID.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { closedPort } from './model-servers.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Path of an nginx binary ($NGINX_BIN, PATH, the usual sbin dirs), or null. */
export function findNginx() {
  if (process.env.NGINX_BIN) return process.env.NGINX_BIN
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  for (const d of dirs) {
    try {
      accessSync(join(d, 'nginx'), constants.X_OK)
      return join(d, 'nginx')
    } catch {
      // next
    }
  }
  return null
}

/** Finds nginx, installing Debian's package with scripts/install-nginx.sh if it is missing. */
export function ensureNginx() {
  let bin = findNginx()
  if (bin !== null) return bin
  process.stderr.write('bench: nginx missing, installing it from Debian packages (scripts/install-nginx.sh)\n')
  execFileSync('bash', [join(ROOT, 'scripts/install-nginx.sh')], { stdio: 'inherit' })
  bin = findNginx()
  if (bin === null) throw new Error('bench: nginx still not found after scripts/install-nginx.sh')
  return bin
}

/** `nginx -v` prints "nginx version: nginx/1.22.1" on stderr. */
export function nginxVersion(bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' })
  return (r.stderr || r.stdout).trim().replace(/^nginx version:\s*/, '')
}

/**
 * Starts nginx with `httpConf` inside `http {}`; `{{port}}` becomes the listen port.
 * Resolves to `{ url, port, pid, dir, close() }` once the port accepts connections.
 */
export async function startNginx(bin, httpConf) {
  const port = await closedPort()
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-bench-nginx-'))
  const conf = join(dir, 'nginx.conf')
  await writeFile(conf, renderConf(dir, httpConf.replaceAll('{{port}}', String(port))))
  const child = spawn(bin, ['-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'inherit'] })
  const exited = new Promise((resolve) => {
    child.once('exit', resolve)
    child.once('error', resolve)
  })
  const deadline = Date.now() + 10_000
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
      child.kill('SIGKILL')
      throw new Error(`bench: nginx did not start on ${port}: ${log}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    dir,
    async close() {
      if (child.exitCode === null) process.kill(child.pid, 'SIGTERM')
      const t = setTimeout(() => child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 5000)
      await exited
      clearTimeout(t)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function renderConf(dir, httpConf) {
  const p = (n) => join(dir, n)
  // error_log at crit: a dead mirror logs a connect() failure per request at `error`, which
  // would turn the benchmark into a disk-write test; modelsplit counts those in metrics instead.
  return `daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} crit;

events {
    worker_connections 8192;
}

http {
    access_log off;
    client_body_temp_path ${p('client_body')};
    proxy_temp_path ${p('proxy')};
    fastcgi_temp_path ${p('fastcgi')};
    uwsgi_temp_path ${p('uwsgi')};
    scgi_temp_path ${p('scgi')};
    default_type application/json;
    keepalive_requests 1000000;
    keepalive_timeout 75s;

${httpConf}
}
`
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { s.destroy(); resolve(false) })
  })
}
