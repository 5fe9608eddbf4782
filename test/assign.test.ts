import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import chisquareCdf from '@stdlib/stats-base-dists-chisquare-cdf'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Assigner, MAX_USER_ID_BYTES, buildRendezvous, rendezvousHash } from '../src/assign/index.js'

const execFileAsync = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli', 'main.js')

// ---------------------------------------------------------------------------------------------
// Shared inputs and statistics
// ---------------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG, so every "random" input here is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function uuidLike(next: () => number): string {
  const hex = (n: number): string => Array.from({ length: n }, () => Math.floor(next() * 16).toString(16)).join('')
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[Math.floor(next() * 4)]}${hex(3)}-${hex(12)}`
}

/** 100 000 distinct ids: mostly `user-<i>`, every 20th UUID-like, every 20th (+1) multi-byte UTF-8. */
function makeIds(n: number, seed: number): string[] {
  const next = mulberry32(seed)
  return Array.from({ length: n }, (_, i) =>
    i % 20 === 0 ? uuidLike(next) : i % 20 === 1 ? `用户-${i}-Zoë-🙂` : `user-${i}`)
}

const N = 100_000
const IDS = makeIds(N, 20261124)

/**
 * Upper 0.1% points of the chi-square distribution (P(X > c) = 0.001), from the NIST/SEMATECH
 * e-Handbook of Statistical Methods, §1.3.6.7.4 "Critical Values of the Chi-Square Distribution".
 */
const CHI2_CRITICAL_999: Readonly<Record<number, number>> = { 1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467 }

/** Two-sided 99.9% normal quantile, for binomial bounds at the same level as the chi-square tests. */
const Z_999 = 3.2905

function chiSquare(observed: readonly number[], expected: readonly number[]): number {
  return observed.reduce((sum, o, i) => {
    const e = expected[i] as number
    return sum + (o - e) ** 2 / e
  }, 0)
}

function critical(df: number): number {
  const c = CHI2_CRITICAL_999[df]
  if (c === undefined) throw new Error(`no tabulated chi-square critical value for df=${df}`)
  return c
}

/** Pearson goodness of fit of `counts` to `weights` (zero weights must have zero counts and are left out). */
function goodnessOfFit(counts: readonly number[], weights: readonly number[]): { stat: number; df: number } {
  const total = counts.reduce((a, b) => a + b, 0)
  const sumW = weights.reduce((a, b) => a + b, 0)
  const keep = weights.map((w, i) => i).filter((i) => (weights[i] as number) > 0)
  const stat = chiSquare(keep.map((i) => counts[i] as number), keep.map((i) => (total * (weights[i] as number)) / sumW))
  return { stat, df: keep.length - 1 }
}

/** |count − np| within the 99.9% normal approximation to Binomial(n, p). */
function expectBinomial(count: number, n: number, p: number): void {
  const sd = Math.sqrt(n * p * (1 - p))
  expect(Math.abs(count - n * p), `count ${count} of ${n}, expected ${(n * p).toFixed(1)} ± ${(Z_999 * sd).toFixed(1)}`)
    .toBeLessThanOrEqual(Z_999 * sd)
}

function rendezvous(models: readonly string[], weights: readonly number[], salt = 'exp'): Assigner {
  return new Assigner({ algorithm: 'rendezvous', salt, models, weights })
}

/** Model name per id. */
function assignAll(assigner: Assigner, ids: readonly string[] = IDS): string[] {
  return ids.map((id) => assigner.models[assigner.pick(id)] as string)
}

function countBy(names: readonly string[], models: readonly string[]): number[] {
  const counts = new Map(models.map((m) => [m, 0]))
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1)
  expect([...counts.keys()].sort(), 'only split models are picked').toEqual([...models].sort())
  return models.map((m) => counts.get(m) as number)
}

/** "from→to" → number of users, for users whose model changed. */
function moves(before: readonly string[], after: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  before.forEach((b, i) => {
    const a = after[i] as string
    if (a !== b) out[`${b}→${a}`] = (out[`${b}→${a}`] ?? 0) + 1
  })
  return out
}

/**
 * A deliberately wrong splitter (the classic cumulative bucket table over list order, one hash
 * per user): its shares are right, so it shows which of the tests below check more than shares.
 */
function cumulativeAssignAll(models: readonly string[], weights: readonly number[], salt = 'exp'): string[] {
  const table = buildRendezvous(salt, ['bucket'], [1])
  const total = weights.reduce((a, b) => a + b, 0)
  return IDS.map((id) => {
    let target = (rendezvousHash(table, 0, id) / 4294967296) * total
    for (let i = 0; i < models.length; i++) {
      target -= weights[i] as number
      if (target < 0) return models[i] as string
    }
    return models[models.length - 1] as string
  })
}

/** Another wrong splitter: weighted min-hash with a linear score u / w instead of −ln(u) / w. */
function linearScoreAssignAll(models: readonly string[], weights: readonly number[], salt = 'exp'): string[] {
  const table = buildRendezvous(salt, models, weights)
  return IDS.map((id) => {
    let best = 0
    let bestScore = Infinity
    models.forEach((_, i) => {
      const score = (rendezvousHash(table, i, id) + 0.5) / 4294967296 / (weights[i] as number)
      if (score < bestScore) { bestScore = score; best = i }
    })
    return models[best] as string
  })
}

describe('test inputs', () => {
  it('has 100 000 distinct ids, including UUID-like and multi-byte UTF-8 ones', () => {
    expect(new Set(IDS).size).toBe(N)
    expect(IDS.filter((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id))).toHaveLength(N / 20)
    expect(IDS.filter((id) => Buffer.byteLength(id) > id.length)).toHaveLength(N / 20)
  })

  it('uses tabulated chi-square critical values that agree with the chi-square CDF', () => {
    for (const [df, c] of Object.entries(CHI2_CRITICAL_999)) {
      expect(chisquareCdf(c, Number(df))).toBeCloseTo(0.999, 5)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// 1. Shares follow weights
// ---------------------------------------------------------------------------------------------

describe('rendezvous shares match weights (Pearson chi-square, 100 000 ids, α = 0.001)', () => {
  const SETS: readonly { name: string; models: string[]; weights: number[] }[] = [
    { name: '90/10', models: ['stable', 'canary'], weights: [90, 10] },
    { name: '1/1/1', models: ['a', 'b', 'c'], weights: [1, 1, 1] },
    { name: '70/20/10', models: ['control', 'challenger', 'canary'], weights: [70, 20, 10] },
    { name: '5/95', models: ['old', 'new'], weights: [5, 95] },
    { name: '3/0/7 (zero weight)', models: ['m0', 'm1', 'm2'], weights: [3, 0, 7] },
    { name: '0/1/0/1/0 (zeros around)', models: ['z0', 'p1', 'z2', 'p3', 'z4'], weights: [0, 1, 0, 1, 0] },
  ]

  it.each(SETS)('$name', ({ models, weights }) => {
    const assigner = rendezvous(models, weights, 'shares-2026')
    const counts = countBy(assignAll(assigner), models)
    weights.forEach((w, i) => { if (w === 0) expect(counts[i], `${models[i]} has weight 0`).toBe(0) })
    const { stat, df } = goodnessOfFit(counts, weights)
    expect(stat, `counts ${counts.join('/')}`).toBeLessThan(critical(df))
    expect(1 - chisquareCdf(stat, df)).toBeGreaterThan(0.001)
  })

  it('would reject a 90/10 split that came out 50/50, and 90/10 counts tested against 50/50', () => {
    const counts = countBy(assignAll(rendezvous(['stable', 'canary'], [90, 10], 'shares-2026')), ['stable', 'canary'])
    expect(goodnessOfFit(counts, [50, 50]).stat).toBeGreaterThan(critical(1))
    expect(goodnessOfFit([N / 2, N / 2], [90, 10]).stat).toBeGreaterThan(critical(1))
  })

  it('would reject a linear score u/w (gives a 90/10 canary ~5.6%, not 10%)', () => {
    const counts = countBy(linearScoreAssignAll(['stable', 'canary'], [90, 10]), ['stable', 'canary'])
    expect(goodnessOfFit(counts, [90, 10]).stat).toBeGreaterThan(critical(1))
    expectBinomial(counts[1] as number, N, 1 / 18) // P(u₂/0.1 < u₁/0.9) = 1/18
  })

  it('reports shares as weight / total', () => {
    expect(Array.from(rendezvous(['a', 'b', 'c'], [70, 20, 10]).shares)).toEqual([0.7, 0.2, 0.1])
    expect(Array.from(rendezvous(['a', 'b', 'c'], [3, 0, 7]).shares)).toEqual([0.3, 0, 0.7])
  })
})

// ---------------------------------------------------------------------------------------------
// 2. Ramping a weight moves users only into (or out of) that model
// ---------------------------------------------------------------------------------------------

describe('ramping a canary is sticky', () => {
  const MODELS = ['stable', 'canary']
  const RAMP = [10, 20, 50]
  let byWeight: Map<number, string[]>
  beforeAll(() => {
    byWeight = new Map(RAMP.map((w) => [w, assignAll(rendezvous(MODELS, [90, w], 'ramp'))]))
  })

  it('gives the canary its share at each step (10/100, 20/110, 50/140)', () => {
    for (const w of RAMP) {
      const counts = countBy(byWeight.get(w) as string[], MODELS)
      expectBinomial(counts[1] as number, N, w / (90 + w))
    }
  })

  it('keeps every user of the canary at 10 in it at 20 and at 50', () => {
    const [at10, at20, at50] = RAMP.map((w) => byWeight.get(w) as string[]) as [string[], string[], string[]]
    const stayed = at10.every((m, i) => m !== 'canary' || (at20[i] === 'canary' && at50[i] === 'canary'))
    expect(stayed).toBe(true)
  })

  it('moves users only into the canary when it rises, only out when it falls', () => {
    for (const [from, to] of [[10, 20], [20, 50], [10, 50]] as const) {
      const up = moves(byWeight.get(from) as string[], byWeight.get(to) as string[])
      expect(Object.keys(up), `${from} → ${to}`).toEqual(['stable→canary'])
      // Share rises from w₁/(90+w₁) to w₂/(90+w₂); the difference is who moves.
      expectBinomial(up['stable→canary'] as number, N, to / (90 + to) - from / (90 + from))
      const down = moves(byWeight.get(to) as string[], byWeight.get(from) as string[])
      expect(down, `${to} → ${from}`).toEqual({ 'canary→stable': up['stable→canary'] })
    }
  })

  describe('with three models (control 70, challenger 20, canary 10 → 30)', () => {
    const M3 = ['control', 'challenger', 'canary']
    let low: string[]
    let high: string[]
    beforeAll(() => {
      low = assignAll(rendezvous(M3, [70, 20, 10], 'ramp3'))
      high = assignAll(rendezvous(M3, [70, 20, 30], 'ramp3'))
    })

    it('raising the canary moves users from the others into it only, none between control and challenger', () => {
      const up = moves(low, high)
      expect(Object.keys(up).sort()).toEqual(['challenger→canary', 'control→canary'])
      // Canary share 0.1 → 0.25; the others lose in proportion to their weights (70 : 20).
      expectBinomial((up['control→canary'] as number) + (up['challenger→canary'] as number), N, 0.25 - 0.1)
      const { stat } = goodnessOfFit([up['control→canary'] as number, up['challenger→canary'] as number], [70, 20])
      expect(stat).toBeLessThan(critical(1))
    })

    it('lowering it moves users out of it only', () => {
      const down = moves(high, low)
      expect(Object.keys(down).sort()).toEqual(['canary→challenger', 'canary→control'])
    })

    it('raising the challenger (20 → 40) takes users only from control and canary', () => {
      const higher = assignAll(rendezvous(M3, [70, 40, 10], 'ramp3'))
      expect(Object.keys(moves(low, higher)).sort()).toEqual(['canary→challenger', 'control→challenger'])
      expect(Object.keys(moves(higher, low)).sort()).toEqual(['challenger→canary', 'challenger→control'])
    })

    it('would catch a cumulative bucket table, which moves users between the unchanged models', () => {
      const before = cumulativeAssignAll(M3, [70, 20, 10], 'ramp3')
      const after = cumulativeAssignAll(M3, [70, 20, 30], 'ramp3')
      // Its shares are fine, so only the stickiness check can tell it apart.
      expect(goodnessOfFit(countBy(after, M3), [70, 20, 30]).stat).toBeLessThan(critical(2))
      expect(moves(before, after)['control→challenger']).toBeGreaterThan(1000)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// 3. Adding and removing a model
// ---------------------------------------------------------------------------------------------

describe('adding a model takes users only into it; removing it returns exactly those users', () => {
  const BASE_MODELS = ['control', 'challenger', 'canary']
  const BASE_WEIGHTS = [70, 20, 10]
  let base: string[]
  beforeAll(() => {
    base = assignAll(rendezvous(BASE_MODELS, BASE_WEIGHTS, 'grow'))
  })

  it.each([0, 1, 3])('inserting "newcomer" (weight 25) at position %i', (at) => {
    const models = [...BASE_MODELS]
    const weights = [...BASE_WEIGHTS]
    models.splice(at, 0, 'newcomer')
    weights.splice(at, 0, 25)
    const grown = assignAll(rendezvous(models, weights, 'grow'))
    const added = moves(base, grown)
    expect(Object.keys(added).sort()).toEqual(['canary→newcomer', 'challenger→newcomer', 'control→newcomer'])
    const taken = BASE_MODELS.map((m) => added[`${m}→newcomer`] as number)
    expectBinomial(taken.reduce((a, b) => a + b, 0), N, 25 / 125)
    // It takes from each model in proportion to that model's weight.
    expect(goodnessOfFit(taken, BASE_WEIGHTS).stat).toBeLessThan(critical(2))

    const shrunk = assignAll(rendezvous(BASE_MODELS, BASE_WEIGHTS, 'grow'))
    const back = moves(grown, shrunk)
    expect(back).toEqual(Object.fromEntries(BASE_MODELS.map((m) => [`newcomer→${m}`, added[`${m}→newcomer`]])))
    expect(shrunk).toEqual(base)
  })

  it('adding a model with weight 0 moves nobody', () => {
    expect(assignAll(rendezvous([...BASE_MODELS, 'dark'], [...BASE_WEIGHTS, 0], 'grow'))).toEqual(base)
  })
})

// ---------------------------------------------------------------------------------------------
// 4. Order of the split list does not matter
// ---------------------------------------------------------------------------------------------

describe('reordering the split changes nobody', () => {
  const PERMUTATIONS = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]

  it.each([
    { models: ['control', 'challenger', 'canary'], weights: [70, 20, 10] },
    { models: ['a', 'b', 'c'], weights: [1, 1, 1] },
  ])('all 6 orders of $models / $weights agree for every user', ({ models, weights }) => {
    const reference = assignAll(rendezvous(models, weights, 'order'))
    for (const p of PERMUTATIONS.slice(1)) {
      const got = assignAll(rendezvous(p.map((i) => models[i] as string), p.map((i) => weights[i] as number), 'order'))
      expect(moves(reference, got), `order ${p.join(',')}`).toEqual({})
    }
  })

  it('breaks an exact score tie by model name, not list position', () => {
    // murmur3_32 of "tie:model-9865:user-1" and "tie:model-41890:user-1" are both 1197233756
    // (a collision found by search), so equal weights give equal scores.
    const forward = rendezvous(['model-9865', 'model-41890'], [1, 1], 'tie')
    const backward = rendezvous(['model-41890', 'model-9865'], [1, 1], 'tie')
    expect(forward.explain('user-1').candidates.map((c) => c.hash)).toEqual([1197233756, 1197233756])
    expect(forward.models[forward.pick('user-1')]).toBe('model-41890')
    expect(backward.models[backward.pick('user-1')]).toBe('model-41890')
  })

  it('would catch a cumulative bucket table, which reassigns users when the list is reordered', () => {
    const a = cumulativeAssignAll(['control', 'challenger', 'canary'], [70, 20, 10], 'order')
    const b = cumulativeAssignAll(['canary', 'challenger', 'control'], [10, 20, 70], 'order')
    expect(Object.keys(moves(a, b)).length).toBeGreaterThan(0)
  })
})

// ---------------------------------------------------------------------------------------------
// 5. Different salts give independent assignments
// ---------------------------------------------------------------------------------------------

describe('different salts give independent assignments', () => {
  it('the canary share under salt B among salt-A canary users is the canary share (90/10)', () => {
    const a = assignAll(rendezvous(['stable', 'canary'], [90, 10], 'exp-A'))
    const b = assignAll(rendezvous(['stable', 'canary'], [90, 10], 'exp-B'))
    const inA = a.flatMap((m, i) => (m === 'canary' ? [i] : []))
    const inBoth = inA.filter((i) => b[i] === 'canary').length
    expectBinomial(inBoth, inA.length, 0.1)
    // The salt-A stable users too: the B canary rate does not depend on the A assignment.
    const outA = a.flatMap((m, i) => (m === 'stable' ? [i] : []))
    expectBinomial(outA.filter((i) => b[i] === 'canary').length, outA.length, 0.1)
  })

  it('a 3×3 contingency table of salt A against salt B passes the chi-square independence test', () => {
    const models = ['control', 'challenger', 'canary']
    const weights = [70, 20, 10]
    const table = (saltA: string, saltB: string): number => {
      const a = assignAll(rendezvous(models, weights, saltA))
      const b = assignAll(rendezvous(models, weights, saltB))
      const cells = models.map(() => models.map(() => 0))
      a.forEach((m, i) => { (cells[models.indexOf(m)] as number[])[models.indexOf(b[i] as string)]! += 1 })
      const rows = cells.map((r) => r.reduce((x, y) => x + y, 0))
      const cols = models.map((_, j) => cells.reduce((x, r) => x + (r[j] as number), 0))
      return chiSquare(cells.flat(), rows.flatMap((r) => cols.map((c) => (r * c) / N)))
    }
    // df = (3 − 1)(3 − 1) = 4. Salts differing in one character are still independent.
    expect(table('churn-2026-11', 'churn-2026-12')).toBeLessThan(critical(4))
    // Same salt: the table is diagonal, so the test can fail.
    expect(table('churn-2026-11', 'churn-2026-11')).toBeGreaterThan(critical(4))
  })
})

// ---------------------------------------------------------------------------------------------
// 6. Golden vectors from the independent Python reference
// ---------------------------------------------------------------------------------------------

interface GoldenRow {
  salt: string
  models: string[]
  weights: number[]
  user_id: string
  model: string
  hashes: number[]
}

const GOLDEN = (JSON.parse(readFileSync(new URL('./fixtures/rendezvous-golden.json', import.meta.url), 'utf8')) as { rows: GoldenRow[] }).rows

describe('golden vectors from scripts/rendezvous_reference.py', () => {
  it('cover ~200 rows, UTF-8 ids and ids longer than MAX_USER_ID_BYTES', () => {
    expect(GOLDEN.length).toBeGreaterThanOrEqual(150)
    expect(GOLDEN.some((r) => Buffer.byteLength(r.user_id) > MAX_USER_ID_BYTES)).toBe(true)
    expect(GOLDEN.some((r) => Buffer.byteLength(r.user_id) === MAX_USER_ID_BYTES)).toBe(true)
    expect(GOLDEN.some((r) => Buffer.byteLength(r.user_id) > r.user_id.length)).toBe(true)
    expect(GOLDEN.some((r) => r.weights.includes(0))).toBe(true)
    expect(GOLDEN.some((r) => new Set(r.hashes).size < r.hashes.length), 'an exact tie').toBe(true)
  })

  it.each(GOLDEN.map((row, i) => ({ ...row, i, bytes: Buffer.byteLength(row.user_id) })))(
    'row $i: salt $salt, $bytes-byte id → $model',
    ({ salt, models, weights, user_id: userId, model, hashes }) => {
      const assigner = rendezvous(models, weights, salt)
      expect(assigner.models[assigner.pick(userId)]).toBe(model)
      const e = assigner.explain(userId)
      expect(e.model).toBe(model)
      expect(e.candidates.map((c) => c.hash)).toEqual(hashes)
      expect(e.candidates.map((c) => c.key)).toEqual(models.map((m) => `${salt}:${m}:${userId}`))
      expect(e.candidates.map((c) => c.score)).toEqual(
        hashes.map((h, i) => ((weights[i] as number) > 0 ? -Math.log((h + 0.5) / 4294967296) / (weights[i] as number) : Infinity)))
    },
  )
})

// ---------------------------------------------------------------------------------------------
// 7. The CLI in separate processes agrees with itself and with Assigner
// ---------------------------------------------------------------------------------------------

interface CliLine {
  route: string
  user_id: string
  salt: string
  model: string
  index: number
  algorithm: string
  candidates: { model: string; weight: number; share: number; key: string; hash: number; score: number | null }[]
}

describe('`modelsplit assign` across processes', () => {
  const SALT = 'ranker-ß-2026'
  const MODELS = ['ranker-v1', 'ranker-v2', 'ranker-v3']
  const WEIGHTS = [70, 20, 10]
  const next = mulberry32(7)
  const CLI_IDS = Array.from({ length: 2000 }, (_, i) =>
    i % 10 === 0 ? uuidLike(next) : i % 10 === 1 ? `клиент-${i}-東京` : i === 2 ? `long-${'x'.repeat(1100)}` : `user-${i}`)
  let dir: string
  let config: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelsplit-assign-'))
    config = join(dir, 'router.yaml')
    await writeFile(config, [
      'models:',
      ...MODELS.map((m, i) => `  ${m}: { url: "http://127.0.0.1:${9001 + i}" }`),
      'routes:',
      '  - name: ranker',
      '    path: /models/ranker',
      `    salt: "${SALT}"`,
      '    split:',
      ...MODELS.map((m, i) => `      - { model: ${m}, weight: ${WEIGHTS[i]} }`),
      '',
    ].join('\n'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const run = async (json: boolean): Promise<string> => {
    const args = [CLI, 'assign', '--config', config, '--route', 'ranker', ...(json ? ['--json'] : []), ...CLI_IDS]
    const { stdout } = await execFileAsync(process.execPath, args, { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' })
    return stdout
  }

  it('two processes print the same JSON lines, and they match Assigner in this process', async () => {
    const [first, second, text] = await Promise.all([run(true), run(true), run(false)])
    expect(first).toBe(second)

    const lines = first.trimEnd().split('\n').map((l) => JSON.parse(l) as CliLine)
    expect(lines).toHaveLength(CLI_IDS.length)
    const assigner = rendezvous(MODELS, WEIGHTS, SALT)
    lines.forEach((line, i) => {
      const id = CLI_IDS[i] as string
      const e = assigner.explain(id)
      expect(line).toMatchObject({ route: 'ranker', user_id: id, salt: SALT, algorithm: 'rendezvous', model: e.model, index: e.index })
      expect(line.candidates).toEqual(e.candidates)
    })
    // The sample is large enough to see every model.
    expect(new Set(lines.map((l) => l.model))).toEqual(new Set(MODELS))

    // Plain text: "<id>\t<model>", then one indented line per candidate with * on the winner.
    const named = new Map<string, string>()
    let starred = 0
    for (const l of text.trimEnd().split('\n')) {
      if (l.startsWith('  ')) {
        if (l.startsWith('  * ')) starred += 1
        continue
      }
      const [id, model] = l.split('\t') as [string, string]
      named.set(id, model)
    }
    expect(starred).toBe(CLI_IDS.length)
    expect([...named.keys()]).toEqual(CLI_IDS)
    expect([...named.values()]).toEqual(lines.map((l) => l.model))
  })
})

// ---------------------------------------------------------------------------------------------
// 8. pickRandom (requests without a user id)
// ---------------------------------------------------------------------------------------------

describe('pickRandom', () => {
  it.each([
    { weights: [90, 10] },
    { weights: [70, 20, 10] },
    { weights: [5, 95] },
    { weights: [3, 0, 7] },
    { weights: [0, 1, 0, 2] },
  ])('draws by weight $weights (chi-square on 100 000 seeded draws) and never a zero weight', ({ weights }) => {
    const assigner = rendezvous(weights.map((_, i) => `m${i}`), weights)
    const next = mulberry32(99)
    const counts = weights.map(() => 0)
    for (let k = 0; k < N; k++) counts[assigner.pickRandom(next())]! += 1
    weights.forEach((w, i) => { if (w === 0) expect(counts[i]).toBe(0) })
    const { stat, df } = goodnessOfFit(counts, weights)
    expect(stat, `counts ${counts.join('/')}`).toBeLessThan(critical(df))
  })

  it('never returns a zero-weight model at the ends of [0, 1)', () => {
    const largest = 1 - 2 ** -53
    expect(rendezvous(['off', 'on'], [0, 1]).pickRandom(0)).toBe(1)
    expect(rendezvous(['on', 'off'], [1, 0]).pickRandom(largest)).toBe(0)
    expect(rendezvous(['a', 'off', 'b', 'off2'], [0.1, 0, 0.2, 0]).pickRandom(largest)).toBe(2)
    const mixed = rendezvous(['off', 'a', 'off2'], [0, 1, 0])
    for (let k = 0; k < 1000; k++) expect(mixed.pickRandom()).toBe(1)
  })

  it('would be caught ignoring weights (uniform draws fail the 90/10 test)', () => {
    const next = mulberry32(99)
    const counts = [0, 0]
    for (let k = 0; k < N; k++) counts[Math.floor(next() * 2)]! += 1
    expect(goodnessOfFit(counts, [90, 10]).stat).toBeGreaterThan(critical(1))
  })
})
