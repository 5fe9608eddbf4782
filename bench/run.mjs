#!/usr/bin/env node
// `npm run bench`: modelsplit against direct calls and nginx, plus memory, reload and CPU
// profiles. See `npm run bench -- --help` and README.md ("Benchmarks").
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clockTicks, quiesce, startCpu } from './cpu.mjs'
import { USER_IDS, runLoad } from './load.mjs'
import { runMemoryCase } from './memory.mjs'
import { closedPort, startModelServers } from './model-servers.mjs'
import { kafkaRecording, startKafka } from './kafka.mjs'
import { startOtlpSink } from './otlp-sink.mjs'
import { ensureNginx, nginxVersion, startNginx } from './nginx.mjs'
import { compareSplit, startFloor } from './node-floor.mjs'
import { HELP, parseOptions } from './options.mjs'
import { pinPlan, pinTree } from './pin.mjs'
import { summariseProfile } from './profile.mjs'
import { runReloadCase } from './reload.mjs'
import { addRatios, checkTargets, summarise, writeReport } from './report.mjs'
import { hasWorkersFlag, scrape, startRouter } from './router.mjs'
import { MODELS, nginxHttpConf, routerConfig, writeConfig } from './topology.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUILT = join(ROOT, 'dist')
// The run uses a copy of dist/ taken at its start (inside bench/, so node_modules still resolve):
// a rebuild by someone else mid-run must not change the code under test between cases.
let DIST = BUILT

/**
 * Load cases: which server and path, and whether at a fixed rate. Servers: `direct` (model_a
 * itself), `floor` / `floor-shadow` (bench/node-floor.mjs), `ms` (modelsplit, one process),
 * `w1`, `w2` (modelsplit in 1 or 2 cluster workers), `cluster` (in --workers workers), `nginx`.
 */
const CASES = {
  direct: { target: 'direct', path: '/predict' },
  'node-floor': { target: 'floor', path: '/split/predict' },
  'ms-split': { target: 'ms', path: '/split/predict' },
  // The split on a route with `overhead: header`: every answer timed (router and model, on the
  // router's clock), observed in modelsplit_overhead_seconds and sent as server-timing. Against
  // ms-split (overhead off), the cost of the measurement; off, a request pays one branch per step.
  'ms-split-overhead': { target: 'ms', path: '/timed/predict' },
  // The split on a route with `record: true` (inputs included): every request is a record in the
  // file sink, in the bench's temp dir. Reports modelsplit_records_total written / dropped.
  'ms-record': { target: 'ms', path: '/rec/predict', records: true, recordsTo: "the JSONL file in the bench's temp dir" },
  // The same with `recording.sink: kafka`: every record produced (acks: all, lz4) to a real Kafka
  // broker started for the case (bench/kafka.mjs). The broker's CPU is not the router's: only the
  // router's is counted, but the broker shares the machine.
  'ms-record-kafka': { target: 'ms-kafka', path: '/rec/predict', records: true },
  // The split with `tracing` on, exporting over OTLP/HTTP to a local sink that discards
  // (bench/otlp-sink.mjs): every trace kept, and 1 in 100 (the others still send a traceparent).
  // A router of their own each, since `tracing` is the whole router's.
  'ms-split-trace-1': { target: 'ms-trace-1', path: '/split/predict', traced: 1 },
  'ms-split-trace-001': { target: 'ms-trace-001', path: '/split/predict', traced: 0.01 },
  // The fast shadow traced too: a span per mirror, ended with its comparison.
  'ms-shadow-trace-1': { target: 'ms-trace-1', path: '/shadow/predict', traced: 1 },
  'nginx-split': { target: 'nginx', path: '/split/predict' },
  'node-floor-shadow': { target: 'floor-shadow', path: '/shadow/predict' },
  'ms-shadow': { target: 'ms', path: '/shadow/predict' },
  'nginx-shadow': { target: 'nginx', path: '/shadow/predict' },
  'ms-slow-shadow': { target: 'ms', path: '/slow/predict' },
  'nginx-slow-shadow': { target: 'nginx', path: '/slow/predict' },
  'ms-dead-shadow': { target: 'ms', path: '/dead/predict' },
  'nginx-dead-shadow': { target: 'nginx', path: '/dead/predict' },
  'ms-split-w1': { target: 'w1', path: '/split/predict' },
  'ms-split-w2': { target: 'w2', path: '/split/predict' },
  'ms-cluster-split': { target: 'cluster', path: '/split/predict' },
  'ms-cluster-shadow': { target: 'cluster', path: '/shadow/predict' },
  'direct-rate': { target: 'direct', path: '/predict', rate: true },
  'ms-rate': { target: 'ms', path: '/split/predict', rate: true },
  'nginx-rate': { target: 'nginx', path: '/split/predict', rate: true },
}
const SPECIAL = ['profile', 'reload', 'memory']

const log = (line) => process.stderr.write(`${line}\n`)

/**
 * modelsplit_records_total{result="written"|"dropped"} of a router once they stop moving (the
 * writer is done with what the last requests queued), polled every 100 ms for up to 10 s.
 */
async function settledRecords(adminUrl) {
  const read = async () => {
    const m = await scrape(adminUrl)
    return { written: m.sum('modelsplit_records_total', 'result="written"'), dropped: m.sum('modelsplit_records_total', 'result="dropped"') }
  }
  let last = await read()
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const now = await read()
    if (now.written === last.written && now.dropped === last.dropped) return now
    last = now
  }
  return last
}

async function main() {
  // `npm run bench -- calibration [options]`: the statistics' calibration, a script of its own.
  if (process.argv[2] === 'calibration') return (await import('./calibration.mjs')).runCalibration(process.argv.slice(3))
  let opts
  try {
    opts = parseOptions(process.argv.slice(2))
  } catch (err) {
    log(`bench: ${err.message}\n\n${HELP}`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(HELP)
    return 0
  }
  const known = [...Object.keys(CASES), ...SPECIAL]
  let selected = opts.cases ?? known
  const unknown = selected.filter((c) => !known.includes(c))
  if (unknown.length > 0) {
    log(`bench: unknown case ${unknown.join(', ')}; cases are ${known.join(', ')}`)
    return 2
  }
  if (!opts.nginx) selected = selected.filter((c) => !c.startsWith('nginx-'))
  const loadCases = Object.keys(CASES).filter((c) => selected.includes(c))
  const outDir = resolve(opts.out ?? join(ROOT, 'bench/results'))
  const workers = opts.workers ?? os.availableParallelism()
  // The cluster cases share a router with ms-split-wN when N = --workers.
  const serverOf = (c) => (CASES[c].target === 'cluster' ? `w${workers}` : CASES[c].target)

  if (!existsSync(join(BUILT, 'cli/main.js'))) {
    log('bench: dist/ missing, building it (npm run build)')
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' })
  }
  const wantsNginx = loadCases.some((c) => CASES[c].target === 'nginx')
  const nginxBin = wantsNginx ? ensureNginx() : null

  const cleanup = []
  const stopAll = async () => {
    while (cleanup.length > 0) await cleanup.pop()().catch((err) => log(`bench: cleanup: ${err.message}`))
  }
  process.once('SIGINT', () => { void stopAll().then(() => process.exit(130)) })

  DIST = await mkdtemp(join(ROOT, 'bench/.dist-'))
  cleanup.push(() => rm(DIST, { recursive: true, force: true }))
  await cp(BUILT, DIST, { recursive: true })
  const workersFlag = loadCases.some((c) => /^w\d+$/.test(serverOf(c))) && hasWorkersFlag(DIST)
  const git = (...args) => { try { return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim() } catch { return '' } }

  const result = {
    meta: {
      date: new Date().toISOString(),
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memory: os.totalmem(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
      nginx: nginxBin ? nginxVersion(nginxBin) : null,
      autocannon: JSON.parse(readFileSync(join(ROOT, 'node_modules/autocannon/package.json'), 'utf8')).version,
      userIds: USER_IDS.length,
      commit: `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', 'src') ? ' + uncommitted src changes' : ''}`,
      clockTicks: clockTicks(),
      workersVia: !loadCases.some((c) => /^w\d+$/.test(serverOf(c))) ? null : workersFlag ? 'modelsplit serve --workers N' : 'bench/cluster-router.mjs',
    },
    options: { duration: opts.duration, connections: opts.connections, repeats: opts.repeats, rate: opts.rate, sameRate: opts.sameRate, pin: opts.pin, memoryRequests: opts.memoryRequests, workers, smoke: opts.smoke },
    cases: {},
    floorSplit: undefined,
    targets: [],
    memory: undefined,
    reload: undefined,
    profiles: {},
    notes: [],
  }

  try {
    // --pin: this process (and so the load generator's worker, the model servers and brokers it
    // starts from now on) on every CPU but the last, each proxy under test on the last.
    const pin = opts.pin ? pinPlan() : null
    if (opts.pin && pin === null) throw new Error('--pin needs Linux, taskset and at least 2 CPUs')
    if (pin !== null) {
      pinTree(process.pid, pin.rest)
      log(`bench: pinned: proxies on CPU ${pin.proxy}, everything else on CPU ${pin.rest}`)
    }
    const tmp = await mkdtemp(join(os.tmpdir(), 'modelsplit-bench-'))
    cleanup.push(() => rm(tmp, { recursive: true, force: true }))
    const servers = await startModelServers(MODELS)
    cleanup.push(() => servers.close())
    const urls = { ...servers.urls, shadow_dead: `http://127.0.0.1:${await closedPort()}` }
    log(`bench: model servers ${JSON.stringify(urls)}`)
    const mainConfig = join(tmp, 'router.yaml')
    await writeConfig(mainConfig, routerConfig(urls))

    // --- throughput and latency cases, interleaved ---
    if (loadCases.length > 0) {
      const targets = { direct: { url: urls.model_a, pid: undefined } }
      const stops = []
      const proxies = [...new Set(loadCases.map(serverOf))].filter((x) => x !== 'direct')
      // The floor's split is checked against modelsplit's whenever modelsplit runs (in --smoke too).
      if (proxies.includes('ms') && !proxies.includes('floor')) proxies.push('floor')
      for (const server of proxies) {
        let t
        const n = /^w(\d+)$/.exec(server)?.[1]
        if (server === 'ms') t = await startRouter(DIST, mainConfig)
        else if (server === 'ms-kafka') {
          const kafka = await startKafka(tmp)
          const file = join(tmp, 'kafka.yaml')
          const cfg = routerConfig(urls)
          await writeConfig(file, { ...cfg, recording: kafkaRecording(kafka.address, cfg.recording) })
          const router = await startRouter(DIST, file)
          // The router first (it flushes to the broker), then the broker.
          t = { ...router, close: async () => { await router.close(); await kafka.stop() } }
        }
        else if (server === 'ms-trace-1' || server === 'ms-trace-001') {
          const sink = await startOtlpSink()
          const file = join(tmp, `${server}.yaml`)
          await writeConfig(file, { ...routerConfig(urls), tracing: { otlp_endpoint: sink.url, sample_ratio: server === 'ms-trace-1' ? 1 : 0.01, service_name: 'modelsplit-bench' } })
          const router = await startRouter(DIST, file)
          // The router first (it flushes its last spans to the sink), then the sink.
          t = { ...router, sink, close: async () => { await router.close(); await sink.close() } }
        }
        else if (server === 'floor') t = await startFloor('/split', urls)
        else if (server === 'floor-shadow') t = await startFloor('/shadow', urls, urls.shadow_fast)
        else if (server === 'nginx') t = await startNginx(nginxBin, await nginxHttpConf(urls, DIST))
        else if (n !== undefined) {
          const file = join(tmp, `cluster-${n}.yaml`)
          const cfg = routerConfig(urls)
          await writeConfig(file, { ...cfg, listen: { host: '127.0.0.1', port: await closedPort() }, admin: { host: '127.0.0.1', port: await closedPort() } })
          t = await startRouter(DIST, file, { workers: Number(n), workersFlag })
        }
        if (pin !== null && t.pid !== undefined) pinTree(t.pid, pin.proxy)
        stops.push(() => t.close())
        targets[server] = t
      }
      cleanup.push(async () => { for (const s of stops.splice(0)) await s() })
      if (proxies.some((x) => /^w\d+$/.test(x))) log(`bench: cluster workers via ${result.meta.workersVia}`)

      if (targets.ms && targets.floor) {
        result.floorSplit = await compareSplit(targets.floor.url, targets.ms.url, USER_IDS)
        const f = result.floorSplit
        log(`bench: node-floor and modelsplit agree on ${f.same}/${f.ids} user ids (model_a ${f.models.model_a ?? 0}, model_b ${f.models.model_b ?? 0})`)
      }

      const warmup = opts.smoke ? 0 : Math.min(2, opts.duration)
      if (warmup > 0) {
        log(`bench: warming up each target for ${warmup} s`)
        for (const c of loadCases) await runLoad({ url: targets[serverOf(c)].url, path: CASES[c].path, connections: opts.connections, duration: warmup })
      }
      const runs = Object.fromEntries(loadCases.map((c) => [c, []]))
      // Records of the recording cases: counted from the router's /metrics, from after the warm-up
      // (once its records are on disk) to after the last run (once those are).
      const recordBase = Object.fromEntries(await Promise.all(loadCases.filter((c) => CASES[c].records).map(async (c) => [c, await settledRecords(targets[serverOf(c)].adminUrl)])))
      for (let rep = 1; rep <= opts.repeats; rep++) {
        for (const c of loadCases) {
          const def = CASES[c]
          const target = targets[serverOf(c)]
          // CPU of the proxy's processes over the run, per request answered (null for direct),
          // from when it is idle: not the tail of the previous case on the same router.
          await quiesce(target.pid)
          const cpu = startCpu(target.pid)
          const r = await runLoad({
            url: target.url, path: def.path, connections: opts.connections, duration: opts.duration,
            overallRate: def.rate || opts.sameRate ? opts.rate : undefined,
          })
          const us = cpu.stop()
          r.cpuSeconds = us === null ? null : us / 1e6
          r.cpuUs = us === null ? null : us / Math.max(1, r.ok + r.non2xx)
          if (def.traced !== undefined) r.otlp = target.sink.stats()
          runs[c].push(r)
          const cpuText = r.cpuUs === null ? '    n/a' : r.cpuUs.toFixed(1).padStart(7)
          log(`bench: [${rep}/${opts.repeats}] ${c.padEnd(18)} ${Math.round(r.rps).toString().padStart(7)} req/s  cpu ${cpuText} µs/req  p50 ${r.p50.toFixed(2)}  p90 ${r.p90.toFixed(2)}  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}`)
        }
      }
      for (const c of loadCases) result.cases[c] = { ...CASES[c], runs: runs[c], median: summarise(runs[c]) }
      for (const [c, before] of Object.entries(recordBase)) {
        const after = await settledRecords(targets[serverOf(c)].adminUrl)
        const answered = runs[c].reduce((s, r) => s + r.ok + r.non2xx, 0)
        result.cases[c].records = { written: after.written - before.written, dropped: after.dropped - before.dropped, answered }
        log(`bench: ${c}: ${result.cases[c].records.written} records written, ${result.cases[c].records.dropped} dropped, for ${answered} requests answered`)
      }
      addRatios(result.cases)
      // Free the CPUs before the cases that run a router of their own.
      await cleanup.pop()()
    }

    // --- CPU profiles of the split and shadow cases ---
    if (selected.includes('profile')) {
      const profDir = join(outDir, 'profiles')
      await mkdir(profDir, { recursive: true })
      // The recording kinds profile /rec with the file sink and with the Kafka sink (a broker of its own);
      // dead-shadow profiles /dead, whose one shadow is a closed port (its breaker open most of the time).
      // floor-split and floor-shadow profile the bare Node forwarder (node-floor, node-floor-shadow)
      // under the same load: what a mirror costs any Node process, beside what it costs modelsplit.
      const kinds = { split: '/split/predict', shadow: '/shadow/predict', 'dead-shadow': '/dead/predict', record: '/rec/predict', 'record-kafka': '/rec/predict', 'floor-split': '/split/predict', 'floor-shadow': '/shadow/predict' }
      for (const kind of opts.profileKinds ?? ['split', 'shadow']) {
        if (kinds[kind] === undefined) throw new Error(`unknown profile kind ${kind}; kinds are ${Object.keys(kinds).join(', ')}`)
        const isFloor = kind.startsWith('floor-')
        const name = isFloor ? `${kind}.cpuprofile` : `router-${kind}.cpuprofile`
        let config = mainConfig
        let kafka
        if (kind === 'record-kafka') {
          kafka = await startKafka(tmp)
          config = join(tmp, 'kafka-profile.yaml')
          const cfg = routerConfig(urls)
          await writeConfig(config, { ...cfg, recording: kafkaRecording(kafka.address, cfg.recording) })
        }
        const profArgs = ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', name]
        const r = isFloor
          ? await startFloor(kind === 'floor-split' ? '/split' : '/shadow', urls, kind === 'floor-split' ? undefined : urls.shadow_fast, { nodeArgs: profArgs })
          : await startRouter(DIST, config, { nodeArgs: profArgs })
        if (pin !== null) pinTree(r.pid, pin.proxy)
        const load = await runLoad({ url: r.url, path: kinds[kind], connections: opts.connections, duration: opts.duration })
        await r.close()
        if (kafka !== undefined) await kafka.stop()
        const summary = await summariseProfile(join(profDir, name))
        const requests = load.ok + load.non2xx
        result.profiles[kind] = { file: `profiles/${name}`, seconds: opts.duration, rps: load.rps, requests, busyUsPerRequest: (summary.busyMs * 1000) / Math.max(1, requests), ...summary }
        log(`bench: profiled ${kind}: ${Math.round(load.rps)} req/s, busy ${result.profiles[kind].busyUsPerRequest.toFixed(1)} µs per request; top: ${summary.functions.slice(0, 5).map((f) => `${f.name} ${f.pct.toFixed(1)}%`).join(', ')}`)
      }
    }

    // --- hot reload under load ---
    if (selected.includes('reload')) {
      const file = join(tmp, 'reload.yaml')
      await writeConfig(file, routerConfig(urls, { canary: 10 }))
      const r = await startRouter(DIST, file)
      cleanup.push(() => r.close())
      result.reload = await runReloadCase(r, { configFile: file, urls, connections: opts.connections, duration: opts.duration })
      await cleanup.pop()()
      log(`bench: reload: ${result.reload.writes} writes, ${result.reload.reloads} reloads, ${result.reload.load.errors} failed requests`)
    }

    // --- memory over many requests with a slow and a dead shadow ---
    if (selected.includes('memory')) {
      const r = await startRouter(DIST, mainConfig)
      cleanup.push(() => r.close())
      log(`bench: memory: ${opts.memoryRequests} requests with a slow and a dead shadow`)
      result.memory = await runMemoryCase(r, { requests: opts.memoryRequests, connections: opts.connections })
      await cleanup.pop()()
      const m = result.memory
      log(`bench: memory: RSS ${(m.base.rss / 1048576).toFixed(1)} → peak ${(m.peak.rss / 1048576).toFixed(1)} → end ${(m.end.rss / 1048576).toFixed(1)} MB (${m.ratio.toFixed(2)}x)`)
    }
  } finally {
    await stopAll()
  }

  result.targets = checkTargets(result.cases, result.memory)
  result.notes.push(
    `All processes share ${result.meta.cpus} CPUs: autocannon (a worker thread of the bench process), the model servers (one Node process), and the proxy under test (modelsplit: one Node process${result.meta.workersVia ? `, or a primary and N node:cluster workers in ms-split-wN (N = 1, 2) and ms-cluster-* (N = ${workers}), started with ${result.meta.workersVia}` : ''}; node-floor: one Node process; nginx: one worker). On a machine this small the load generator and the model servers take CPU the proxy would otherwise have, so absolute req/s are low and saturated-throughput ratios are ratios of what is left; the fixed-rate cases measure latency where nothing is saturated.`,
    'nginx runs with error_log at crit: a dead mirror would otherwise log a connect() failure per request; modelsplit counts those in metrics instead.',
    `CPU µs/req: utime + stime of the proxy's processes (/proc/<pid>/stat of the process and, for a cluster, its primary and every worker; clock ticks of 1/${result.meta.clockTicks} s) read before and after each run, divided by the responses in that run; each run starts once the proxy is idle (a 250 ms window with at most 10 ms of its CPU, 5 s at most), so the tail of the previous case on the same router (mirrors still answering, records being written) is not counted in the next; the median over runs is shown. It is what the proxy costs per request whatever the load generator and model servers leave it, so it compares across cases better than req/s on a small machine. direct has no proxy (n/a).`,
    'Latency percentiles are recorded in the load worker at 10 µs resolution from autocannon\'s per-response times (2xx only); errors = socket errors + timeouts + non-2xx.',
  )
  const md = await writeReport(outDir, result)
  process.stdout.write(`${md}\n`)
  log(`bench: wrote ${join(outDir, 'bench.md')} and bench.json`)
  const failed = (result.memory && !result.memory.pass) || (result.reload && !result.reload.pass) || (result.floorSplit && result.floorSplit.same !== result.floorSplit.ids)
  return failed ? 1 : 0
}

process.exitCode = await main()
