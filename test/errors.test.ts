// One catalogue: every code the router answers with is defined in src/errors.ts and documented.
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = new URL('..', import.meta.url).pathname

async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await sources(path))
    else if (entry.name.endsWith('.ts')) out.push(path)
  }
  return out
}

describe('the error catalogue', () => {
  it('defines in src/errors.ts, and documents in the README, every MS_ code the source uses', async () => {
    const catalogue = await readFile(join(root, 'src/errors.ts'), 'utf8')
    const readme = await readFile(join(root, 'README.md'), 'utf8')
    const defined = new Set([...catalogue.matchAll(/createError<'(MS_[A-Z_]+)'/g)].map((m) => m[1]))
    expect(defined.size).toBeGreaterThan(10)
    const used = new Set<string>()
    for (const file of await sources(join(root, 'src'))) {
      for (const m of (await readFile(file, 'utf8')).matchAll(/'(MS_[A-Z_]+)'/g)) used.add(m[1] as string)
    }
    // MS_CONFIG_INVALID is also ConfigError's code (a class of its own, for its problem list).
    expect([...used].filter((c) => !defined.has(c))).toEqual([])
    expect([...defined].filter((c) => !readme.includes(`\`${c}\``))).toEqual([])
  })
})
