// Starts `modelsplit serve` as a child process and reads its Prometheus metrics.
import { spawn, spawnSync } from 'node:child_process'

/** Whether this build's `modelsplit serve` takes `--workers N` (its --help mentions it). */
export function hasWorkersFlag(distDir) {
  const r = spawnSync(process.execPath, [`${distDir}/cli/main.js`, '--help'], { encoding: 'utf8', timeout: 15_000 })
  return /--workers\b/.test(`${r.stdout}${r.stderr}`)
}

/**
 * Spawns `node [nodeArgs] dist/cli/main.js serve --config FILE --log-level warn`; resolves once it
 * prints `modelsplit: predictions on URL, admin on URL` to `{ url, adminUrl, pid, close() }`.
 * With `workers`, that many node:cluster workers share the (fixed) ports of the config: through
 * `serve --workers N` when `workersFlag` says the build has it, else bench/cluster-router.mjs.
 */
export function startRouter(distDir, configFile, { nodeArgs = [], workers, workersFlag = false, env } = {}) {
  const viaLauncher = workers !== undefined && !workersFlag
  const launcher = viaLauncher ? [new URL('./cluster-router.mjs', import.meta.url).pathname, String(workers)] : []
  const flag = workers !== undefined && workersFlag ? ['--workers', String(workers)] : []
  const child = spawn(process.execPath, [...nodeArgs, ...launcher, `${distDir}/cli/main.js`, 'serve', '--config', configFile, ...flag, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ?? process.env,
  })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (c) => {
    stderr += c
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000)
  })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`bench: router did not start in 15 s: ${stderr}`)), 15_000)
    void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`bench: router exited (code ${code}): ${stderr}`)) })
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      out += chunk
      const m = /predictions on (\S+), admin on (\S+)/.exec(out)
      if (m === null) return
      clearTimeout(timer)
      child.stdout.removeAllListeners('data')
      child.stdout.resume()
      resolve({
        url: m[1].replace(/,$/, ''),
        adminUrl: m[2],
        pid: child.pid,
        stderr: () => stderr,
        /** SIGTERM (drains, exits 0, writes a --cpu-prof profile); resolves to the exit status. */
        async close() {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM')
          const t = setTimeout(() => child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 15_000)
          const status = await exited
          clearTimeout(t)
          return status
        },
      })
    })
  })
}

/** Fetches /metrics and sums each metric over its series (optionally only those whose labels include `match`). */
export async function scrape(adminUrl) {
  const res = await fetch(`${adminUrl}/metrics`)
  const text = await res.text()
  const series = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (m) series.push({ name: m[1], labels: m[2] ?? '', value: Number(m[3]) })
  }
  return {
    sum(name, match = '') {
      let s = 0
      for (const x of series) if (x.name === name && x.labels.includes(match)) s += x.value
      return s
    },
  }
}
