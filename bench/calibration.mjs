#!/usr/bin/env node
// `npm run bench -- calibration` (or `node bench/calibration.mjs`): does a verdict on identical
// models come out wrong no more often than it says? Simulated experiments with heterogeneous users
// go through the analysis core (dist/experiment: RouteAccumulator + analyseExperiment) exactly as
// the router feeds it, at unit user and at unit request side by side. See README.md ("Calibration").
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUILT = join(ROOT, 'dist')

export const CALIBRATION_HELP = `Usage: npm run bench -- calibration [options]
       node bench/calibration.mjs [options]

Calibration of the analysis core (dist/experiment; run \`npm run build\` first): simulated A/A/A
experiments (3 identical arms, 3 metrics) and A/B experiments with a planted lift, fed in time
order through RouteAccumulator at unit user and at unit request, and analysed by analyseExperiment.
Reports false-positive rates (fixed horizon and sequential verdict), the family-wise rate under
Holm, power, and CUPED's variance reduction. Not a timed test.

  --experiments N   A/A/A experiments (default 1000), each analysed at unit user
  --request-experiments N
                    how many of them are also analysed at unit request (default 200: enough to
                    show it is far off; per experiment the slowest part of the run)
  --users N         users per A/A/A experiment, over the 3 arms (default 900)
  --power N         A/B experiments with a planted lift (default 500)
  --power-users N   users per A/B experiment, over the 2 arms (default 3000)
  --buckets N       analysis.buckets of unit user (default 64)
  --lift X          lift planted on the candidate's per-user click propensity (default 0.03)
  --seed N          seed of the simulation (default 17)
  --jobs N          worker threads (default: min(2, CPU count))
  --out DIR         where calibration.md and calibration.json go (default bench/results)
  --smoke           a tiny run (40 A/A/A of 300 users, 40 A/B of 600), written nowhere unless --out
  --help            this text
`

// --- the simulated population --------------------------------------------------------------------

/** Outcomes per user: P(m ≥ k) = k^-TAIL, capped at MAX_OUTCOMES (a discrete Pareto). */
const TAIL = 1.1
const MAX_OUTCOMES = 50
/** Correlation of a user's revenue with its pre-period revenue (CUPED's covariate). */
const RHO = 0.6

/** sfc32 (Chris Doty-Humphrey's Small Fast Counting generator): a seeded uniform on [0, 1). */
function sfc32(a, b, c, d) {
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return (t >>> 0) / 4294967296
  }
}

/** The generator of one experiment: from the run's seed, the scenario and the experiment's index alone. */
function rngFor(seed, scenario, index) {
  const r = sfc32(0x9e3779b9, seed >>> 0, scenario * 0x85ebca6b, index * 0xc2b2ae35 + 1)
  for (let i = 0; i < 20; i++) r()
  return r
}

function makeDraws(rng) {
  const uniform = () => {
    let u = rng()
    while (u === 0) u = rng()
    return u
  }
  let spare = null
  const normal = () => {
    if (spare !== null) {
      const s = spare
      spare = null
      return s
    }
    const r = Math.sqrt(-2 * Math.log(uniform()))
    const th = 2 * Math.PI * rng()
    spare = r * Math.sin(th)
    return r * Math.cos(th)
  }
  return {
    uniform,
    normal,
    exponential: () => -Math.log(uniform()),
    // Beta(1, 3) by inversion: F(p) = 1 − (1 − p)^3.
    beta13: () => 1 - Math.cbrt(uniform()),
    outcomes: () => Math.min(MAX_OUTCOMES, Math.floor(uniform() ** (-1 / TAIL))),
  }
}

/**
 * One experiment's users and their requests, in time order. Each user: an arm (equal shares), a
 * click propensity p ~ Beta(1, 3) (+ `lift` on the lifted arm), m outcomes (1–50, heavy-tailed),
 * an order-value level λ ~ lognormal(0, 0.75), an arrival time a ~ U(0, 1) and requests at a and
 * at m − 1 times uniform on (a, 1). Each request has a click ~ Bernoulli(p) and, when it was
 * clicked, an order value 10·λ·Exp(1) (fed only then: its mean is per order). Each user also has one revenue and one pre-period revenue, 10·(√ρ·S + √(1−ρ)·E)
 * with S, E, E' iid lognormal(0, 1): skewed, with correlation exactly ρ; the pre-period value is
 * fed with the user's first request and the revenue with its last.
 */
function simulate(rng, users, arms, liftArm, lift) {
  const d = makeDraws(rng)
  const arm = new Int32Array(users)
  const pre = new Float64Array(users)
  const revenue = new Float64Array(users)
  const times = []
  const user = []
  const click = []
  const value = []
  const first = []
  const last = []
  for (let u = 0; u < users; u++) {
    const k = Math.floor(d.uniform() * arms) % arms
    arm[u] = k
    const p = Math.min(1, d.beta13() + (k === liftArm ? lift : 0))
    const m = d.outcomes()
    const level = 10 * Math.exp(0.75 * d.normal())
    const s = Math.exp(d.normal())
    revenue[u] = 10 * (Math.sqrt(RHO) * s + Math.sqrt(1 - RHO) * Math.exp(d.normal()))
    pre[u] = 10 * (Math.sqrt(RHO) * s + Math.sqrt(1 - RHO) * Math.exp(d.normal()))
    const a = d.uniform()
    let lastAt = a
    let lastIdx = times.length
    for (let j = 0; j < m; j++) {
      const t = j === 0 ? a : a + (1 - a) * d.uniform()
      if (t >= lastAt) { lastAt = t; lastIdx = times.length }
      times.push(t)
      user.push(u)
      click.push(d.uniform() < p ? 1 : 0)
      value.push(level * d.exponential())
      first.push(j === 0)
      last.push(false)
    }
    last[lastIdx] = true
  }
  const order = Array.from(times.keys()).sort((i, j) => times[i] - times[j] || i - j)
  return { arm, pre, revenue, order, user, click, value, first, last }
}

// --- through the analysis core --------------------------------------------------------------------

const metric = (name, type, mde, extra = {}) => ({ name, type, mde, higher_is_better: true, role: 'outcome', numerator: null, denominator: null, cuped: null, guardrail: null, ...extra })
/** The A/A/A route's metrics: three outcomes (the family) and CUPED's covariate. */
const AA_METRICS = [
  metric('clicked', 'binary', 0.02),
  metric('order_value', 'continuous', 1.5),
  metric('revenue', 'continuous', 1.5, { cuped: 'revenue_pre' }),
  metric('revenue_pre', 'continuous', null, { role: 'covariate' }),
]
/** The A/B route's: clicks alone (a family of one). */
const POWER_METRICS = [metric('clicked', 'binary', 0.02)]
const OUTCOMES = ['clicked', 'order_value', 'revenue']

/**
 * Feeds one simulated experiment, request by request in time order, to one accumulator per unit
 * (as the router does: an exposure per request, then its outcomes; a checkpoint every 100), and
 * analyses each at the end with correction none (the single tests) and holm (the family).
 */
function runExperiment(core, sim, { models, metrics, units, buckets, userIds }) {
  const spec = (unit) => ({ identity: 'calibration', models, control: models[0], analysis: { unit, buckets, correction: 'none', alpha: 0.05 }, metrics })
  const names = new Set(metrics.map((m) => m.name))
  const out = {}
  for (const unit of units) {
    const acc = new core.RouteAccumulator('calibration', spec(unit))
    acc.setShares(models.map(() => 1 / models.length), 0)
    const cells = models.map((model) => Object.fromEntries([...names].map((n) => [n, acc.cell(model, n)])))
    const full = names.has('revenue')
    const hashes = new Map()
    for (const i of sim.order) {
      const u = sim.user[i]
      const k = sim.arm[u]
      let h = hashes.get(u)
      if (h === undefined) hashes.set(u, h = core.unitHash(userIds(u)))
      const b = h % buckets
      const c = cells[k]
      acc.expose(k, h)
      if (full && sim.first[i]) acc.add(c.revenue_pre, sim.pre[u], b)
      acc.add(c.clicked, sim.click[i], b)
      if (full && sim.click[i] === 1) acc.add(c.order_value, sim.value[i], b)
      if (full && sim.last[i]) acc.add(c.revenue, sim.revenue[u], b)
    }
    const input = acc.input('read')
    out[unit] = {
      none: core.analyseExperiment(input),
      holm: core.analyseExperiment({ ...input, analysis: { ...input.analysis, correction: 'holm' } }),
    }
  }
  return out
}

const decided = (v) => v === 'candidate better' || v === 'candidate worse'

/** What one experiment contributes to the tallies: small, so workers send it cheaply. */
function summariseAA(res, models) {
  const row = {}
  for (const unit of Object.keys(res)) {
    const { none, holm } = res[unit]
    const r = { srm: none.srm.mismatch, tests: {}, fwFixed: false, fwSeq: false, fwSeqP: false }
    for (const metric of OUTCOMES) {
      for (const cand of models.slice(1)) {
        const c = none.metrics[metric].comparisons[cand]
        const h = holm.metrics[metric].comparisons[cand]
        r.tests[`${metric}/${cand}`] = {
          fixed: c.p_value !== null && c.p_value < 0.05,
          seq: decided(c.verdict),
          seqP: c.p_value_sequential_adjusted !== null && c.p_value_sequential_adjusted < 0.05,
          verdict: c.verdict,
          diff: c.abs_lift,
          se: c.se,
          ...(c.cuped ? { rawDiff: c.cuped.unadjusted_abs_lift, rawSe: c.cuped.unadjusted_se, reduction: c.cuped.variance_reduction } : {}),
        }
        if (h.p_value_adjusted !== null && h.p_value_adjusted < 0.05) r.fwFixed = true
        if (decided(h.verdict)) r.fwSeq = true
        if (h.p_value_sequential_adjusted !== null && h.p_value_sequential_adjusted < 0.05) r.fwSeqP = true
      }
    }
    row[unit] = r
  }
  return row
}

function summarisePower(res, models) {
  const row = {}
  const cand = models[1]
  for (const unit of Object.keys(res)) {
    const c = res[unit].none.metrics.clicked.comparisons[cand]
    row[unit] = {
      fixed: c.p_value !== null && c.p_value < 0.05 && c.abs_lift > 0,
      seq: c.verdict === 'candidate better',
      seqP: c.p_value_sequential_adjusted !== null && c.p_value_sequential_adjusted < 0.05 && c.abs_lift > 0,
      srm: res[unit].none.srm.mismatch,
    }
  }
  return row
}

async function work({ scenario, indices, opts, dist }) {
  const core = await import(pathToFileURL(join(dist, 'experiment/index.js')).href)
  const rows = []
  for (const index of indices) {
    const aa = scenario === 'aa'
    const models = aa ? ['a', 'b', 'c'] : ['a', 'b']
    const sim = simulate(rngFor(opts.seed, aa ? 1 : 2, index), aa ? opts.users : opts.powerUsers, models.length, aa ? -1 : 1, opts.lift)
    const res = runExperiment(core, sim, {
      models,
      metrics: aa ? AA_METRICS : POWER_METRICS,
      units: !aa || index < opts.requestExperiments ? ['user', 'request'] : ['user'],
      buckets: opts.buckets,
      userIds: (u) => `${scenario}-${index}-user-${u}`,
    })
    rows.push({ index, ...(aa ? summariseAA(res, models) : summarisePower(res, models)) })
  }
  return rows
}

// --- tallies ---------------------------------------------------------------------------------------

/** Wilson score interval (95 %) of k successes in n. */
function wilson(k, n) {
  if (n === 0) return [Number.NaN, Number.NaN]
  const z = 1.959963984540054
  const p = k / n
  const den = 1 + (z * z) / n
  const mid = (p + (z * z) / (2 * n)) / den
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / den
  return [Math.max(0, mid - half), Math.min(1, mid + half)]
}

/** The largest rate that is still "≤ 5 % within binomial noise" at n: 0.05 + 1.96·√(0.05·0.95/n). */
const limitAt = (n, alpha = 0.05) => alpha + 1.959963984540054 * Math.sqrt((alpha * (1 - alpha)) / n)

function rate(k, n) {
  const [lo, hi] = wilson(k, n)
  return { k, n, rate: k / n, ci: [lo, hi] }
}

const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length
const variance = (xs) => {
  const m = mean(xs)
  return xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1)
}

function tally(aa, power) {
  const out = { perTest: {}, family: {}, power: {}, cuped: {}, seCalibration: {} }
  for (const unit of ['user', 'request']) {
    const rows = aa.map((r) => r[unit]).filter((r) => r !== undefined)
    const keys = Object.keys(rows[0].tests)
    out.perTest[unit] = Object.fromEntries(keys.map((key) => {
      const ts = rows.map((r) => r.tests[key])
      return [key, {
        fixed: rate(ts.filter((t) => t.fixed).length, ts.length),
        seq: rate(ts.filter((t) => t.seq).length, ts.length),
        seqP: rate(ts.filter((t) => t.seqP).length, ts.length),
        collecting: ts.filter((t) => t.verdict === 'collecting data').length,
      }]
    }))
    out.family[unit] = {
      tests: keys.length,
      fixed: rate(rows.filter((r) => r.fwFixed).length, rows.length),
      seq: rate(rows.filter((r) => r.fwSeq).length, rows.length),
      seqP: rate(rows.filter((r) => r.fwSeqP).length, rows.length),
      srm: rate(rows.filter((r) => r.srm).length, rows.length),
    }
    // Is the reported standard error the spread of the estimate over experiments?
    out.seCalibration[unit] = Object.fromEntries(keys.map((key) => {
      const ts = rows.map((r) => r.tests[key]).filter((t) => t.diff !== null && t.se !== null)
      return [key, { sdOfDiff: Math.sqrt(variance(ts.map((t) => t.diff))), rmsSe: Math.sqrt(mean(ts.map((t) => t.se * t.se))) }]
    }))
    if (power.length > 0) {
      const ps = power.map((r) => r[unit])
      out.power[unit] = {
        fixed: rate(ps.filter((p) => p.fixed).length, ps.length),
        seq: rate(ps.filter((p) => p.seq).length, ps.length),
        seqP: rate(ps.filter((p) => p.seqP).length, ps.length),
        srm: rate(ps.filter((p) => p.srm).length, ps.length),
      }
    }
  }
  // CUPED on revenue at unit user: the reduction each experiment reports, and the one observed
  // over experiments (1 − Var(adjusted Δ) / Var(unadjusted Δ)).
  for (const cand of ['b', 'c']) {
    const ts = aa.map((r) => r.user.tests[`revenue/${cand}`]).filter((t) => t.reduction !== undefined && t.reduction !== null)
    out.cuped[cand] = {
      experiments: ts.length,
      meanReported: mean(ts.map((t) => t.reduction)),
      observed: 1 - variance(ts.map((t) => t.diff)) / variance(ts.map((t) => t.rawDiff)),
      rmsSeAdjusted: Math.sqrt(mean(ts.map((t) => t.se * t.se))),
      rmsSeUnadjusted: Math.sqrt(mean(ts.map((t) => t.rawSe * t.rawSe))),
    }
  }
  return out
}

// --- the report ------------------------------------------------------------------------------------

const pct = (x) => `${(100 * x).toFixed(1)} %`
const pct2 = (x) => `${(100 * x).toFixed(2)} %`
const rateText = (r) => `${pct(r.rate)} (${r.k}/${r.n}; ${(100 * r.ci[0]).toFixed(1)}–${(100 * r.ci[1]).toFixed(1)})`
const mark = (ok) => (ok ? 'met' : '**missed**')

function targetsOf(t, n) {
  const lim = limitAt(n)
  const targets = []
  for (const metric of OUTCOMES) {
    const r = t.perTest.user[`${metric}/b`]
    targets.push({ target: `A/A ${metric} (b vs a), unit user, fixed horizon: FPR ≤ ${pct2(lim)}`, value: r.fixed.rate, pass: r.fixed.rate <= lim })
    targets.push({ target: `A/A ${metric} (b vs a), unit user, sequential verdict: FPR ≤ ${pct2(lim)}`, value: r.seq.rate, pass: r.seq.rate <= lim })
  }
  const f = t.family.user
  targets.push({ target: `A/A/A family (${f.tests} tests), unit user, Holm, fixed horizon: FWER ≤ ${pct2(lim)}`, value: f.fixed.rate, pass: f.fixed.rate <= lim })
  targets.push({ target: `A/A/A family (${f.tests} tests), unit user, Holm, sequential verdicts: FWER ≤ ${pct2(lim)}`, value: f.seq.rate, pass: f.seq.rate <= lim })
  return targets
}

function markdown(result) {
  const { meta, options, tallies: t, targets } = result
  const L = []
  L.push('# Calibration of the analysis core', '')
  L.push(`${meta.date} · commit ${meta.commit} · Node ${meta.node} · ${meta.cpus} CPUs (${meta.cpuModel}) · seed ${options.seed}`)
  L.push(`CPU ${meta.cpuSeconds.toFixed(1)} s (all threads), wall ${meta.wallSeconds.toFixed(1)} s, ${options.jobs} worker thread(s); load average at start ${meta.loadAverage}.`, '')
  L.push(`**A/A/A**: ${options.experiments} experiments of ${options.users} users over 3 identical arms (control a, candidates b and c), metrics \`clicked\` (binary, per request), \`order_value\` (continuous, per order) and \`revenue\` (continuous, per user, CUPED on \`revenue_pre\`), analysed at unit user with ${options.buckets} buckets; the first ${options.requestExperiments} of them also at unit request, fed the same requests. **A/B**: ${options.power} experiments of ${options.powerUsers} users over 2 arms, metric \`clicked\` alone, +${options.lift} on the candidate's users' click propensity. Rates with their Wilson 95 % interval (k/n; low–high %); "≤ 5 % within binomial noise" at n = ${options.experiments} is ≤ ${pct2(limitAt(options.experiments))}.`, '')
  L.push('## Targets', '', '| target | value | |', '| --- | --- | --- |')
  for (const x of targets) L.push(`| ${x.target} | ${pct(x.value)} | ${mark(x.pass)} |`)
  L.push('', '## False-positive rate of single tests (A/A/A, correction none)', '')
  L.push('Fixed horizon: the final `p_value` < 0.05. Sequential: the final verdict is "candidate better" or "candidate worse" (always-valid p, running minimum over every checkpoint). "seq p < α" counts the final `p_value_sequential_adjusted` < 0.05 whatever the verdict (the verdict also needs 100 outcomes per arm, 16 buckets per arm and no sample-ratio alarm).', '')
  L.push('| metric / candidate | unit | fixed horizon | sequential verdict | seq p < α | still collecting |', '| --- | --- | --- | --- | --- | --- |')
  for (const key of Object.keys(t.perTest.user)) {
    for (const unit of ['user', 'request']) {
      const r = t.perTest[unit][key]
      L.push(`| ${key} | ${unit} | ${rateText(r.fixed)} | ${rateText(r.seq)} | ${rateText(r.seqP)} | ${r.collecting} |`)
    }
  }
  L.push('', '## Family-wise rate (A/A/A, 3 metrics × 2 candidates, correction holm)', '')
  L.push('| unit | any fixed-horizon p_adj < α | any sequential verdict | any seq p_adj < α | sample-ratio alarms |', '| --- | --- | --- | --- | --- |')
  for (const unit of ['user', 'request']) {
    const f = t.family[unit]
    L.push(`| ${unit} | ${rateText(f.fixed)} | ${rateText(f.seq)} | ${rateText(f.seqP)} | ${rateText(f.srm)} |`)
  }
  if (options.power > 0) {
    L.push('', `## Power on a planted lift (A/B, +${options.lift} on the click propensity of b's users)`, '')
    L.push('Found = `clicked` b vs a significant with a positive lift. A test that is not calibrated (unit request) buys its power with false positives: compare with the rates above.', '')
    L.push('| unit | fixed horizon | sequential verdict | seq p < α | sample-ratio alarms |', '| --- | --- | --- | --- | --- |')
    for (const unit of ['user', 'request']) {
      const p = t.power[unit]
      L.push(`| ${unit} | ${rateText(p.fixed)} | ${rateText(p.seq)} | ${rateText(p.seqP)} | ${rateText(p.srm)} |`)
    }
  }
  L.push('', `## CUPED (revenue on revenue_pre, per-user correlation ${RHO}; theory: ${pct(RHO * RHO)})`, '')
  L.push('| candidate | mean reported variance_reduction | observed 1 − Var(Δ_cuped)/Var(Δ) over experiments | rms se adjusted | rms se unadjusted |', '| --- | --- | --- | --- | --- |')
  for (const [cand, c] of Object.entries(t.cuped)) {
    L.push(`| ${cand} | ${pct(c.meanReported)} | ${pct(c.observed)} | ${c.rmsSeAdjusted.toFixed(3)} | ${c.rmsSeUnadjusted.toFixed(3)} |`)
  }
  L.push('', '## Standard errors against the spread over experiments (A/A/A)', '')
  L.push('| metric / candidate | unit | sd of Δ over experiments | rms reported se | ratio |', '| --- | --- | --- | --- | --- |')
  for (const key of Object.keys(t.seCalibration.user)) {
    for (const unit of ['user', 'request']) {
      const s = t.seCalibration[unit][key]
      L.push(`| ${key} | ${unit} | ${s.sdOfDiff.toPrecision(4)} | ${s.rmsSe.toPrecision(4)} | ${(s.sdOfDiff / s.rmsSe).toFixed(2)} |`)
    }
  }
  L.push('', '## The simulation', '')
  L.push(`Each user: an arm (equal shares, by the seeded generator, as a split would), a click propensity Beta(1, 3) (+lift on the lifted arm, capped at 1), outcomes m with P(m ≥ k) = k^-${TAIL} capped at ${MAX_OUTCOMES} (mean ≈ ${meta.meanOutcomes.toFixed(2)}, E[m²]/E[m] ≈ ${meta.designRatio.toFixed(1)}), an arrival time U(0, 1) and its other requests uniform between arrival and the end. Each request: an exposure (\`expose\`), then \`clicked\` ~ Bernoulli(p) and, when clicked, \`order_value\` = 10·λ·Exp(1) with the user's λ ~ lognormal(0, 0.75). Each user: \`revenue_pre\` with its first request and \`revenue\` with its last, 10·(√ρ·S + √(1−ρ)·E) with S, E, E′ iid lognormal(0, 1), so corr = ρ = ${RHO} exactly. All requests of an experiment are fed in time order, so the sequential p's running minimum is folded at the router's looks (the 100th outcome, then every 5 % more: ~${meta.meanCheckpoints} looks per experiment). Seeded sfc32 per experiment: the same seed gives the same table whatever --jobs.`)
  return `${L.join('\n')}\n`
}

// --- main -------------------------------------------------------------------------------------------

function parse(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      experiments: { type: 'string' },
      'request-experiments': { type: 'string' },
      users: { type: 'string' },
      power: { type: 'string' },
      'power-users': { type: 'string' },
      buckets: { type: 'string' },
      lift: { type: 'string' },
      seed: { type: 'string' },
      jobs: { type: 'string' },
      out: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  const num = (name, fallback, { integer = true, zero = false } = {}) => {
    const raw = values[name]
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n < 0 || (!zero && n === 0) || (integer && !Number.isInteger(n))) throw new Error(`--${name} must be a ${integer ? 'whole ' : ''}positive number, got ${raw}`)
    return n
  }
  const smoke = values.smoke
  const experiments = num('experiments', smoke ? 40 : 1000)
  return {
    help: values.help,
    smoke,
    experiments,
    requestExperiments: Math.min(experiments, num('request-experiments', smoke ? 40 : 200, { zero: true })),
    users: num('users', smoke ? 300 : 900),
    power: num('power', smoke ? 40 : 500, { zero: true }),
    powerUsers: num('power-users', smoke ? 600 : 3000),
    buckets: num('buckets', 64),
    lift: num('lift', 0.03, { integer: false }),
    seed: num('seed', 17, { zero: true }),
    jobs: num('jobs', Math.min(2, os.availableParallelism())),
    out: values.out ?? (smoke ? null : join(ROOT, 'bench/results')),
  }
}

function inWorkers(scenario, count, opts, dist) {
  const jobs = Math.max(1, Math.min(opts.jobs, count))
  const shards = Array.from({ length: jobs }, (_, j) => Array.from({ length: count }, (_, i) => i).filter((i) => i % jobs === j))
  return Promise.all(shards.map((indices) => new Promise((done, fail) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { scenario, indices, opts, dist } })
    w.once('message', done)
    w.once('error', fail)
    w.once('exit', (code) => { if (code !== 0) fail(new Error(`calibration: worker exited with ${code}`)) })
  }))).then((parts) => parts.flat().sort((a, b) => a.index - b.index))
}

/** Runs the calibration with these command-line arguments; resolves to the exit status. */
export async function runCalibration(argv) {
  const log = (line) => process.stderr.write(`${line}\n`)
  let opts
  try {
    opts = parse(argv)
  } catch (err) {
    log(`calibration: ${err.message}\n\n${CALIBRATION_HELP}`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(CALIBRATION_HELP)
    return 0
  }
  if (!existsSync(join(BUILT, 'experiment/index.js'))) {
    log(`calibration: ${join(BUILT, 'experiment/index.js')} is missing; run \`npm run build\` first`)
    return 2
  }
  // A copy of dist/ taken now (inside bench/, so node_modules still resolve), as run.mjs does: a
  // rebuild by someone else mid-run must not change the code under test between phases.
  const dist = await mkdtemp(join(ROOT, 'bench/.dist-'))
  try {
    await cp(BUILT, dist, { recursive: true })
    return await calibrate(opts, dist, log)
  } finally {
    await rm(dist, { recursive: true, force: true })
  }
}

async function calibrate(opts, dist, log) {
  const git = (...args) => { try { return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim() } catch { return '' } }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const loadAverage = os.loadavg().map((x) => x.toFixed(1)).join(' ')
  log(`calibration: ${opts.experiments} A/A/A experiments of ${opts.users} users (${opts.requestExperiments} also at unit request), ${opts.power} A/B of ${opts.powerUsers}; ${opts.jobs} worker thread(s), seed ${opts.seed}`)
  const aa = await inWorkers('aa', opts.experiments, opts, dist)
  log(`calibration: A/A/A done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const power = opts.power > 0 ? await inWorkers('power', opts.power, opts, dist) : []
  const cpu = process.cpuUsage(cpu0)
  // The population's outcome distribution, exactly (not sampled).
  let em = 0
  let em2 = 0
  for (let k = 1; k <= MAX_OUTCOMES; k++) {
    const pk = k ** -TAIL - (k === MAX_OUTCOMES ? 0 : (k + 1) ** -TAIL)
    em += k * pk
    em2 += k * k * pk
  }
  const meta = {
    date: new Date().toISOString(),
    commit: `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', 'src/experiment', 'src/stats') ? ' + uncommitted src/experiment or src/stats changes' : ''}`,
    node: process.version,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadAverage,
    // process.cpuUsage covers every thread of the process, the workers included.
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds: (performance.now() - t0) / 1000,
    meanOutcomes: em,
    designRatio: em2 / em,
    // A/A/A outcomes per user: m clicks, ~m/4 orders (E[Beta(1, 3)] = 1/4), revenue and its pre-period value.
    meanCheckpoints: looksUpTo(opts.users * (1.25 * em + 2)),
  }
  const tallies = tally(aa, power)
  const result = { meta, options: opts, targets: targetsOf(tallies, opts.experiments), tallies }
  const md = markdown(result)
  process.stdout.write(md)
  if (opts.out !== null) {
    const dir = resolve(opts.out)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'calibration.md'), md)
    await writeFile(join(dir, 'calibration.json'), `${JSON.stringify(result, null, 2)}\n`)
    log(`calibration: wrote ${join(dir, 'calibration.md')} and calibration.json`)
  }
  log(`calibration: CPU ${meta.cpuSeconds.toFixed(1)} s, wall ${meta.wallSeconds.toFixed(1)} s`)
  return result.targets.every((x) => x.pass) ? 0 : 1
}

if (!isMainThread) {
  parentPort.postMessage(await work(workerData))
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await runCalibration(process.argv.slice(2))
}

/** How many looks the router takes up to `total` outcomes (src/experiment/accumulator.ts: FIRST_LOOK, then 5 % more each). */
function looksUpTo(total) {
  let looks = 0
  for (let n = 100; n <= total; n = Math.max(n + 1, Math.ceil(n * 1.05))) looks++
  return looks
}
