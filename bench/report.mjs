// Medians, ratios, targets, and the Markdown / JSON report.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const METRICS = ['rps', 'p50', 'p90', 'p99', 'errors', 'cpuUs']

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Median of each metric over a case's runs; null for one no run has (CPU of `direct`). */
export function summarise(runs) {
  return Object.fromEntries(METRICS.map((k) => {
    const xs = runs.map((r) => r[k]).filter((x) => Number.isFinite(x))
    return [k, xs.length === 0 ? null : median(xs)]
  }))
}

/** The nginx (or direct) counterpart of a case, for the ratio columns. */
function counterpart(name, prefix) {
  if (name.startsWith('ms-cluster-')) return `${prefix}-${name.slice('ms-cluster-'.length)}`
  if (/^ms-split-w\d+$/.test(name)) return `${prefix}-split`
  if (name.startsWith('ms-')) return `${prefix}-${name.slice(3)}`
  return undefined
}

/** modelsplit cases at full load whose route mirrors to the fast shadow, as node-floor-shadow does. */
const FAST_SHADOW = ['ms-shadow', 'ms-cluster-shadow']

/**
 * Adds `vsDirect` and `vsNginx` ratios to every case summary, and to modelsplit's full-load cases
 * `vsFloor` (CPU µs/request and req/s over node-floor's) and, where the route has the fast
 * shadow, `vsFloorShadow` (over node-floor-shadow's).
 */
export function addRatios(cases) {
  const floorRatios = (c, floor) => (floor && Number.isFinite(c.median.cpuUs) && Number.isFinite(floor.median.cpuUs)
    ? { cpu: c.median.cpuUs / floor.median.cpuUs, rps: c.median.rps / floor.median.rps }
    : undefined)
  for (const [name, c] of Object.entries(cases)) {
    const direct = cases[name.endsWith('-rate') ? 'direct-rate' : 'direct']
    if (name !== 'direct' && name !== 'direct-rate' && direct) {
      c.vsDirect = { rps: c.median.rps / direct.median.rps, addedP50: c.median.p50 - direct.median.p50, addedP99: c.median.p99 - direct.median.p99 }
    }
    const ng = cases[counterpart(name, 'nginx')]
    if (ng) c.vsNginx = { rps: c.median.rps / ng.median.rps, p50: c.median.p50 / ng.median.p50, p99: c.median.p99 / ng.median.p99 }
    // A fixed-rate run costs more CPU per request (less batching) than a saturated one: no ratio.
    if (name.startsWith('ms-') && !c.rate) {
      c.vsFloor = floorRatios(c, cases['node-floor'])
      if (FAST_SHADOW.includes(name)) c.vsFloorShadow = floorRatios(c, cases['node-floor-shadow'])
    }
  }
}

/** CPU µs per request of run i of `runs` over run i of `floorRuns`, for every i both have. */
export function pairedRatios(runs, floorRuns) {
  const out = []
  for (let i = 0; i < Math.min(runs?.length ?? 0, floorRuns?.length ?? 0); i++) {
    const a = runs[i].cpuUs
    const b = floorRuns[i].cpuUs
    if (Number.isFinite(a) && Number.isFinite(b) && b > 0) out.push(a / b)
  }
  return out
}

/** The issue's targets, each `{ target, measured, met }`; cases not run are left out. */
export function checkTargets(cases, memory) {
  const m = (n) => cases[n]?.median
  const out = []
  const add = (target, measured, met) => out.push({ target, measured, met })
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : String(x))
  const cpu = (name, floor, limit, what) => {
    const a = m(name)?.cpuUs
    const b = m(floor)?.cpuUs
    if (!Number.isFinite(a) || !Number.isFinite(b)) return
    const r = a / b
    // Runs are interleaved, so run i of both cases saw the machine in the same state: the median of
    // the run-by-run ratios is what is judged when there are several (the machine's speed drifts
    // between rounds, which moves both cases of a round together).
    const paired = pairedRatios(cases[name].runs, cases[floor].runs)
    if (paired.length < 2) {
      add(`${what}: CPU per request ≤ ${limit} × ${floor}'s`, `${f(r)} × (${f(a, 1)} vs ${f(b, 1)} µs)`, r <= limit)
      return
    }
    const pr = median(paired)
    add(`${what}: CPU per request ≤ ${limit} × ${floor}'s`, `${f(pr)} × run by run (${paired.map((x) => f(x)).join(', ')}); medians ${f(a, 1)} vs ${f(b, 1)} µs, ${f(r)} ×`, pr <= limit)
  }
  cpu('ms-split', 'node-floor', 1.15, 'split only')
  cpu('ms-shadow', 'node-floor', 1.35, 'split + one shadow')
  // The same limit against the shadow's own floor case, the bare forwarder that also mirrors
  // (issue 22: "each measured by the bench against its own floor case").
  cpu('ms-shadow', 'node-floor-shadow', 1.35, 'split + one shadow, against its own floor')
  // Issue 22: the side work against its own floor, and the overhead measurement against none.
  cpu('ms-split-overhead', 'ms-split', 1.02, 'overhead: header (router time measured, server-timing sent)')
  cpu('ms-dead-shadow', 'ms-split', 1.05, 'dead (refused) shadow')
  cpu('ms-record', 'ms-split', 1.2, 'recording with inputs (file sink)')
  cpu('ms-record-kafka', 'ms-split', 1.5, 'recording with inputs (Kafka sink)')
  for (const prefix of ['ms', 'ms-cluster']) {
    const tag = prefix === 'ms' ? '' : ' (cluster)'
    if (m(`${prefix}-shadow`) && m('nginx-shadow')) {
      const r = m(`${prefix}-shadow`).rps / m('nginx-shadow').rps
      add(`split + shadow${tag}: req/s ≥ 1.3 × nginx (split_clients + mirror)`, `${f(r)} ×`, r >= 1.3)
    }
  }
  if (m('ms-slow-shadow') && m('nginx-slow-shadow')) {
    const r = m('ms-slow-shadow').rps / m('nginx-slow-shadow').rps
    add('200 ms shadow: req/s ≥ 20 × nginx', `${f(r, 1)} ×`, r >= 20)
  }
  if (m('ms-dead-shadow') && m('ms-split')) {
    const r = m('ms-dead-shadow').rps / m('ms-split').rps
    add('dead shadow: req/s ≥ 0.9 × split only', `${f(r)} ×`, r >= 0.9)
  }
  const rec = cases['ms-record']?.records
  if (rec) add('recorded route at full rate: 0 records dropped', `${n0(rec.dropped)} dropped, ${n0(rec.written)} written`, rec.dropped === 0 && rec.written > 0)
  if (memory) add(`memory: RSS after ${memory.requests} ≤ 1.5 × RSS after ${memory.baseAt}`, `${f(memory.ratio)} ×`, memory.pass)
  if (m('ms-rate') && m('direct-rate')) {
    const d50 = m('ms-rate').p50 - m('direct-rate').p50
    const d99 = m('ms-rate').p99 - m('direct-rate').p99
    add('fixed rate: added p50 ≤ 0.3 ms over direct', `${f(d50, 3)} ms`, d50 <= 0.3)
    add('fixed rate: added p99 ≤ 1 ms over direct', `${f(d99, 3)} ms`, d99 <= 1)
  }
  return out
}

const mb = (b) => `${(b / 1048576).toFixed(1)} MB`
const n0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const ms = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const ratio = (x) => (x === undefined || !Number.isFinite(x) ? '' : `${x.toFixed(2)}`)
const us = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')

/** Renders the whole result as Markdown. */
export function toMarkdown(r) {
  const L = []
  L.push(`# modelsplit benchmark — ${r.meta.date}`, '')
  L.push(`Machine: ${r.meta.cpus} CPUs (${r.meta.cpuModel}), ${mb(r.meta.memory)} RAM, ${r.meta.os}; Node ${r.meta.node}; nginx ${r.meta.nginx ?? '(not run)'}; autocannon ${r.meta.autocannon}; modelsplit ${r.meta.commit}.`)
  L.push(`Load: ${r.options.connections} connections, ${r.options.duration} s per run, ${r.options.repeats} runs per case interleaved, medians shown; ${r.options.sameRate ? `every case at a fixed ${r.options.rate} req/s (--same-rate)` : `fixed-rate cases at ${r.options.rate} req/s`}; POST JSON bodies with \`x-user-id\` cycling over ${r.meta.userIds} ids${r.options.pin ? '; each proxy under test pinned to a CPU of its own (--pin), the load generator, model servers and Kafka broker on the other' : ''}.`, '')
  if (Object.keys(r.cases).length > 0) {
    L.push('| case | req/s | CPU µs/req | p50 ms | p90 ms | p99 ms | errors | req/s vs direct | added p50 / p99 ms | req/s vs nginx | p99 vs nginx | CPU/req vs node-floor | CPU/req vs node-floor-shadow |')
    L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const [name, c] of Object.entries(r.cases)) {
      const md = c.median
      const added = c.vsDirect ? `${ms(c.vsDirect.addedP50)} / ${ms(c.vsDirect.addedP99)}` : ''
      L.push(`| ${name} | ${n0(md.rps)} | ${us(md.cpuUs)} | ${ms(md.p50)} | ${ms(md.p90)} | ${ms(md.p99)} | ${n0(md.errors)} | ${ratio(c.vsDirect?.rps)} | ${added} | ${ratio(c.vsNginx?.rps)} | ${ratio(c.vsNginx?.p99)} | ${ratio(c.vsFloor?.cpu)} | ${ratio(c.vsFloorShadow?.cpu)} |`)
    }
    L.push('')
    L.push(`CPU µs/req: the proxy's own CPU time (user + system, all its processes) per answered request; see the notes.${Object.keys(r.cases).some((n) => /^ms-(split-w\d|cluster-)/.test(n)) ? ` Cluster cases started with ${r.meta.workersVia}.` : ''}`, '')
  }
  for (const [name, c] of Object.entries(r.cases)) {
    if (!c.records) continue
    const x = c.records
    const split = r.cases['ms-split']?.median
    const vs = split ? `; vs ms-split: req/s ${ratio(c.median.rps / split.rps)} ×, CPU µs/req ${us(c.median.cpuUs)} vs ${us(split.cpuUs)} (${ratio(c.median.cpuUs / split.cpuUs)} ×)` : ''
    L.push(`Records (\`${name}\`: \`${c.path.replace(/\/predict$/, '')}\` is the split with \`record: true\` and inputs, to ${c.recordsTo ?? 'the record sink'}): **${n0(x.written)} written, ${n0(x.dropped)} dropped** (\`modelsplit_records_total\`, from after the warm-up until the writer settled after the last run) for ${n0(x.answered)} requests answered (requests still in flight when a run stops are recorded too, so written may exceed answered by up to the connections per run)${vs}.`, '')
  }
  for (const [name, c] of Object.entries(r.cases)) {
    if (c.traced === undefined) continue
    const base = r.cases[name.startsWith('ms-shadow') ? 'ms-shadow' : 'ms-split']
    const vs = base ? `; vs ${name.startsWith('ms-shadow') ? 'ms-shadow' : 'ms-split'} (tracing off): CPU µs/req ${us(c.median.cpuUs)} vs ${us(base.median.cpuUs)} (+${us(c.median.cpuUs - base.median.cpuUs)}, ${ratio(c.median.cpuUs / base.median.cpuUs)} ×), req/s ${ratio(c.median.rps / base.median.rps)} ×` : ''
    const last = c.runs[c.runs.length - 1]?.otlp
    L.push(`Tracing (\`${name}\`: \`tracing.sample_ratio: ${c.traced}\`, OTLP/HTTP JSON to a local sink that discards)${vs}${last ? `; the sink had received ${n0(last.batches)} export batches, ${mb(last.bytes)}, by the end of the last run (the router's own, shared by the cases on it)` : ''}.`, '')
  }
  if (r.floorSplit) {
    const x = r.floorSplit
    L.push(`node-floor vs modelsplit split: the same model for ${x.same} of ${x.ids} user ids${x.differ.length > 0 ? ` (**differ**: ${x.differ.slice(0, 5).join('; ')})` : ''}.`, '')
  }
  if (r.targets.length > 0) {
    L.push('## Targets', '', '| target | measured | met |', '| --- | ---: | :---: |')
    for (const t of r.targets) L.push(`| ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`)
    L.push('', 'A CPU target with several runs per case is judged on the median of its run-by-run ratios (run i of the case over run i of its floor, taken minutes apart at most); the ratio of the two medians is shown beside it.', '')
    // The shadow target is against the floor's split, but the floor's own mirror costs it too:
    // both ratios, so a reader sees how much of a shadow's cost any Node forwarder pays.
    const c = (n) => r.cases[n]?.median?.cpuUs
    const fs = c('node-floor-shadow') / c('node-floor')
    const ms = c('ms-shadow') / c('node-floor-shadow')
    if (Number.isFinite(fs) && Number.isFinite(ms)) {
      L.push(`One shadow, against both floors: the bare Node forwarder's own mirror costs it ${fs.toFixed(2)} × its split (node-floor-shadow vs node-floor), and modelsplit with one shadow costs ${ms.toFixed(2)} × node-floor-shadow (it also captures both answers, compares them and counts the comparison).`, '')
    }
  }
  if (r.memory) {
    const x = r.memory
    L.push('## Memory', '', `${n0(x.requests)} requests through a fresh router on a route with a 200 ms shadow and a dead shadow (${n0(x.load.rps)} req/s, ${x.load.errors} errors, ${x.load.seconds.toFixed(0)} s).`, '')
    L.push('| point | requests | RSS | heap used |', '| --- | ---: | ---: | ---: |')
    L.push(`| start (after ${n0(x.baseAt)}) | ${n0(x.base.requests)} | ${mb(x.base.rss)} | ${mb(x.base.heap)} |`)
    L.push(`| peak | ${n0(x.peak.requests)} | ${mb(x.peak.rss)} | ${mb(x.peak.heap)} |`)
    L.push(`| end | ${n0(x.end.requests)} | ${mb(x.end.rss)} | ${mb(x.end.heap)} |`)
    L.push('', `End / start RSS ${x.ratio.toFixed(2)}; RSS slope over the second half ${mb(x.slopePer100k)} per 100k requests; verdict: ${x.pass ? 'bounded' : '**grows**'}.`, '')
  }
  if (r.reload) {
    const x = r.reload
    L.push('## Reload under load', '', `The config was rewritten ${x.writes} times in ${x.seconds} s (canary 10 → 50 → 10, one step a second); the router applied ${x.reloads} reloads (${x.failures} failed) while serving ${n0(x.load.rps)} req/s: ${x.load.ok} answered, **${x.load.errors} failed** (${x.load.socketErrors} socket errors, ${x.load.timeouts} timeouts, ${x.load.non2xx} non-2xx). Observed canary share ${(100 * x.canaryShare).toFixed(1)} %.`, '')
  }
  for (const [kind, p] of Object.entries(r.profiles ?? {})) {
    const who = kind.startsWith('floor-') ? `the bare Node forwarder under the \`node-${kind}\` load` : `the router under the \`ms-${kind}\` load`
    const perRequest = Number.isFinite(p.busyUsPerRequest) ? `, ${p.busyUsPerRequest.toFixed(1)} µs per request answered (its start-up included)` : ''
    L.push(`## CPU profile: ${kind}`, '', `\`node --cpu-prof\` of ${who} for ${p.seconds} s (${n0(p.rps)} req/s while profiled); busy ${(p.busyMs / 1000).toFixed(1)} s${perRequest}, idle ${(p.idleMs / 1000).toFixed(1)} s. File: \`${p.file}\`.`, '')
    L.push('| self time by origin | ms | % busy |', '| --- | ---: | ---: |')
    for (const x of p.packages.slice(0, 10)) L.push(`| ${x.name} | ${n0(x.selfMs)} | ${x.pct.toFixed(1)} |`)
    L.push('', '| function (self time) | where | ms | % busy |', '| --- | --- | ---: | ---: |')
    for (const x of p.functions.slice(0, 20)) L.push(`| \`${x.name}\` | ${x.url} | ${n0(x.selfMs)} | ${x.pct.toFixed(1)} |`)
    L.push('')
  }
  if (r.notes?.length) L.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '')
  return L.join('\n')
}

/** Writes `bench.md` and `bench.json` into `dir` (the last run wins); returns the Markdown. */
export async function writeReport(dir, result) {
  await mkdir(dir, { recursive: true })
  const md = toMarkdown(result)
  await writeFile(join(dir, 'bench.md'), md)
  await writeFile(join(dir, 'bench.json'), `${JSON.stringify(result, null, 2)}\n`)
  return md
}
