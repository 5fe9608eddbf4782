// Runs a part of `examples/demo.mjs` end to end on its bundled config, rewritten to free ports and
// a temporary directory, so that a demo running beside the tests does not collide with them.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, onTestFinished } from 'vitest'
import { compile } from '../../src/plan/index.js'
import { freePort } from './upstream.js'

const ROOT = join(import.meta.dirname, '..', '..')

/** A demo part: its flag, the config it runs on and the variable that points it at another one. */
export interface DemoPart {
  /** `rollout` or `llm`: the flag (`--rollout`), config/NAME.yaml and data/NAME/. */
  readonly name: 'rollout' | 'llm'
  /** The environment variable examples/demo.mjs reads the config's path from. */
  readonly env: string
}

/** config/NAME.yaml as shipped. */
export function bundledConfig(part: DemoPart): Promise<string> {
  return readFile(join(ROOT, `config/${part.name}.yaml`), 'utf8')
}

/** The bundled config compiles, and every line that sets a key carries a comment saying what it does. */
export function expectCompilesAndExplained(part: DemoPart, text: string): void {
  const file = `config/${part.name}.yaml`
  const r = compile(text, file)
  expect(r.ok ? [] : r.problems).toEqual([])
  const uncommented = text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#') && !l.includes('#'))
  expect(uncommented).toEqual([])
}

/**
 * The bundled config with free ports for those it ships with (listen and admin given as `port: N`,
 * the models as `127.0.0.1:N` in a URL), its records in a temporary directory (removed when the
 * test ends). Each replaced text must stand exactly once, so the test notices when the config
 * changes shape.
 */
export async function demoConfig(part: DemoPart, bundled: string, ports: { listen: number; admin: number; models: readonly number[] }): Promise<{ dir: string; config: string }> {
  const dir = await mkdtemp(join(tmpdir(), `modelsplit-demo-${part.name}-`))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  const replaceOnce = (text: string, from: string, to: string): string => {
    expect(text.split(from).length - 1, `"${from}" once in config/${part.name}.yaml`).toBe(1)
    return text.replace(from, to)
  }
  let text = replaceOnce(bundled, `port: ${ports.listen}`, `port: ${await freePort()}`)
  text = replaceOnce(text, `port: ${ports.admin}`, `port: ${await freePort()}`)
  for (const port of ports.models) text = replaceOnce(text, `127.0.0.1:${port}`, `127.0.0.1:${await freePort()}`)
  text = replaceOnce(text, `path: ../data/${part.name}/records.jsonl`, 'path: ./records.jsonl')
  const config = join(dir, `${part.name}.yaml`)
  await writeFile(config, text)
  return { dir, config }
}

/** `node examples/demo.mjs --NAME --once` on a config: its exit code and everything it printed. */
export function runDemo(part: DemoPart, config: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['examples/demo.mjs', `--${part.name}`, '--once'], {
      cwd: ROOT, env: { ...process.env, [part.env]: config }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 85_000,
    })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, out }))
  })
}

/** The demo's output as lines, and a finder of the first line matching `re` at or after `from` (asserted to exist). */
export function outputLines(out: string): { lines: string[]; at(re: RegExp, from?: number): number } {
  const lines = out.split('\n')
  const at = (re: RegExp, from = 0): number => {
    const i = lines.findIndex((l, k) => k >= from && re.test(l))
    expect(i, `${re} after line ${from} in:\n${out}`).toBeGreaterThanOrEqual(0)
    return i
  }
  return { lines, at }
}
