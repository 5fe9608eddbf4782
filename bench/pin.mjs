// --pin: the proxy under test gets a CPU of its own; the bench (its load generator), the model
// servers, the Kafka broker and every other helper share the rest. On a 2-core machine the
// proxy's CPU per request then measures the proxy, not what a co-scheduled broker or load
// generator does to its caches and time slices (issue 22: the Kafka case ran with a JVM broker
// on the same two cores as the router it measured).
import { spawnSync } from 'node:child_process'
import os from 'node:os'
import { processTree } from './cpu.mjs'

/** The CPU lists: `proxy` for the proxy under test, `rest` for everything else; null if it cannot pin. */
export function pinPlan() {
  const n = os.availableParallelism()
  if (process.platform !== 'linux' || n < 2) return null
  if (spawnSync('taskset', ['-V'], { encoding: 'utf8' }).status !== 0) return null
  return { proxy: String(n - 1), rest: n === 2 ? '0' : `0-${n - 2}` }
}

/** Sets the affinity of every thread of `pid` and of its descendants (a cluster's workers, nginx's) to `cpus`. */
export function pinTree(pid, cpus) {
  for (const p of processTree(pid)) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(p)], { encoding: 'utf8' })
    // A process that exited in between is fine; anything else is not.
    if (r.status !== 0 && !/No such process/.test(r.stderr)) throw new Error(`taskset -a -p -c ${cpus} ${p}: ${r.stderr.trim()}`)
  }
}
