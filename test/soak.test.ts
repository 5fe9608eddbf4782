import { execFile } from 'node:child_process'
import type { ServerResponse } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { Pool } from 'undici'
import { parseMetrics } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { readRecords, recordFiles } from '../src/record/index.js'

/**
 * The soak test of issue 9: predictions and feedback from several concurrent clients through a real
 * router until at least 200 000 records are written (150 000 predictions, 50 000 outcomes), with a
 * record file small enough to rotate many times. Then every 2xx prediction's request id and every
 * accepted outcome must be in the files exactly once, nothing dropped, and `modelsplit report
 * --config` over the files must give the numbers `/admin/experiments` gives, to 1e-9.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist/cli/main.js')

const PREDICTIONS = 150_000
const CLIENTS = 8
const PER_CLIENT = PREDICTIONS / CLIENTS
/** Outcomes pending per client before it posts them as one NDJSON batch. */
const BATCH = 400
const USERS = 20_000
/** Small enough that the 200 000 records rotate a dozen times, large enough that `KEEP` keeps them all. */
const MAX_BYTES = 4 * 1024 * 1024
const KEEP = 60

const config = (a: string, b: string, c: string) => `recording: { path: ./rec/records.jsonl, max_bytes: ${MAX_BYTES}, keep: ${KEEP}, include_inputs: true }
models:
  a: { url: "${a}" }
  b: { url: "${b}" }
  c: { url: "${c}" }
routes:
  - name: churn
    path: /models/churn
    record: true
    split: [{ model: a, weight: 40 }, { model: b, weight: 30 }, { model: c, weight: 30 }]
    metrics:
      - { name: converted, type: binary, mde: 0.02 }
      - { name: revenue, type: continuous }
`

/** A deterministic pseudo-random number in [0, 1) for `i` (a 32-bit integer hash). */
function unit(i: number): number {
  let x = (i + 0x9e3779b9) | 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  x ^= x >>> 16
  return (x >>> 0) / 2 ** 32
}

interface Outcome { request_id: string; metric: 'converted' | 'revenue'; value: number }

/**
 * Outcomes for the prediction numbered `i`: `converted` for every 4th (37 500), `revenue` for every
 * 12th (12 500), so 50 000 in all. Revenue sits near 1e6 with a small spread: the case where
 * variance from raw sums of squares loses precision.
 */
function outcomesFor(i: number, requestId: string, model: string): Outcome[] {
  const out: Outcome[] = []
  if (i % 4 === 0) {
    const rate = model === 'b' ? 0.27 : model === 'c' ? 0.23 : 0.25
    out.push({ request_id: requestId, metric: 'converted', value: unit(i) < rate ? 1 : 0 })
  }
  if (i % 12 === 0) {
    const shift = model === 'b' ? 0.05 : model === 'c' ? -0.02 : 0
    out.push({ request_id: requestId, metric: 'revenue', value: 1e6 + shift + Math.round((unit(i + 7) - 0.5) * 4000) / 8000 })
  }
  return out
}

/** `actual` equals `expected` with every number within 1e-9 relative (absolute near 0); the rest exactly. Returns the paths that differ. */
function differences(actual: unknown, expected: unknown, at = '', out: string[] = [], worst = { rel: 0 }): string[] {
  if (typeof expected === 'number' && typeof actual === 'number') {
    if (Number.isNaN(expected) && Number.isNaN(actual)) return out
    if (expected === actual) return out
    const rel = Math.abs(actual - expected) / Math.max(Math.abs(expected), Math.abs(actual), 1e-300)
    worst.rel = Math.max(worst.rel, Math.abs(expected) < 1e-12 ? Math.abs(actual - expected) : rel)
    if (Math.abs(actual - expected) > 1e-9 * Math.max(Math.abs(expected), 1e-12) && Math.abs(actual - expected) > 1e-15) out.push(`${at}: ${actual} != ${expected}`)
    return out
  }
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (actual.length !== expected.length) out.push(`${at}: length ${actual.length} != ${expected.length}`)
    else expected.forEach((e, i) => differences(actual[i], e, `${at}[${i}]`, out, worst))
    return out
  }
  if (typeof expected === 'object' && expected !== null && typeof actual === 'object' && actual !== null && !Array.isArray(actual) && !Array.isArray(expected)) {
    const ek = Object.keys(expected).sort()
    const ak = Object.keys(actual).sort()
    if (ek.join() !== ak.join()) out.push(`${at}: keys ${ak.join()} != ${ek.join()}`)
    for (const k of ek) differences((actual as Record<string, unknown>)[k], (expected as Record<string, unknown>)[k], `${at}.${k}`, out, worst)
    return out
  }
  if (actual !== expected) out.push(`${at}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`)
  return out
}

function runReport(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'report', ...args], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`modelsplit report failed: ${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

describe('soak: predictions and feedback from several clients', () => {
  it(`${PREDICTIONS} predictions and ${PREDICTIONS / 3} outcomes: every 2xx prediction and every accepted outcome is in the files exactly once, and the report equals /admin/experiments to 1e-9`, async () => {
    const started = performance.now()
    const answer = (name: string) => {
      const body = JSON.stringify({ predictions: [name === 'b' ? 0.7 : name === 'c' ? 0.6 : 0.5] })
      return (_req: unknown, res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      }
    }
    const ups = await Promise.all(['a', 'b', 'c'].map((m) => upstream(answer(m))))
    const r = await router(config(ups[0]!.url, ups[1]!.url, ups[2]!.url))
    const base = join(dirname(r.configFile), 'rec', 'records.jsonl')
    const pool = new Pool(r.url, { connections: CLIENTS + 2, pipelining: 1 })

    // What the clients were told: request id → status; outcome key → value, for accepted batches only.
    const statuses = new Map<string, number>()
    const accepted = new Map<string, number>()
    let acceptedCount = 0
    let feedbackBatches = 0
    let feedback503 = 0

    async function postFeedback(batch: Outcome[]): Promise<void> {
      const body = batch.map((o) => JSON.stringify({ route: 'churn', ...o })).join('\n') + '\n'
      for (let attempt = 0; ; attempt++) {
        const res = await pool.request({ method: 'POST', path: '/feedback', headers: { 'content-type': 'application/x-ndjson' }, body })
        const text = await res.body.text()
        if (res.statusCode === 503 && attempt < 20) {
          // Nothing was applied: send the same batch again, as a client should.
          feedback503++
          await new Promise((resolve) => setTimeout(resolve, 100))
          continue
        }
        expect(res.statusCode, text).toBe(200)
        const answer = JSON.parse(text) as { accepted: number; attributed_by: { request_id: number } }
        expect(answer.accepted).toBe(batch.length)
        expect(answer.attributed_by.request_id).toBe(batch.length)
        feedbackBatches++
        acceptedCount += answer.accepted
        for (const o of batch) {
          const key = `${o.request_id}\u0000${o.metric}`
          expect(accepted.has(key)).toBe(false)
          accepted.set(key, o.value)
        }
        return
      }
    }

    async function client(c: number): Promise<void> {
      let pending: Outcome[] = []
      for (let n = 0; n < PER_CLIENT; n++) {
        const i = c * PER_CLIENT + n
        const requestId = `soak-${c}-${n}`
        const res = await pool.request({
          method: 'POST',
          path: '/models/churn/predict',
          headers: { 'content-type': 'application/json', 'x-user-id': `user-${Math.floor(unit(i + 1) * USERS)}`, 'x-request-id': requestId },
          body: `{"instances":[[${i},${c},${n % 97}]]}`,
        })
        await res.body.dump()
        statuses.set(requestId, res.statusCode)
        if (res.statusCode < 200 || res.statusCode > 299) continue
        expect(res.headers['x-request-id']).toBe(requestId)
        pending.push(...outcomesFor(i, requestId, res.headers['x-modelsplit-model'] as string))
        if (pending.length >= BATCH) {
          const batch = pending
          pending = []
          await postFeedback(batch)
        }
      }
      if (pending.length > 0) await postFeedback(pending)
    }

    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))
    const trafficSeconds = (performance.now() - started) / 1000
    await pool.close()
    await r.router.flush()

    const ok = [...statuses].filter(([, s]) => s >= 200 && s <= 299).map(([id]) => id)
    expect(statuses.size).toBe(PREDICTIONS)
    expect(ok.length).toBe(PREDICTIONS)
    expect(acceptedCount).toBe(PREDICTIONS / 3)

    const m = parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())
    expect(m.get('modelsplit_records_total{result="dropped"}') ?? 0).toBe(0)
    expect(m.get('modelsplit_records_total{result="written"}')).toBe(PREDICTIONS + acceptedCount)

    // Every file the rotation left, oldest first: it rotated, and rotated nothing away.
    const files = await recordFiles(base)
    expect(files.length).toBeGreaterThan(5)
    expect(files.length).toBeLessThan(KEEP + 1)
    const seenPredictions = new Map<string, number>()
    const seenOutcomes = new Map<string, { count: number; value: unknown }>()
    const reader = readRecords(files)
    let total = 0
    for await (const rec of reader) {
      total++
      if (rec.type === 'prediction') {
        const id = rec.request_id as string
        seenPredictions.set(id, (seenPredictions.get(id) ?? 0) + 1)
      } else if (rec.type === 'outcome') {
        expect(rec.attributed_by).toBe('request_id')
        const key = `${rec.request_id as string}\u0000${rec.metric as string}`
        const seen = seenOutcomes.get(key)
        seenOutcomes.set(key, { count: (seen?.count ?? 0) + 1, value: rec.value })
      }
    }
    expect(reader.skipped).toBe(0)
    expect(total).toBeGreaterThanOrEqual(200_000)
    expect(total).toBe(PREDICTIONS + acceptedCount)

    const missingPredictions = ok.filter((id) => seenPredictions.get(id) === undefined)
    const duplicatePredictions = [...seenPredictions].filter(([, n]) => n !== 1).map(([id]) => id)
    expect(missingPredictions.slice(0, 10)).toEqual([])
    expect(duplicatePredictions.slice(0, 10)).toEqual([])
    expect(seenPredictions.size).toBe(PREDICTIONS)
    const missingOutcomes = [...accepted.keys()].filter((k) => !seenOutcomes.has(k))
    const wrongOutcomes = [...seenOutcomes].filter(([k, s]) => s.count !== 1 || accepted.get(k) !== s.value).map(([k, s]) => `${k.replace('\u0000', ' ')} ×${s.count} = ${String(s.value)}`)
    expect(missingOutcomes.slice(0, 10)).toEqual([])
    expect(wrongOutcomes.slice(0, 10)).toEqual([])
    expect(seenOutcomes.size).toBe(acceptedCount)

    // The offline report over the rotated set equals the live numbers.
    const live = await (await fetch(`${r.adminUrl}/admin/experiments`)).json() as { routes: Record<string, unknown>[] }
    const offline = JSON.parse(await runReport(['--json', '--config', r.configFile, base])) as { experiments: Record<string, unknown>[] }
    expect(live.routes).toHaveLength(1)
    const liveStats = live.routes.map(({ scope: _scope, ...rest }) => rest)
    const worst = { rel: 0 }
    expect(differences(offline.experiments, liveStats, 'experiments', [], worst)).toEqual([])
    // Sanity: the numbers compared are the ones of this run.
    const churn = liveStats[0] as { metrics: Record<string, { models: Record<string, { assignments: number; outcomes: number }> }> }
    const arms = Object.values(churn.metrics.converted!.models)
    expect(arms.reduce((s, a) => s + a.assignments, 0)).toBe(PREDICTIONS)
    expect(arms.reduce((s, a) => s + a.outcomes, 0)).toBe(PREDICTIONS / 4)

    const seconds = (performance.now() - started) / 1000
    console.log(`soak: ${total} records (${PREDICTIONS} predictions, ${acceptedCount} outcomes in ${feedbackBatches} batches, ${feedback503} answered 503 and resent) in ${files.length} files; traffic ${trafficSeconds.toFixed(1)} s, all ${seconds.toFixed(1)} s; report vs live: worst relative difference ${worst.rel.toExponential(2)}`)
  }, 180_000)
})
