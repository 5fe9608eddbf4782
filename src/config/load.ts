import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { formatPath } from './check.js'
import { validateConfig } from './schema.js'
import type { LoadedConfig } from './types.js'
import { parseYaml, YamlSyntaxError } from './yaml.js'

/** Parses and validates config text; throws one ConfigError listing every problem with its line. */
export function parseConfig(text: string, file: string): LoadedConfig {
  let parsed
  try {
    parsed = parseYaml(text, file)
  } catch (err) {
    if (err instanceof YamlSyntaxError) {
      throw new ConfigError([{ file, line: err.line, path: '', message: err.message }], { cause: err })
    }
    throw err
  }
  const { config, problems } = validateConfig(parsed.value)
  if (config === undefined) {
    const located: ConfigProblem[] = problems.map((p) => ({ file, line: parsed.lineOf(p.path), path: formatPath(p.path), message: p.message }))
    throw new ConfigError(located)
  }
  // Relative paths in the file are relative to the file, as in Prometheus's config, so the
  // router behaves the same whatever directory it was started from.
  const resolved = { ...config, recording: { ...config.recording, path: resolve(dirname(file), config.recording.path) } }
  return deepFreeze({ config: resolved, file, sha256: createHash('sha256').update(text).digest('hex') })
}

/** Reads, parses and validates a config file. */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError([{ file, path: '', message: `cannot read the file (${code ?? (err as Error).message})` }], { cause: err })
  }
  return parseConfig(text, file)
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
