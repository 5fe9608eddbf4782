// CPU time of a process tree from /proc: utime + stime of the proxy under test (and, for a
// cluster, of its workers), read before and after each load run. Linux only; elsewhere null.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

let ticksPerSecond
/** `getconf CLK_TCK`: the unit of utime and stime in /proc/<pid>/stat (100 almost everywhere). */
export function clockTicks() {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** Fields of /proc/<pid>/stat after `comm` (which may hold spaces and parentheses); null if gone. */
function statFields(pid) {
  let text
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // proc(5): field 2 is `(comm)`; the rest start at field 3 (state), so index = field - 3.
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

/** utime + stime (fields 14 and 15), in clock ticks, summed over all threads of `pid`; null if gone. */
export function cpuTicks(pid) {
  const f = statFields(pid)
  return f === null ? null : Number(f[11]) + Number(f[12])
}

/**
 * `pid` and all its descendants. This kernel may lack /proc/<pid>/task/<tid>/children
 * (CONFIG_PROC_CHILDREN), so the parent of every process is read from /proc/<n>/stat (field 4).
 */
export function processTree(pid) {
  const children = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const f = statFields(name)
    if (f === null) continue
    const ppid = Number(f[1])
    if (!children.has(ppid)) children.set(ppid, [])
    children.get(ppid).push(Number(name))
  }
  const out = [pid]
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []))
  return out
}

/**
 * Starts measuring the CPU time of `pid`'s process tree (taken now: a cluster's workers are
 * already forked). `stop()` returns the µs of CPU those processes used since, or null when /proc
 * cannot be read. A process that exits in between is left out of the sum.
 */
export function startCpu(pid) {
  if (process.platform !== 'linux' || pid === undefined) return { stop: () => null }
  const pids = processTree(pid)
  const before = pids.map(cpuTicks)
  return {
    stop() {
      let ticks = 0
      let seen = 0
      for (let i = 0; i < pids.length; i++) {
        const after = cpuTicks(pids[i])
        if (after === null || before[i] === null) continue
        ticks += after - before[i]
        seen++
      }
      return seen === 0 ? null : (ticks * 1e6) / clockTicks()
    },
  }
}

/**
 * Waits until `pid`'s process tree is idle: a 250 ms window in which it used at most 10 ms of CPU
 * (one clock tick of slack), or `maxMs` in all. Load cases that share a router run one after the
 * other: without this, what the previous case left under way (mirrors still answering, their
 * comparisons, records being written, the garbage it made) was counted in the next case's CPU per
 * request (a dead shadow measured right after a live one paid for the live one's tail). Resolves
 * to the ms waited.
 */
export async function quiesce(pid, maxMs = 5000) {
  if (process.platform !== 'linux' || pid === undefined) return 0
  const started = performance.now()
  for (;;) {
    const cpu = startCpu(pid)
    await new Promise((resolve) => setTimeout(resolve, 250))
    const us = cpu.stop()
    const waited = performance.now() - started
    if (us === null || us <= 10_000 || waited >= maxMs) return waited
  }
}
