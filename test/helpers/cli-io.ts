import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Io } from '../../src/cli/run.js'

/** An Io for runCli that keeps what the command prints, so a test can read stdout and stderr. */
export function captureIo(): { io: Io; out: () => string; err: () => string } {
  let out = ''
  let err = ''
  const sink = (append: (s: string) => void): NodeJS.WritableStream =>
    ({ write: (s: string | Uint8Array) => { append(typeof s === 'string' ? s : Buffer.from(s).toString('utf8')); return true } }) as unknown as NodeJS.WritableStream
  return { io: { out: sink((s) => { out += s }), err: sink((s) => { err += s }) }, out: () => out, err: () => err }
}

/** A temp directory with one config file in it; `remove()` deletes both. */
export async function tempConfigFile(text = ''): Promise<{ file: string; dir: string; write(text: string): Promise<void>; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-test-'))
  const file = join(dir, 'router.yaml')
  await writeFile(file, text)
  return { file, dir, write: (t) => writeFile(file, t), remove: () => rm(dir, { recursive: true, force: true }) }
}
