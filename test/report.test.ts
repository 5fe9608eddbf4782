import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { reportCommand } from '../src/cli/report.js'
import { runCli } from '../src/cli/run.js'
import { ReportAccumulator, Reservoir, isError, nearestRank } from '../src/report/index.js'
import type { PairSummary, ReportDocument, RouteSummary } from '../src/report/index.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SMALL = fileURLToPath(new URL('./fixtures/report-small.jsonl', import.meta.url))

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelsplit-report-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A stream that keeps what is written; `isTTY` to pretend it is a terminal. */
function capture(isTTY = false): PassThrough & { text: () => string; isTTY: boolean } {
  const chunks: Buffer[] = []
  const s = new PassThrough() as PassThrough & { text: () => string; isTTY: boolean }
  s.on('data', (c: Buffer) => chunks.push(c))
  s.text = () => Buffer.concat(chunks).toString('utf8')
  s.isTTY = isTTY
  return s
}

async function report(files: string[], opts: { json: boolean; progress?: boolean }, errIsTTY = false) {
  const out = capture()
  const err = capture(errIsTTY)
  const code = await reportCommand(files, opts, { out, err })
  return { code, stdout: out.text(), stderr: err.text() }
}

async function reportJson(files: string[]): Promise<ReportDocument> {
  const { code, stdout } = await report(files, { json: true, progress: false })
  expect(code).toBe(0)
  return JSON.parse(stdout) as ReportDocument
}

function route(doc: ReportDocument, name: string): RouteSummary {
  const r = doc.routes.find((x) => x.route === name)
  if (r === undefined) throw new Error(`no route ${name}`)
  return r
}

function pair(r: RouteSummary, primary: string, shadow: string): PairSummary {
  const p = r.pairs.find((x) => x.primary === primary && x.shadow === shadow)
  if (p === undefined) throw new Error(`no pair ${primary} → ${shadow}`)
  return p
}

const close = (x: number) => expect.closeTo(x, 9)

describe('report on the hand-made fixture', () => {
  // test/fixtures/report-small.jsonl, by request id (latencies in ms):
  //   churn r01 v1 200 10 | v3 200 20 agree    abs 0.01
  //   churn r02 v1 200 12 | v3 200 22 disagree abs 0.2
  //   fraud r03 a  200  3 | b  200  4 agree    abs null (labels)
  //   churn r04 v1 200 14 | v3   0 100 error "timeout"      → comparison error
  //   churn r05 v1 503  5 error "answered HTTP 503" | v3 200 25 → comparison error
  //   (outcome record: ignored)
  //   churn r06 v1 200 16 | v3 200 21 agree abs 0.02 ; v4 200 30 agree abs 0.03
  //   churn r07 v2 200  8 | v3 200 24 agree abs 0.05
  //   churn r08 v2 200  9 | (no shadows)
  //   (blank line: ignored, not counted)
  //   fraud r09 a  200  5 | b  200  6 disagree abs null
  //   churn r10 v2 200  7 | v3 502 26 error null          → comparison error
  //   churn r11 v1 200 11 | v3 200 23 agree abs 0 ; v4 200 35 disagree abs 0.4
  //   fraud r12 a  200  2 | (no shadows)
  //   churn r13 v1 200 30 | (no shadows)
  //   r14: truncated last line → skipped
  //
  // Wilson 95% (z = 1.959964, z² = 3.841459): centre = (p + z²/2n) / (1 + z²/n),
  // half = z / (1 + z²/n) · √(p(1−p)/n + z²/4n²); bounds centre ± half, clamped to [0, 1].
  // Nearest rank: the value at rank ⌈q·n⌉ of the ascending values.

  it('every number in --json matches the hand computation', async () => {
    const { code, stdout, stderr } = await report([SMALL], { json: true, progress: false })
    expect(code).toBe(0)
    expect(stderr).toBe(`modelsplit report: read 14 record(s) from 1 file(s); 1 line(s) skipped (${SMALL}:16 invalid_json)\n`)
    const doc = JSON.parse(stdout) as ReportDocument

    expect(doc).toEqual({
      files: [SMALL],
      skipped_lines: 1, // r14, cut short
      records: { predictions: 13, other: 1, invalid: 0 }, // r01–r13; the outcome
      quantiles: { method: 'nearest-rank', reservoir_size: 50_000, exact: true },
      routes: [
        {
          route: 'churn',
          requests: 10, // r01 r02 r04 r05 r06 r07 r08 r10 r11 r13
          from: '2026-11-24T20:00:01.000Z',
          to: '2026-11-24T20:00:13.000Z',
          primaries: [
            {
              // r01 r02 r04 r05 r06 r11 r13 = 7 of 10 → share 0.7; errors: r05 (503) → 1/7
              // latency sorted 5 10 11 12 14 16 30: p50 rank ⌈3.5⌉ = 4 → 12; p99 rank ⌈6.93⌉ = 7 → 30
              model: 'churn-v1', requests: 7, errors: 1, error_rate: close(1 / 7), share: close(0.7),
              latency_ms: { n: 7, p50: 12, p99: 30 },
            },
            {
              // r07 r08 r10 = 3 of 10 → 0.3; no errors; sorted 7 8 9: p50 rank ⌈1.5⌉ = 2 → 8; p99 rank 3 → 9
              model: 'churn-v2', requests: 3, errors: 0, error_rate: 0, share: close(0.3),
              latency_ms: { n: 3, p50: 8, p99: 9 },
            },
          ],
          pairs: [
            {
              // r01 r02 r04 r05 r06 r11: 6 requests; compared r01 r02 r06 r11 = 4; errors r04 r05 = 2
              primary: 'churn-v1', shadow: 'churn-v3', requests: 6, compared: 4, comparison_errors: 2, agree: 3,
              // agree r01 r06 r11 = 3 of 4 → 0.75. Wilson: z²/n = 0.960365, 1 + z²/n = 1.960365,
              // centre = (0.75 + 0.480182) / 1.960365 = 0.627527,
              // half = 1.959964 / 1.960365 · √(0.1875/4 + 3.841459/64) = 0.999795 · √0.106898 = 0.326885
              // → [0.300642, 0.954413]
              agreement: { rate: 0.75, low: expect.closeTo(0.300642, 6), high: expect.closeTo(0.954413, 6), confidence: 0.95 },
              // abs_diff_max 0.01 0.2 0.02 0 → mean 0.23 / 4 = 0.0575; sorted 0 0.01 0.02 0.2, p99 rank 4 → 0.2
              abs_diff_max: { n: 4, mean: close(0.0575), p99: 0.2 },
              // primary errs on r05 → 1/6; latency 10 12 14 5 16 11 sorted 5 10 11 12 14 16: p50 rank 3 → 11, p99 rank 6 → 16
              primary_side: { model: 'churn-v1', requests: 6, errors: 1, error_rate: close(1 / 6), latency_ms: { n: 6, p50: 11, p99: 16 } },
              // shadow errs on r04 (status 0, timeout) → 1/6; sorted 20 21 22 23 25 100: p50 rank 3 → 22, p99 → 100
              shadow_side: { model: 'churn-v3', requests: 6, errors: 1, error_rate: close(1 / 6), latency_ms: { n: 6, p50: 22, p99: 100 } },
            },
            {
              // r06 r11: 2 requests, 2 compared, agree r06 → 1 of 2 = 0.5. Wilson: z²/n = 1.920729,
              // centre = (0.5 + 0.960365) / 2.920729 = 0.5, half = 1.959964 / 2.920729 · √(0.125 + 3.841459/16)
              // = 0.671050 · 0.604228 = 0.405469 → [0.094531, 0.905469]
              primary: 'churn-v1', shadow: 'churn-v4', requests: 2, compared: 2, comparison_errors: 0, agree: 1,
              agreement: { rate: 0.5, low: expect.closeTo(0.094531, 6), high: expect.closeTo(0.905469, 6), confidence: 0.95 },
              // 0.03 0.4 → mean 0.215, p99 rank 2 → 0.4
              abs_diff_max: { n: 2, mean: close(0.215), p99: 0.4 },
              // primary 16 11 → sorted 11 16: p50 rank 1 → 11, p99 rank 2 → 16; shadow 30 35 likewise
              primary_side: { model: 'churn-v1', requests: 2, errors: 0, error_rate: 0, latency_ms: { n: 2, p50: 11, p99: 16 } },
              shadow_side: { model: 'churn-v4', requests: 2, errors: 0, error_rate: 0, latency_ms: { n: 2, p50: 30, p99: 35 } },
            },
            {
              // r07 r10: 2 requests; compared r07 (agree) = 1; r10 a comparison error.
              // 1 of 1 → 1. Wilson: z²/n = 3.841459, centre = (1 + 1.920729) / 4.841459 = 0.603275,
              // half = 1.959964 / 4.841459 · √(0 + 3.841459/4) = 0.404829 · 0.979982 = 0.396725
              // → [0.206549, 0.999999… clamped to 1]
              primary: 'churn-v2', shadow: 'churn-v3', requests: 2, compared: 1, comparison_errors: 1, agree: 1,
              agreement: { rate: 1, low: expect.closeTo(0.206549, 6), high: 1, confidence: 0.95 },
              abs_diff_max: { n: 1, mean: close(0.05), p99: 0.05 },
              // primary 8 7 → p50 7, p99 8; shadow 24 26, r10 answered 502 → errors 1/2
              primary_side: { model: 'churn-v2', requests: 2, errors: 0, error_rate: 0, latency_ms: { n: 2, p50: 7, p99: 8 } },
              shadow_side: { model: 'churn-v3', requests: 2, errors: 1, error_rate: 0.5, latency_ms: { n: 2, p50: 24, p99: 26 } },
            },
          ],
        },
        {
          route: 'fraud',
          requests: 3, // r03 r09 r12
          from: '2026-11-24T20:00:03.000Z',
          to: '2026-11-24T20:00:12.000Z',
          // latency 3 5 2 sorted 2 3 5: p50 rank 2 → 3, p99 rank 3 → 5
          primaries: [{ model: 'fraud-a', requests: 3, errors: 0, error_rate: 0, share: 1, latency_ms: { n: 3, p50: 3, p99: 5 } }],
          pairs: [
            {
              // r03 agree, r09 disagree: 1 of 2 → same interval as churn-v1/churn-v4: [0.094531, 0.905469]
              primary: 'fraud-a', shadow: 'fraud-b', requests: 2, compared: 2, comparison_errors: 0, agree: 1,
              agreement: { rate: 0.5, low: expect.closeTo(0.094531, 6), high: expect.closeTo(0.905469, 6), confidence: 0.95 },
              // labels: abs_diff_max null on both → nothing to average
              abs_diff_max: { n: 0, mean: null, p99: null },
              primary_side: { model: 'fraud-a', requests: 2, errors: 0, error_rate: 0, latency_ms: { n: 2, p50: 3, p99: 5 } },
              shadow_side: { model: 'fraud-b', requests: 2, errors: 0, error_rate: 0, latency_ms: { n: 2, p50: 4, p99: 6 } },
            },
          ],
        },
      ],
    })
  })

  it('prints aligned tables with the route, the split and the pair rows', async () => {
    const { code, stdout } = await report([SMALL], { json: false, progress: false })
    expect(code).toBe(0)
    const lines = stdout.split('\n')
    expect(stdout).toMatch(/^route churn: 10 request\(s\)/m)
    expect(stdout).toMatch(/^route fraud: 3 request\(s\)/m)
    expect(lines).toContain('  churn-v1         7  70.0%       1       14.3%    12.0    30.0')
    // primary, shadow, requests, compared, cmp errors, agree, agreement, CI, abs_diff_max mean, p99
    expect(stdout).toMatch(/^ {2}churn-v1 {2}churn-v3 +6 +4 +2 +3 +75\.0% +\[30\.1%, 95\.4%\] +0\.0575 +0\.2000$/m)
    expect(stdout).toMatch(/^ {2}fraud-a {2}fraud-b +2 +2 +0 +1 +50\.0% +\[9\.5%, 90\.5%\] +- +-$/m)
    // side health: primary err, p50, p99, shadow err, p50, p99
    expect(stdout).toMatch(/^ {2}churn-v2 {2}churn-v3 +0\.0% +7\.0 +8\.0 +50\.0% +24\.0 +26\.0$/m)
    // Columns line up: every row of a table has the same length as its header.
    const header = lines.findIndex((l) => l.includes('cmp errors'))
    expect(lines[header + 1]?.length).toBe(lines[header]?.length)
    expect(stdout).toContain('abs_diff_max')
  })
})

describe('report on records with MLflow versions', () => {
  it('names the versions each model answered as, and says when two are mixed', async () => {
    const rec = (i: number, model: string, version: string | null) => JSON.stringify({ type: 'prediction', schema: 1, ts: `2026-11-30T20:00:0${i}.000Z`, request_id: `r${i}`, route: 'churn', user_id: `u${i}`, assignment: 'hash', primary: { model, model_version: version, status: 200, latency_ms: 1, prediction: [0.1], error: null }, shadows: [] })
    const file = join(dir, 'p.jsonl')
    await writeFile(file, [rec(1, 'v1', '1'), rec(2, 'v2', '2'), rec(3, 'v2', '3'), rec(4, 'v1', '1'), rec(5, 'v2', null)].join('\n') + '\n')
    const doc = await reportJson([file])
    expect(route(doc, 'churn').primaries.map((p) => [p.model, p.model_versions])).toEqual([['v1', ['1']], ['v2', ['2', '3', null]]])
    const { stdout } = await report([file], { json: false, progress: false })
    expect(stdout).toMatch(/^ {2}v1 \(v1\) +2 /m)
    expect(stdout).toMatch(/^ {2}v2 \(v2, v3, v\?\) +3 /m)
    expect(stdout).toContain('note: v2 answered as MLflow versions 2, 3, unresolved in these records: their numbers are mixed here')
    expect(stdout).not.toContain('note: v1')
  })
})

describe('report on rotated and large files', () => {
  function line(i: number, route = 'r'): string {
    return JSON.stringify({
      type: 'prediction', ts: `2026-11-24T20:00:${String(i % 60).padStart(2, '0')}.000Z`, request_id: `q${i}`, route, user_id: `u${i}`, assignment: 'hash',
      primary: { model: i % 2 === 0 ? 'm-a' : 'm-b', status: i % 100 === 0 ? 500 : 200, latency_ms: i % 1000, prediction: [0.5], error: null },
      shadows: [{ model: 'm-c', status: 200, latency_ms: 1, prediction: [0.5], error: null,
        comparison: { agree: i % 3 !== 0, abs_diff_max: (i % 3) / 10, abs_diff_mean: 0, fraction_agree: 1 } }],
    })
  }

  it('reads a base path with its rotated siblings, oldest first, and counts all of them', async () => {
    const base = join(dir, 'predictions.jsonl')
    await writeFile(`${base}.2`, [line(0), line(1)].join('\n') + '\n') // oldest
    await writeFile(`${base}.1`, [line(2), line(3), line(4)].join('\n') + '\n')
    await writeFile(base, line(5) + '\n') // current
    const doc = await reportJson([base])
    expect(doc.files).toEqual([`${base}.2`, `${base}.1`, base])
    expect(doc.records.predictions).toBe(6)
    const r = route(doc, 'r')
    expect(r.requests).toBe(6)
    expect(r.primaries.map((p) => [p.model, p.requests])).toEqual([['m-a', 3], ['m-b', 3]])
    // i = 0 and 3 disagree (i % 3 = 0); 0, 2, 4 are on m-a.
    expect(pair(r, 'm-a', 'm-c')).toMatchObject({ requests: 3, compared: 3, agree: 2 })
    expect(pair(r, 'm-b', 'm-c')).toMatchObject({ requests: 3, compared: 3, agree: 2 })
    // Naming a rotated file as well does not count it twice.
    expect((await reportJson([base, `${base}.1`])).records.predictions).toBe(6)
  })

  it('streams 200 000 records with exact counts and bounded, sampled quantiles', async () => {
    const file = join(dir, 'big.jsonl')
    const out = createWriteStream(file)
    const N = 200_000
    for (let i = 0; i < N; i += 10_000) {
      const chunk: string[] = []
      for (let j = i; j < i + 10_000; j++) chunk.push(line(j))
      if (!out.write(chunk.join('\n') + '\n')) await once(out, 'drain')
    }
    out.end()
    await once(out, 'close')

    const doc = await reportJson([file])
    expect(doc.records).toEqual({ predictions: N, other: 0, invalid: 0 })
    expect(doc.skipped_lines).toBe(0)
    // 100 000 latencies per model and pair side: more than the 50 000 kept, so sampled.
    expect(doc.quantiles.exact).toBe(false)
    const r = route(doc, 'r')
    expect(r.requests).toBe(N)
    const a = r.primaries.find((p) => p.model === 'm-a')
    // Even i: 100 000; errors where i % 100 = 0: 2 000.
    expect(a).toMatchObject({ requests: 100_000, errors: 2_000, share: 0.5 })
    expect(a?.error_rate).toBeCloseTo(0.02, 12)
    const ac = pair(r, 'm-a', 'm-c')
    // Even i with i % 3 = 0 is i % 6 = 0: ⌈200 000 / 6⌉ = 33 334 disagree, 66 666 agree.
    expect(ac).toMatchObject({ requests: 100_000, compared: 100_000, comparison_errors: 0, agree: 66_666 })
    // abs_diff_max (i % 3)/10 over even i: 33 334 × 0, 33 333 × 0.1, 33 333 × 0.2; the mean stays exact.
    expect(ac.abs_diff_max.n).toBe(100_000)
    expect(ac.abs_diff_max.mean).toBeCloseTo((33_333 * 0.1 + 33_333 * 0.2) / 100_000, 9)
    expect(ac.abs_diff_max.p99).toBe(0.2)
    // Latencies 0, 2, …, 998 each 100 times: sampled p50 near 498, p99 near 988.
    expect(a?.latency_ms.n).toBe(100_000)
    expect(a?.latency_ms.p50).toBeGreaterThan(480)
    expect(a?.latency_ms.p50).toBeLessThan(520)
    expect(a?.latency_ms.p99).toBeGreaterThan(980)
  })
})

describe('report command line', () => {
  const CLI = join(ROOT, 'dist/cli/main.js')

  it('runs as `modelsplit report` with exit 0 and keeps progress off stdout', () => {
    const plain = spawnSync(process.execPath, [CLI, 'report', SMALL], { cwd: ROOT, encoding: 'utf8' })
    expect(plain.status).toBe(0)
    expect(plain.stdout).toContain('route churn')
    for (const mark of ['\r', '\u001b', 'reading records']) expect(plain.stdout).not.toContain(mark)
    // stderr is a pipe here: no progress unless asked for.
    expect(plain.stderr).not.toContain('reading records')
    expect(plain.stderr).toContain('1 line(s) skipped')

    const forced = spawnSync(process.execPath, [CLI, 'report', SMALL, '--json', '--progress'], { cwd: ROOT, encoding: 'utf8' })
    expect(forced.status).toBe(0)
    for (const mark of ['\r', '\u001b', 'reading records']) expect(forced.stdout).not.toContain(mark)
    expect(JSON.parse(forced.stdout)).toMatchObject({ records: { predictions: 13 } })
    expect(forced.stderr).toMatch(/^\rreading records: 100% of [0-9.]+ KiB\n/)
  })

  it('shows progress on stderr when it is a TTY, finished with a newline', async () => {
    const { code, stdout, stderr } = await report([SMALL], { json: true }, true)
    expect(code).toBe(0)
    expect(stderr).toMatch(/^\rreading records: 100% of [0-9.]+ KiB\nmodelsplit report: read 14/)
    expect(stdout).not.toContain('\r')
  })

  it('exits 1 naming a file that cannot be read', async () => {
    const missing = join(dir, 'nope.jsonl')
    const { code, stdout, stderr } = await report([SMALL, missing], { json: false, progress: false })
    expect(code).toBe(1)
    expect(stdout).toBe('')
    expect(stderr).toBe(`modelsplit report: cannot read ${missing}: no such file (nor rotated siblings ${missing}.1, ...)\n`)
    expect((await report([dir], { json: false, progress: false })).stderr).toContain('is a directory')
  })

  it('exits 2 on usage errors and prints the help with -h', async () => {
    const out = capture()
    const err = capture()
    expect(await runCli(['report'], { out, err })).toBe(2)
    expect(err.text()).toContain('report needs at least one FILE')
    expect(await runCli(['report', '--bogus', SMALL], { out, err })).toBe(2)
    expect(await runCli(['report', '-h'], { out, err })).toBe(0)
    expect(out.text()).toContain('usage: modelsplit report FILE... [--config FILE] [--json] [--progress]')
    expect(out.text()).toContain('nearest rank')
  })
})

describe('report building blocks', () => {
  it.each([
    [{ status: 200, error: null }, false],
    [{ status: 404, error: null }, false],
    [{ status: 404, error: 'answered HTTP 404' }, true],
    [{ status: 500, error: null }, true],
    [{ status: 0, error: 'timeout' }, true],
    [{ status: 200, error: 'refused' }, true],
  ])('isError(%o) is %s', (side, expected) => {
    expect(isError(side)).toBe(expected)
  })

  it.each([
    // 1..10: p50 rank ⌈5⌉ = 5, p90 rank 9, p99 rank ⌈9.9⌉ = 10, p0 rank 1 (the minimum)
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5, 5],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, 9],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99, 10],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0, 1],
    // ⌈2.1⌉ = 3: the rank rounds up, never to the nearest
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.21, 3],
    [[42], 0.5, 42],
  ])('nearestRank(%j, %d) = %d', (values, q, expected) => {
    expect(nearestRank(values, q)).toBe(expected)
  })

  it('keeps every value up to its capacity, then a seeded sample', () => {
    const r = new Reservoir(100)
    for (let i = 100; i >= 1; i--) r.add(i)
    expect(r.exact).toBe(true)
    expect(r.quantile(0.5)).toBe(50)
    expect(r.quantile(0.99)).toBe(99)
    for (let i = 101; i <= 10_000; i++) r.add(i)
    expect(r.exact).toBe(false)
    expect(r.count).toBe(10_000)
    expect(r.mean).toBe(5000.5)
    // The same values in the same order give the same sample.
    const again = new Reservoir(100)
    for (let i = 100; i >= 1; i--) again.add(i)
    for (let i = 101; i <= 10_000; i++) again.add(i)
    expect(again.quantile(0.5)).toBe(r.quantile(0.5))
    expect(r.quantile(0.5)).toBeGreaterThan(3000)
    expect(r.quantile(0.5)).toBeLessThan(7000)
  })

  it('ignores other record types and counts malformed predictions', () => {
    const acc = new ReportAccumulator()
    acc.add({ type: 'outcome', request_id: 'x' })
    acc.add({ type: 'prediction', route: 'r' })
    acc.add({ type: 'prediction', route: 'r', primary: { model: 'm' }, shadows: [{ status: 200 }] })
    acc.add({ type: 'prediction', route: 'r', primary: { model: 'm', status: 200, latency_ms: 1, error: null } })
    const res = acc.result()
    expect(res.records).toEqual({ predictions: 1, other: 1, invalid: 2 })
    expect(res.routes[0]).toMatchObject({ route: 'r', requests: 1, from: null, to: null, pairs: [] })
  })

  it('reads the fixture file unchanged', async () => {
    // Guards the hand computation above against edits to the fixture.
    const text = await readFile(SMALL, 'utf8')
    expect(text.split('\n')).toHaveLength(16)
    expect(text.endsWith('"latency_ms":4')).toBe(true)
  })
})
