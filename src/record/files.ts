import { readdir, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** The path of the `n`-th rotated sibling of `base` (`predictions.jsonl.1` is the newest). */
export function rotatedPath (base: string, n: number): string {
  return `${base}.${n}`
}

function isNotFound (err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT'
}

/** Rotated generations of `base` present on disk, as `[generation, path]`, highest (oldest) first. */
async function listRotated (base: string): Promise<Array<[number, string]>> {
  const dir = dirname(base)
  const prefix = `${basename(base)}.`
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return []
    throw err
  }
  const found: Array<[number, string]> = []
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const suffix = name.slice(prefix.length)
    // Only `.1`, `.2`, …: leaves `.tmp`, `.gz` or `.01` written by other tools alone.
    if (!/^[1-9][0-9]*$/.test(suffix)) continue
    found.push([Number(suffix), join(dir, name)])
  }
  return found.sort((a, b) => b[0] - a[0])
}

/**
 * Lists `path` and its rotated siblings that exist, oldest first (`.5` … `.1`, then `path`),
 * the order in which their records were written.
 */
export async function recordFiles (path: string): Promise<string[]> {
  const files = (await listRotated(path)).map(([, p]) => p)
  try {
    const s = await stat(path)
    if (s.isFile()) files.push(path)
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
  return files
}

async function unlinkIfExists (path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
}

async function renameIfExists (from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
}

/**
 * Shifts `base` → `base.1` → `base.2` … and deletes generations above `keep`
 * (including any left by an earlier run with a larger `keep`). With `keep` 0 the base is deleted.
 * The caller has closed its handle on `base`.
 */
export async function rotateFiles (base: string, keep: number): Promise<void> {
  // Highest first, so each rename lands on a name already vacated; gaps stay gaps.
  for (const [n, p] of await listRotated(base)) {
    if (n >= keep) await unlinkIfExists(p)
    else await renameIfExists(p, rotatedPath(base, n + 1))
  }
  if (keep === 0) await unlinkIfExists(base)
  else await renameIfExists(base, rotatedPath(base, 1))
}
