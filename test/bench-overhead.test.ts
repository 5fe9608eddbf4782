import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface OverheadCase { p50: number; p99: number; rps: number; cpuUs: number | null; errors: number; addedP99?: number; cpuVsSplit?: number }

// The published overhead benchmark is not part of the suite; this one-second run keeps the script
// working and its report complete (numbers from it mean nothing).
describe('node bench/overhead.mjs', () => {
  it('measures split, shadow and record against a direct call and writes overhead.md and overhead.json', async () => {
    const out = await mkdtemp(join(tmpdir(), 'modelsplit-bench-overhead-'))
    onTestFinished(() => rm(out, { recursive: true, force: true }))
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, ['bench/overhead.mjs', '--duration', '1', '--repeats', '1', '--connections', '10', '--out', out], { cwd: ROOT, timeout: 55_000 }, (err, _stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr })
      })
    })
    expect(code, stderr).toBe(0)
    const result = JSON.parse(await readFile(join(out, 'overhead.json'), 'utf8')) as { cases: Record<string, OverheadCase> }
    expect(Object.keys(result.cases)).toEqual(['direct', 'split', 'shadow', 'record'])
    for (const [name, c] of Object.entries(result.cases)) {
      expect(c.errors, name).toBe(0)
      expect(c.rps, name).toBeGreaterThan(0)
      // Nothing answers faster than the mock's 20 ms.
      expect(c.p50, name).toBeGreaterThanOrEqual(20)
      if (name !== 'direct') {
        expect(Number.isFinite(c.addedP99), name).toBe(true)
        expect(c.cpuUs, name).toBeGreaterThan(0)
      }
    }
    const md = await readFile(join(out, 'overhead.md'), 'utf8')
    expect(md).toContain('| split |')
    expect(md).toMatch(/added p99 ms/)
  }, 60_000)
})
