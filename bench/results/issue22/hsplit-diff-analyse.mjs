// Usage: node bench/results/issue22/hsplit-diff-analyse.mjs OLD_CHECKOUT NEW_CHECKOUT [rounds]  (both with dist/ built)
// Differential check of the analyse.ts split: the same random inputs through the old build and the
// new one must give the same reports (JSON-equal) and the same running minima.
const [oldDir, newDir, rounds = '400'] = process.argv.slice(2)
const OLD = await import(`${oldDir}/dist/experiment/analyse.js`)
const NEW = await import(`${newDir}/dist/experiment/analyse.js`)
let seed = 12345
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
function input(unit, mins) {
  const buckets = [4, 16, 32][Math.floor(rand() * 3)]
  const models = ['a', 'b', 'c'].slice(0, 2 + Math.floor(rand() * 2))
  const metrics = [
    { name: 'conv', type: 'binary', mde: rand() < 0.5 ? null : 0.02, higher_is_better: true, role: 'outcome', numerator: null, denominator: null, cuped: null, guardrail: rand() < 0.5 ? { margin: 0.01 } : null },
    { name: 'pre', type: 'continuous', mde: null, higher_is_better: true, role: 'covariate', numerator: null, denominator: null, cuped: null, guardrail: null },
    { name: 'rev', type: 'continuous', mde: null, higher_is_better: rand() < 0.7, role: 'outcome', numerator: null, denominator: null, cuped: rand() < 0.7 ? 'pre' : null, guardrail: rand() < 0.3 ? { margin: 0.5 } : null },
    { name: 'clicks', type: 'continuous', mde: null, higher_is_better: true, role: 'outcome', numerator: null, denominator: null, cuped: null, guardrail: null },
    { name: 'ctr', type: 'ratio', mde: null, higher_is_better: true, role: 'outcome', numerator: 'clicks', denominator: 'pre', cuped: null, guardrail: null },
  ]
  const scale = Math.floor(rand() * 400) + 5
  const cells = {}, totals = {}
  for (const m of models) for (const x of metrics) {
    const sum = new Float64Array(buckets), count = new Float64Array(buckets)
    let n = 0, s = 0, ss = 0
    for (let i = 0; i < buckets; i++) {
      const c = Math.floor(rand() * scale / buckets * 2)
      let v = 0, v2 = 0
      for (let k = 0; k < c; k++) {
        const y = x.type === 'binary' ? (rand() < 0.3 + (m === 'b' ? 0.05 : 0) ? 1 : 0) : 10 + 5 * rand() + (m === 'c' ? 1 : 0)
        v += y; v2 += y * y
      }
      sum[i] = v; count[i] = c; n += c; s += v; ss += v2
    }
    cells[`${m}|${x.name}`] = { sum, count }
    totals[`${m}|${x.name}`] = { n, sum: s, sumSquares: ss }
  }
  const arms = models.map((m) => ({ model: m, weight: 1 / models.length, requests: Math.floor(scale * (0.8 + 0.4 * rand())), ...(unit === 'user' && rand() < 0.7 ? { users: Math.floor(scale / 2 * (0.8 + 0.4 * rand())) } : {}) }))
  return {
    route: 'r', control: 'a', analysis: { unit, buckets, correction: ['holm', 'bh', 'none'][Math.floor(rand() * 3)], alpha: 0.05 },
    arms, metrics,
    cells: (m, x) => cells[`${m}|${x}`], totals: (m, x) => totals[`${m}|${x}`],
    ...(mins ? { runningMin: (k, p) => { const v = Math.min(mins.get(k) ?? 1, p); mins.set(k, v); return v } } : {}),
  }
}
let same = 0
const minsOld = new Map(), minsNew = new Map()
for (let i = 0; i < Number(rounds); i++) {
  const unit = i % 2 === 0 ? 'user' : 'request'
  const s0 = seed
  const withMins = i % 3 !== 0
  const a = OLD.analyseExperiment(input(unit, withMins ? minsOld : undefined))
  seed = s0
  const b = NEW.analyseExperiment(input(unit, withMins ? minsNew : undefined))
  const s1 = seed
  seed = s0; OLD.foldLooks(input(unit, minsOld)); seed = s0; NEW.foldLooks(input(unit, minsNew)); seed = s1
  if (JSON.stringify(a) !== JSON.stringify(b)) { console.log('DIFFERENT at round', i, unit); process.exit(1) }
  same++
}
const mo = JSON.stringify([...minsOld].sort()), mn = JSON.stringify([...minsNew].sort())
console.log(`${same} reports identical (user and request units, CUPED, ratio, guardrails, corrections); running minima ${mo === mn ? `identical (${minsOld.size} keys)` : 'DIFFERENT'}`)
console.log('defaultMde', OLD.defaultMde({ mde: null, type: 'continuous' }, 40) === NEW.defaultMde({ mde: null, type: 'continuous' }, 40))
