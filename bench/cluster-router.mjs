// Runs `modelsplit serve` in N cluster workers sharing its listen ports (the config must use
// fixed ports: a cluster shares handles by address, so two `port: 0` servers would collide).
// Usage: node bench/cluster-router.mjs N dist/cli/main.js serve --config FILE [...]
// Prints the first worker's "modelsplit: predictions on ..." line once every worker listens;
// SIGTERM stops every worker (each drains and exits) and then exits.
import cluster from 'node:cluster'

const [count, script, ...args] = process.argv.slice(2)
const n = Number(count)
cluster.setupPrimary({ exec: script, args, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })

let ready = 0
let banner = ''
const workers = []
for (let i = 0; i < n; i++) {
  const w = cluster.fork()
  workers.push(w)
  let out = ''
  w.process.stdout.setEncoding('utf8')
  w.process.stdout.on('data', (chunk) => {
    out += chunk
    if (!out.includes('\n') || w.ready) return
    w.ready = true
    banner ||= out.slice(0, out.indexOf('\n') + 1)
    if (++ready === n) process.stdout.write(banner.replace('modelsplit:', `modelsplit (cluster of ${n}):`))
  })
  w.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`cluster-router: worker ${i} exited (code ${code})\n`)
      process.exit(1)
    }
  })
}

let stopping = false
process.once('SIGTERM', async () => {
  stopping = true
  await Promise.all(workers.map((w) => new Promise((resolve) => {
    if (w.process.exitCode !== null) return resolve()
    w.once('exit', resolve)
    w.process.kill('SIGTERM')
  })))
  process.exit(0)
})
