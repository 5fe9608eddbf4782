// Small typed readers for untrusted YAML values. Each reader records a problem (with its key
// path) instead of throwing, so one pass over the document reports everything that is wrong.

export type KeyPath = readonly (string | number)[]

export interface RawProblem {
  readonly path: KeyPath
  readonly message: string
}

/** Formats a key path the way users see it in the file: `routes[0].split[1].weight`. */
export function formatPath(path: KeyPath): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (/^[A-Za-z0-9_-]+$/.test(key)) out += out === '' ? key : `.${key}`
    else out += `[${JSON.stringify(key)}]`
  }
  return out
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return JSON.stringify(value)
  return String(value)
}

export class Checker {
  readonly problems: RawProblem[] = []

  add(path: KeyPath, message: string): void {
    this.problems.push({ path, message })
  }

  /** A mapping with only the listed keys; returns undefined (and records why) otherwise. */
  object(value: unknown, path: KeyPath, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.add(path, `must be a mapping with keys ${allowed.join(', ')}, got ${describe(value)}`)
      return undefined
    }
    const obj = value as Record<string, unknown>
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) this.add([...path, key], `unknown key; allowed keys here: ${allowed.join(', ')}`)
    }
    for (const key of required) {
      if (obj[key] === undefined || obj[key] === null) this.add([...path, key], 'is required')
    }
    return obj
  }

  string(value: unknown, path: KeyPath, fallback?: string): string | undefined {
    if (value === undefined || value === null) return fallback
    if (typeof value === 'string' && value !== '') return value
    this.add(path, `must be a non-empty string, got ${describe(value)}`)
    return undefined
  }

  boolean(value: unknown, path: KeyPath, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback
    if (typeof value === 'boolean') return value
    this.add(path, `must be true or false, got ${describe(value)}`)
    return fallback
  }

  number(value: unknown, path: KeyPath, opts: { min?: number; max?: number; integer?: boolean; fallback?: number }): number | undefined {
    if (value === undefined || value === null) return opts.fallback
    const { min, max, integer } = opts
    const ok = typeof value === 'number' && Number.isFinite(value) && (!integer || Number.isInteger(value)) &&
      (min === undefined || value >= min) && (max === undefined || value <= max)
    if (ok) return value
    const kind = integer ? 'an integer' : 'a number'
    const range = min !== undefined && max !== undefined ? ` from ${min} to ${max}` : min !== undefined ? ` >= ${min}` : max !== undefined ? ` <= ${max}` : ''
    this.add(path, `must be ${kind}${range}, got ${describe(value)}`)
    return undefined
  }

  oneOf<T extends string>(value: unknown, path: KeyPath, choices: readonly T[], fallback: T): T {
    if (value === undefined || value === null) return fallback
    if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T
    this.add(path, `must be one of ${choices.join(', ')}, got ${describe(value)}`)
    return fallback
  }

  list(value: unknown, path: KeyPath, what: string): readonly unknown[] | undefined {
    if (Array.isArray(value)) return value
    this.add(path, `must be a list of ${what}, got ${describe(value)}`)
    return undefined
  }
}
