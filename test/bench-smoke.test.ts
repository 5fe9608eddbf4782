import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface CaseResult {
  median: { rps: number; p50: number; p90: number; p99: number; errors: number }
  runs: unknown[]
}

interface BenchResult {
  meta: { cpus: number; node: string; nginx: string | null }
  cases: Record<string, CaseResult>
  memory: { requests: number; pass: boolean; base: { rss: number; heap: number }; peak: { rss: number }; end: { rss: number }; load: { errors: number } }
  targets: { target: string; measured: string; met: boolean }[]
}

function runBench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bench/run.mjs', ...args], { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

// The benchmark itself is not part of the suite; this short run only keeps the script from rotting.
describe('npm run bench -- --smoke', () => {
  it('runs direct and modelsplit split for a second and a tiny memory case, and writes the report', async () => {
    const out = await mkdtemp(join(tmpdir(), 'modelsplit-bench-smoke-'))
    onTestFinished(() => rm(out, { recursive: true, force: true }))

    const { code, stdout, stderr } = await runBench(['--smoke', '--out', out])
    expect(code, stderr).toBe(0)
    expect(stdout).toContain('| ms-split |')

    const result = JSON.parse(await readFile(join(out, 'bench.json'), 'utf8')) as BenchResult
    expect(Object.keys(result.cases)).toEqual(['direct', 'ms-split'])
    for (const c of Object.values(result.cases)) {
      expect(c.runs).toHaveLength(1)
      expect(c.median.rps).toBeGreaterThan(0)
      expect(c.median.errors).toBe(0)
      expect(c.median.p50).toBeGreaterThan(0)
      expect(c.median.p50).toBeLessThanOrEqual(c.median.p90)
      expect(c.median.p90).toBeLessThanOrEqual(c.median.p99)
    }
    expect(result.meta.cpus).toBeGreaterThan(0)
    expect(result.meta.node).toBe(process.version)
    expect(result.meta.nginx).toBeNull()
    expect(result.memory.requests).toBe(3000)
    expect(result.memory.load.errors).toBe(0)
    expect(result.memory.base.rss).toBeGreaterThan(0)
    expect(result.memory.peak.rss).toBeGreaterThanOrEqual(result.memory.base.rss)
    expect(result.memory.pass).toBe(true)
    expect(result.targets.map((t) => t.target)).toEqual([expect.stringMatching(/^memory: /)])
    await expect(readFile(join(out, 'bench.md'), 'utf8')).resolves.toContain('## Memory')
  }, 60_000)

  it('prints its options with --help and rejects an unknown case', async () => {
    const help = await runBench(['--help'])
    expect(help.code).toBe(0)
    for (const option of ['--duration', '--connections', '--repeats', '--rate', '--memory-requests', '--cases', '--no-nginx', '--smoke', '--out']) {
      expect(help.stdout).toContain(option)
    }
    const bad = await runBench(['--cases', 'nope'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('unknown case nope')
  })
})
