#!/usr/bin/env node
// `node bench/overhead.mjs`: the router's overhead in the method public gateway benchmarks use,
// for split, shadow and recording. Two measures, each against a direct call to the same mock
// model, which answers every request after 20 ms:
//   1. added latency: p50 and p99 at concurrency 1 (one request at a time, so nothing queues and
//      what is left over the direct call is what the router adds per request);
//   2. sustained throughput: req/s at a fixed number of connections (the mock's 20 ms bounds it:
//      connections / 20 ms), with the router's CPU µs per request beside it.
// Cases run interleaved (direct, split, shadow, record, direct, …) and medians are reported.
// Results: bench/results/overhead.md and overhead.json. See bench/README.md.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { quiesce, startCpu } from './cpu.mjs'
import { runLoad } from './load.mjs'
import { closedPort, startModelServers } from './model-servers.mjs'
import { median } from './report.mjs'
import { startRouter } from './router.mjs'
import { routerConfig, writeConfig } from './topology.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MOCK_MS = 20

const HELP = `Usage: node bench/overhead.mjs [options]

The router's added latency and throughput cost, in the method public gateway benchmarks use:
p50/p99 at concurrency 1 against a direct call, and sustained req/s against a mock model that
answers in ${MOCK_MS} ms, for split, shadow (a mirror to a second ${MOCK_MS} ms mock) and recording
(record: true, inputs included, the JSONL file sink).

  --duration S       seconds per run (default 10)
  --connections N    connections of the throughput runs (default 100)
  --repeats N        runs per case, interleaved; medians reported (default 3)
  --out DIR          where overhead.md / overhead.json go (default bench/results)
  --help             this text
`

/** Case → path on the router ('' = the mock itself). */
const CASES = { direct: '', split: '/split/predict', shadow: '/shadow/predict', record: '/rec/predict' }

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { duration: { type: 'string' }, connections: { type: 'string' }, repeats: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', default: false } },
    strict: true,
  })
  const num = (name, fallback) => {
    const n = values[name] === undefined ? fallback : Number(values[name])
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${values[name]}`)
    return n
  }
  return { help: values.help, duration: num('duration', 10), connections: num('connections', 100), repeats: num('repeats', 3), out: values.out }
}

const log = (line) => process.stderr.write(`${line}\n`)
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–')

async function main() {
  let opts
  try {
    opts = options(process.argv.slice(2))
  } catch (err) {
    log(`bench/overhead: ${err.message}\n\n${HELP}`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' })
  }
  const cleanup = []
  try {
    // A copy of dist/, so a rebuild during the run does not change the code under test.
    const dist = await mkdtemp(join(ROOT, 'bench/.dist-'))
    cleanup.push(() => rm(dist, { recursive: true, force: true }))
    await cp(join(ROOT, 'dist'), dist, { recursive: true })
    const tmp = await mkdtemp(join(os.tmpdir(), 'modelsplit-overhead-'))
    cleanup.push(() => rm(tmp, { recursive: true, force: true }))
    const servers = await startModelServers({ model_a: MOCK_MS, model_b: MOCK_MS, shadow_fast: MOCK_MS, shadow_slow: MOCK_MS })
    cleanup.push(() => servers.close())
    const urls = { ...servers.urls, shadow_dead: `http://127.0.0.1:${await closedPort()}` }
    const file = join(tmp, 'router.yaml')
    await writeConfig(file, routerConfig(urls))
    const router = await startRouter(dist, file)
    cleanup.push(() => router.close())

    const runs = Object.fromEntries(Object.keys(CASES).map((c) => [c, { c1: [], load: [] }]))
    const target = (c) => (c === 'direct' ? { url: urls.model_a, path: '/predict' } : { url: router.url, path: CASES[c] })
    log(`bench/overhead: mock answers in ${MOCK_MS} ms; warming up`)
    for (const c of Object.keys(CASES)) await runLoad({ ...target(c), connections: opts.connections, duration: Math.min(2, opts.duration) })
    for (let rep = 1; rep <= opts.repeats; rep++) {
      for (const c of Object.keys(CASES)) {
        const one = await runLoad({ ...target(c), connections: 1, duration: opts.duration })
        runs[c].c1.push(one)
        if (c !== 'direct') await quiesce(router.pid)
        const cpu = c === 'direct' ? null : startCpu(router.pid)
        const load = await runLoad({ ...target(c), connections: opts.connections, duration: opts.duration })
        const us = cpu === null ? null : cpu.stop()
        load.cpuUs = us === null ? null : us / Math.max(1, load.ok + load.non2xx)
        runs[c].load.push(load)
        log(`bench/overhead: [${rep}/${opts.repeats}] ${c.padEnd(7)} c=1 p50 ${f(one.p50)} p99 ${f(one.p99)} ms | c=${opts.connections} ${Math.round(load.rps)} req/s, cpu ${f(load.cpuUs, 1)} µs/req, errors ${one.errors + load.errors}`)
      }
    }
    const med = (xs, k) => median(xs.map((r) => r[k]).filter(Number.isFinite))
    const cases = {}
    for (const c of Object.keys(CASES)) {
      const r = runs[c]
      cases[c] = {
        p50: med(r.c1, 'p50'), p99: med(r.c1, 'p99'), rps: med(r.load, 'rps'), cpuUs: c === 'direct' ? null : med(r.load, 'cpuUs'),
        errors: [...r.c1, ...r.load].reduce((s, x) => s + x.errors, 0),
      }
    }
    const d = cases.direct
    for (const c of Object.keys(CASES)) {
      if (c === 'direct') continue
      cases[c].addedP50 = cases[c].p50 - d.p50
      cases[c].addedP99 = cases[c].p99 - d.p99
      cases[c].rpsVsDirect = cases[c].rps / d.rps
      cases[c].cpuVsSplit = cases[c].cpuUs / cases.split.cpuUs
    }
    const result = {
      meta: { date: new Date().toISOString(), cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? 'unknown', os: `${os.type()} ${os.release()}`, node: process.version, load: os.loadavg() },
      options: { ...opts, mockMs: MOCK_MS },
      cases,
    }
    const outDir = resolve(opts.out ?? join(ROOT, 'bench/results'))
    await mkdir(outDir, { recursive: true })
    await writeFile(join(outDir, 'overhead.json'), `${JSON.stringify(result, null, 2)}\n`)
    const md = toMarkdown(result)
    await writeFile(join(outDir, 'overhead.md'), md)
    process.stdout.write(md)
    return 0
  } finally {
    while (cleanup.length > 0) await cleanup.pop()().catch((err) => log(`bench/overhead: cleanup: ${err.message}`))
  }
}

function toMarkdown(r) {
  const L = [`# modelsplit overhead — ${r.meta.date}`, '']
  L.push(`Machine: ${r.meta.cpus} CPUs (${r.meta.cpuModel}), ${r.meta.os}, Node ${r.meta.node}; load average at the end ${r.meta.load.map((x) => x.toFixed(1)).join(' / ')} (1 / 5 / 15 min). The mock model, the load generator and the router share these CPUs.`)
  L.push(`Method: a mock model answering every request after ${r.options.mockMs} ms. Added latency = the router's p50 / p99 at concurrency 1 minus a direct call's; throughput = req/s at ${r.options.connections} connections (the mock alone bounds it at ${Math.round(r.options.connections * 1000 / r.options.mockMs)} req/s). ${r.options.duration} s per run, ${r.options.repeats} runs per case interleaved, medians shown.`, '')
  L.push('| case | c=1 p50 ms | c=1 p99 ms | added p50 ms | added p99 ms | req/s | req/s vs direct | router CPU µs/req | CPU/req vs split |')
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const [name, c] of Object.entries(r.cases)) {
    L.push(`| ${name} | ${f(c.p50)} | ${f(c.p99)} | ${name === 'direct' ? '' : f(c.addedP50, 3)} | ${name === 'direct' ? '' : f(c.addedP99, 3)} | ${Math.round(c.rps)} | ${name === 'direct' ? '' : f(c.rpsVsDirect)} | ${c.cpuUs === null ? 'n/a' : f(c.cpuUs, 1)} | ${name === 'direct' ? '' : f(c.cpuVsSplit)} |`)
  }
  L.push('', 'split: a 50/50 split by user id; shadow: the same with every request mirrored to a second mock; record: the split with `record: true` (inputs included) to the JSONL file sink. Errors over all runs: ' + Object.entries(r.cases).map(([n, c]) => `${n} ${c.errors}`).join(', ') + '.')
  L.push('', 'On a shared machine the absolute numbers move with what else runs; compare the ratios and the added latency of cases from the same run. Publishing absolute p99s needs a quiet machine with the load generator and the mock on other cores than the router.', '')
  return L.join('\n')
}

process.exitCode = await main()
