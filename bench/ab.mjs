// Old build against new build in one session, alternating: on a machine other jobs load, CPU µs per
// request moves from second to second, so two builds compare only run beside run. Each round runs
// every case on both builds (the order flips every round) and reports new/old per round and medians.
//
//   node bench/ab.mjs --old /tmp/old/dist --new dist [--cases split,dead,shadow] [--floor]
//                     [--duration 5] [--repeats 5] [--connections 50] [--rate R] [--out FILE.json]
//
// Cases are the bench topology's routes (bench/topology.mjs): split, shadow (one fast shadow), dead
// (one shadow on a closed port), slow, rec, timed. --floor adds the bare Node forwarder (node-floor
// on /split, node-floor-shadow mirroring /shadow) once per round, for the ratios against the floor.
// --rate R holds every run at R req/s: on a loaded machine CPU per request then compares at the
// same batching (a saturated run that happens to go faster pays less per request for that alone).
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { quiesce, startCpu } from './cpu.mjs'
import { runLoad } from './load.mjs'
import { closedPort, startModelServers } from './model-servers.mjs'
import { startFloor } from './node-floor.mjs'
import { startRouter } from './router.mjs'
import { MODELS, routerConfig, writeConfig } from './topology.mjs'

const { values } = parseArgs({
  options: {
    old: { type: 'string' },
    new: { type: 'string' },
    cases: { type: 'string', default: 'split,dead,shadow' },
    floor: { type: 'boolean', default: false },
    duration: { type: 'string', default: '5' },
    repeats: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string' },
    out: { type: 'string' },
  },
})
if (values.old === undefined || values.new === undefined) {
  process.stderr.write('usage: node bench/ab.mjs --old DIST --new DIST [--cases a,b] [--floor] [--duration S] [--repeats N] [--out FILE]\n')
  process.exit(2)
}
const cases = values.cases.split(',').map((s) => s.trim()).filter(Boolean)
const duration = Number(values.duration)
const repeats = Number(values.repeats)
const connections = Number(values.connections)
const rate = values.rate === undefined ? undefined : Number(values.rate)
const uptime = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')
const log = (s) => process.stderr.write(`${s}\n`)
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** One load run against `target`; CPU µs per answered request beside req/s. */
async function measure(target, path) {
  await quiesce(target.pid)
  const cpu = startCpu(target.pid)
  const r = await runLoad({ url: target.url, path, connections, duration, overallRate: rate })
  const us = cpu.stop()
  return { rps: r.rps, cpuUs: us === null ? null : us / Math.max(1, r.ok + r.non2xx), errors: r.errors, p99: r.p99 }
}

const load = { start: uptime() }
const tmp = await mkdtemp(join(os.tmpdir(), 'modelsplit-ab-'))
const servers = await startModelServers(MODELS)
const stops = [() => servers.close(), () => rm(tmp, { recursive: true, force: true })]
try {
  const urls = { ...servers.urls, shadow_dead: `http://127.0.0.1:${await closedPort()}` }
  const config = join(tmp, 'router.yaml')
  await writeConfig(config, routerConfig(urls))
  const builds = { old: await startRouter(resolve(values.old), config), new: await startRouter(resolve(values.new), config) }
  stops.unshift(() => builds.old.close(), () => builds.new.close())
  const floors = {}
  if (values.floor) {
    floors.split = await startFloor('/split', urls)
    floors.shadow = await startFloor('/shadow', urls, urls.shadow_fast)
    stops.unshift(() => floors.split.close(), () => floors.shadow.close())
  }
  log(`ab: load average ${load.start}; warming up`)
  for (const c of cases) for (const b of ['old', 'new']) await runLoad({ url: builds[b].url, path: `/${c}/predict`, connections, duration: 2 })
  for (const f of Object.keys(floors)) await runLoad({ url: floors[f].url, path: `/${f}/predict`, connections, duration: 2 })
  const runs = Object.fromEntries(cases.map((c) => [c, { old: [], new: [] }]))
  const floorRuns = Object.fromEntries(Object.keys(floors).map((f) => [f, []]))
  for (let round = 0; round < repeats; round++) {
    for (const c of cases) {
      for (const b of round % 2 === 0 ? ['old', 'new'] : ['new', 'old']) {
        const r = await measure(builds[b], `/${c}/predict`)
        runs[c][b].push(r)
        log(`ab: [${round + 1}/${repeats}] ${c.padEnd(8)} ${b.padEnd(3)} ${Math.round(r.rps).toString().padStart(6)} req/s  cpu ${r.cpuUs?.toFixed(1).padStart(7)} µs/req  errors ${r.errors}`)
      }
    }
    for (const f of Object.keys(floors)) {
      const r = await measure(floors[f], `/${f}/predict`)
      floorRuns[f].push(r)
      log(`ab: [${round + 1}/${repeats}] floor-${f.padEnd(6)}    ${Math.round(r.rps).toString().padStart(6)} req/s  cpu ${r.cpuUs?.toFixed(1).padStart(7)} µs/req`)
    }
  }
  load.end = uptime()
  const summary = {}
  const lines = [
    `# A/B: ${values.old} (old) vs ${values.new} (new)`, '',
    `${os.cpus().length} CPUs, Node ${process.version}; ${connections} connections${rate === undefined ? ' (as fast as they go)' : ` at ${rate} req/s`}, ${duration} s per run, ${repeats} rounds alternating (order flipped each round).`,
    `Load average (1/5/15 min) at start ${load.start}, at end ${load.end}.`, '',
    '| case | old CPU µs/req | new CPU µs/req | new/old CPU per round | median new/old CPU | old req/s | new req/s | median new/old req/s |',
    '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
  ]
  for (const c of cases) {
    const { old, new: nu } = runs[c]
    const cpuRatios = old.map((o, i) => nu[i].cpuUs / o.cpuUs)
    const rpsRatios = old.map((o, i) => nu[i].rps / o.rps)
    summary[c] = {
      old: { cpuUs: median(old.map((r) => r.cpuUs)), rps: median(old.map((r) => r.rps)) },
      new: { cpuUs: median(nu.map((r) => r.cpuUs)), rps: median(nu.map((r) => r.rps)) },
      cpuRatios, rpsRatios, cpuRatio: median(cpuRatios), rpsRatio: median(rpsRatios),
    }
    const s = summary[c]
    lines.push(`| ${c} | ${s.old.cpuUs.toFixed(1)} | ${s.new.cpuUs.toFixed(1)} | ${cpuRatios.map((x) => x.toFixed(2)).join(' ')} | ${s.cpuRatio.toFixed(3)} | ${Math.round(s.old.rps)} | ${Math.round(s.new.rps)} | ${s.rpsRatio.toFixed(3)} |`)
  }
  for (const f of Object.keys(floors)) {
    summary[`floor-${f}`] = { cpuUs: median(floorRuns[f].map((r) => r.cpuUs)), rps: median(floorRuns[f].map((r) => r.rps)), runs: floorRuns[f] }
    lines.push(`| node-floor${f === 'split' ? '' : '-shadow'} | | ${summary[`floor-${f}`].cpuUs.toFixed(1)} | | | | ${Math.round(summary[`floor-${f}`].rps)} | |`)
  }
  lines.push('')
  // Ratios between cases of one build, medians of per-round ratios (each round's runs are minutes apart at most).
  const within = (b, x, y) => median(runs[x][b].map((r, i) => r.cpuUs / runs[y][b][i].cpuUs))
  const vsFloor = (b, x, f) => median(runs[x][b].map((r, i) => r.cpuUs / floorRuns[f][i].cpuUs))
  for (const b of ['old', 'new']) {
    const parts = []
    if (runs.dead && runs.split) parts.push(`dead/split CPU ${within(b, 'dead', 'split').toFixed(3)}×, req/s ${median(runs.dead[b].map((r, i) => r.rps / runs.split[b][i].rps)).toFixed(3)}×`)
    if (runs.shadow && runs.split) parts.push(`shadow/split CPU ${within(b, 'shadow', 'split').toFixed(3)}×`)
    if (runs.shadow && floorRuns.split) parts.push(`shadow/node-floor CPU ${vsFloor(b, 'shadow', 'split').toFixed(3)}×`)
    if (runs.shadow && floorRuns.shadow) parts.push(`shadow/node-floor-shadow CPU ${vsFloor(b, 'shadow', 'shadow').toFixed(3)}×`)
    if (runs.split && floorRuns.split) parts.push(`split/node-floor CPU ${vsFloor(b, 'split', 'split').toFixed(3)}×`)
    if (parts.length > 0) lines.push(`- ${b}: ${parts.join('; ')} (medians of per-round ratios)`)
  }
  if (floorRuns.shadow && floorRuns.split) lines.push(`- node-floor-shadow/node-floor CPU ${median(floorRuns.shadow.map((r, i) => r.cpuUs / floorRuns.split[i].cpuUs)).toFixed(3)}×: what the bare forwarder's own mirror costs`)
  const md = lines.join('\n') + '\n'
  process.stdout.write(md)
  if (values.out !== undefined) {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    await writeFile(values.out, JSON.stringify({ commit, load, options: { cases, duration, repeats, connections, rate, old: values.old, new: values.new }, runs, floorRuns, summary }, null, 2))
    await writeFile(values.out.replace(/\.json$/, '') + '.md', md)
  }
} finally {
  for (const s of stops) await s()
}
