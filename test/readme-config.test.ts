// The README's config reference and the bundled example say what the code does: both compile,
// and every key either of them writes has a row in the reference table.
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import yaml from 'js-yaml'
import { compile } from '../src/plan/index.js'

const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
const reference = readme.slice(readme.indexOf('## Config reference'), readme.indexOf('## Assignment: the formula'))
const exampleYaml = /```yaml\n([\s\S]*?)```/.exec(reference)?.[1] ?? ''
const bundled = await readFile(new URL('../config/router.yaml', import.meta.url), 'utf8')

/** Key paths as the table writes them: `limits.body_timeout_ms`, `routes[].split`, `models.NAME.url`. */
function keyPaths(value: unknown, prefix: string, out: Set<string>): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) keyPaths(item, `${prefix}[]`, out)
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const key = prefix === 'models' ? 'models.NAME' : prefix === '' ? k : `${prefix}.${k}`
      // A mapping is documented through its keys; a list or a value by its own row.
      const isMapping = v !== null && typeof v === 'object' && !Array.isArray(v)
      if (prefix !== 'models' && !isMapping) out.add(key)
      keyPaths(v, key, out)
    }
  }
  return out
}

describe('the config reference', () => {
  it.each([['the README example', exampleYaml], ['config/router.yaml', bundled]])('%s compiles', (_name, text) => {
    const r = compile(text, 'example.yaml')
    expect(r.ok ? [] : r.problems).toEqual([])
  })

  it.each([['the README example', exampleYaml], ['config/router.yaml', bundled]])('documents every key %s uses', (_name, text) => {
    // A key is documented by its own row or by a row of a list it is an entry of (`routes[].split`).
    const documented = (k: string): boolean => {
      for (let p = k; p !== ''; p = p.includes('[]') ? p.slice(0, p.lastIndexOf('[]')) : '') {
        if (reference.includes(`\`${p}\``)) return true
      }
      return false
    }
    const undocumented = [...keyPaths(yaml.load(text), '', new Set())].filter((k) => !documented(k))
    expect(undocumented).toEqual([])
  })
})
