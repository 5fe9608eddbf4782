import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { runCli } from '../src/cli/run.js'
import { lookSchedule } from '../src/report/index.js'
import { FIRST_LOOK, nextLook } from '../src/experiment/index.js'

// The numbers of `report --totals` are checked against `report --config` over the same records,
// reduced by DuckDB, in clients/python/tests/test_at_scale_duckdb.py; here, what a user sees when
// the command is given the wrong thing.

const CONFIG = `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "http://127.0.0.1:9001" }
  b: { url: "http://127.0.0.1:9002" }
routes:
  - name: "it's"
    path: /r
    split:
      - { model: a, weight: 1 }
      - { model: b, weight: 3 }
    metrics:
      - { name: clicked, type: binary }
  - name: plain
    path: /p
    split:
      - { model: a, weight: 1 }
`

function capture(): PassThrough & { text: () => string } {
  let text = ''
  const s = new PassThrough() as PassThrough & { text: () => string }
  s.on('data', (c: Buffer) => { text += c.toString() })
  s.text = () => text
  return s
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = capture()
  const err = capture()
  const code = await runCli(args, { out, err })
  return { code, out: out.text(), err: err.text() }
}

describe('report --sql and --totals', () => {
  let dir: string
  let config: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ms-totals-'))
    config = join(dir, 'router.yaml')
    await writeFile(config, CONFIG)
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('prints one query with the routes that have metrics, their arms at their shares, quoted', async () => {
    const { code, out } = await cli(['report', '--config', config, '--sql', 'duckdb'])
    expect(code).toBe(0)
    // includes(), not toContain: a failure would print the whole query.
    expect(out.includes("ms_routes AS (SELECT * FROM (VALUES ('it''s', 64, true)) AS t(route, buckets, by_user))")).toBe(true)
    expect(out.includes("('it''s', 0, 'a', 0.25), ('it''s', 1, 'b', 0.75)")).toBe(true)
    expect(out.includes("'plain'")).toBe(false)
    expect(out.includes(';')).toBe(false)
    const ch = await cli(['report', '--config', config, '--sql', 'clickhouse'])
    expect(ch.code).toBe(0)
    expect(ch.out.includes("values('route String, buckets Int64, by_user Bool', ('it\\'s', 64, true))")).toBe(true)
    expect(ch.out.trimEnd().endsWith('SETTINGS join_use_nulls = 1')).toBe(true)
    const spark = await cli(['report', '--config', config, '--sql', 'spark'])
    expect(spark.code).toBe(0)
    expect(spark.out.includes("FROM VALUES ('it\\'s', 64, true))")).toBe(true)
    expect(spark.out.includes('AS `offset`')).toBe(true)
  })

  it('refuses what it cannot do, saying what to give instead', async () => {
    expect(await cli(['report', '--sql', 'duckdb'])).toMatchObject({ code: 2, err: expect.stringContaining('report --sql needs --config FILE') })
    const bad = await cli(['report', '--config', config, '--sql', 'oracle'])
    expect(bad.code).toBe(2)
    expect(bad.err).toContain('--sql oracle: not a dialect this build writes; use one of duckdb, clickhouse, spark')
    expect((await cli(['report', '--config', config, '--sql', 'duckdb', '--totals', '-'])).code).toBe(2)
    expect((await cli(['report', '--config', config, '--totals', join(dir, 'x'), join(dir, 'records.jsonl')])).code).toBe(2)
  })

  it('--clickhouse: refuses a URL that is not HTTP, and names a server that does not answer', async () => {
    const bad = await cli(['report', '--config', config, '--clickhouse', 'clickhouse:9000'])
    expect(bad.code).toBe(2)
    expect(bad.err).toContain('--clickhouse clickhouse:9000: not an HTTP URL')
    // A port nobody listens on: the OS refuses at once.
    const net = await import('node:net')
    const probe = net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as { port: number }).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const down = await cli(['report', '--config', config, '--clickhouse', `http://127.0.0.1:${port}`])
    expect(down.code).toBe(1)
    expect(down.err).toContain(`modelsplit report: clickhouse http://127.0.0.1:${port}: `)
    expect(down.err).toContain('ECONNREFUSED')
  })

  it('names the line of a row it cannot read', async () => {
    const rows = join(dir, 'rows.jsonl')
    await writeFile(rows, '{"kind":"requests","route":"it\'s","arm":0,"n":3}\n{"kind":"cells","route":"r"}\n')
    const r = await cli(['report', '--config', config, '--totals', rows, '--json'])
    expect(r.code).toBe(1)
    expect(r.err).toContain(`${rows}:2: kind "cells" is not one of requests, period, users, cell, totals, route`)
    await writeFile(rows, '{"kind":"cell","route":"r","n":"3"}\n')
    expect((await cli(['report', '--config', config, '--totals', rows])).err).toContain(`${rows}:1: n is not a finite number`)
    await writeFile(rows, 'SELECT\n')
    expect((await cli(['report', '--config', config, '--totals', rows])).err).toContain(`${rows}:1: not JSON`)
    expect((await cli(['report', '--config', config, '--totals', join(dir, 'missing')])).code).toBe(1)
  })

  it('reports a route no row names as collecting data, at the config weights', async () => {
    const rows = join(dir, 'rows.jsonl')
    await writeFile(rows, '')
    const r = await cli(['report', '--config', config, '--totals', rows, '--json'])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.out) as { totals_rows: number; experiments: { route: string; metrics: Record<string, { verdict: string; models: Record<string, { weight: number }> }> }[] }
    expect(doc.totals_rows).toBe(0)
    expect(doc.experiments.map((e) => e.route)).toEqual(["it's"])
    expect(doc.experiments[0]?.metrics.clicked?.verdict).toBe('collecting data')
    expect(doc.experiments[0]?.metrics.clicked?.models.b?.weight).toBe(0.75)
  })

  it('takes its looks where the live accumulator does', () => {
    const looks = lookSchedule(1e6)
    let n = FIRST_LOOK
    for (const l of looks) {
      expect(l).toBe(n)
      n = nextLook(n)
    }
    expect(n).toBeGreaterThan(1e6)
  })
})
