import { appendFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { EnvelopeFactory, type Envelope } from '../src/record/envelope.js'
import { Spool, SpoolLockedError } from '../src/record/spool.js'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'modelsplit-spool-'))
  dirs.push(d)
  return d
}

const factory = new EnvelopeFactory()
function envs(from: number, n: number): Envelope[] {
  return Array.from({ length: n }, (_, i) => factory.make({ type: 'prediction', ts: '2026-01-01T00:00:00.000Z', request_id: `r${from + i}`, route: 'a', note: 'tab\there\nnewline' }) as Envelope)
}
async function drain(spool: Spool, maxBytes = 1 << 20): Promise<string[]> {
  const out: string[] = []
  for (let r = await spool.read(maxBytes, Infinity); r !== undefined; r = await spool.read(maxBytes, Infinity)) {
    out.push(...r.envelopes.map((e) => e.key ?? ''))
    await spool.ack(r)
  }
  return out
}

describe('Spool', () => {
  it('gives back what was appended, in order, with every field, across segments', async () => {
    const dir = await tempDir()
    const spool = await Spool.open(dir, { segmentBytes: 2000 })
    const batch = envs(0, 50)
    await spool.append(batch.slice(0, 20))
    await spool.append(batch.slice(20))
    expect((await readdir(dir)).filter((n) => n.endsWith('.spool')).length).toBeGreaterThan(1)
    const first = await spool.read(1 << 20, 3)
    expect(first?.envelopes).toEqual(batch.slice(0, 3).map((e) => ({ ...e, bytes: expect.any(Number) })))
    expect(await drain(spool, 500)).toEqual(batch.map((e) => e.key))
    expect(spool.bytes).toBe(0)
    await spool.close()
  })

  it('keeps what was not acknowledged for the next open, and puts a prepended batch first', async () => {
    const dir = await tempDir()
    let spool = await Spool.open(dir, { segmentBytes: 1 << 20 })
    await spool.append(envs(0, 10))
    const r = await spool.read(1 << 20, 4)
    await spool.ack(r as NonNullable<typeof r>)
    await spool.prepend(envs(100, 2))
    await spool.close()
    spool = await Spool.open(dir, { segmentBytes: 1 << 20 })
    expect(await drain(spool)).toEqual(['r100', 'r101', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9'])
    await spool.close()
    expect((await readdir(dir)).filter((n) => n.endsWith('.spool'))).toEqual([])
  })

  it('skips a line cut short by a crash and counts it', async () => {
    const dir = await tempDir()
    let spool = await Spool.open(dir, { segmentBytes: 1 << 20 })
    await spool.append(envs(0, 3))
    await spool.close()
    const seg = (await readdir(dir)).find((n) => n.endsWith('.spool')) as string
    await appendFile(join(dir, seg), 'id\tprediction\t"r9"\t2026\t{"type":"predic')
    let corrupt = 0
    spool = await Spool.open(dir, { segmentBytes: 1 << 20, onCorrupt: (n) => { corrupt += n } })
    expect(await drain(spool)).toEqual(['r0', 'r1', 'r2'])
    expect(corrupt).toBe(1)
    await spool.close()
  })

  it('belongs to one process at a time; a dead holder\'s lock is taken over', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'lock'), '1\n') // pid 1 is alive
    await expect(Spool.open(dir, { segmentBytes: 1 << 20 })).rejects.toBeInstanceOf(SpoolLockedError)
    await writeFile(join(dir, 'lock'), '999999999\n')
    const spool = await Spool.open(dir, { segmentBytes: 1 << 20 })
    await expect(Spool.open(dir, { segmentBytes: 1 << 20 })).rejects.toBeInstanceOf(SpoolLockedError)
    await spool.close()
  })
})
