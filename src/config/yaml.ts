import yaml from 'js-yaml'

/** Lines of the children of one mapping or sequence: key (or index) → 1-based line. */
type LineMap = Map<string | number, number>

export interface ParsedYaml {
  readonly value: unknown
  /** Finds the 1-based line of a key path such as ['routes', 0, 'split', 1, 'weight']. */
  lineOf(path: readonly (string | number)[]): number | undefined
}

export class YamlSyntaxError extends Error {
  readonly line: number | undefined
  constructor(message: string, line: number | undefined, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'YamlSyntaxError'
    this.line = line
  }
}

interface Frame {
  readonly openLine: number
  readonly children: Entry[]
}
interface Entry {
  readonly line: number
  readonly result: unknown
}

/**
 * Parses YAML and remembers where each key and list item starts, using js-yaml's `listener`
 * (the parser reports every node it opens and closes), so validation errors can name a line.
 */
export function parseYaml(text: string, filename: string): ParsedYaml {
  const lines = new WeakMap<object, LineMap>()
  const stack: Frame[] = [{ openLine: 0, children: [] }]
  const listener = (event: 'open' | 'close', state: { line: number; result: unknown; kind?: string | null }): void => {
    if (event === 'open') {
      stack.push({ openLine: state.line, children: [] })
      return
    }
    const frame = stack.pop()
    if (frame === undefined) return
    const result = state.result
    let line: number
    const first = frame.children[0]
    if (frame.children.length === 1 && first !== undefined && first.result === result) {
      // js-yaml wraps some nodes (block sequence items, flow mappings) in a second open/close
      // of the same node: pass the inner node's position through.
      line = first.line
    } else if (result !== null && typeof result === 'object') {
      const map: LineMap = new Map()
      if (Array.isArray(result)) {
        frame.children.forEach((c, i) => map.set(i, c.line))
      } else {
        // A mapping's children close in pairs: key, value. The key's line is where users look.
        for (let i = 0; i + 1 < frame.children.length; i += 2) {
          const key = frame.children[i]
          if (key !== undefined) map.set(String(key.result), key.line)
        }
      }
      lines.set(result, map)
      line = first?.line ?? frame.openLine + 1
    } else {
      // A scalar closes on the line it ends on, which is where it is for any one-line value.
      line = state.line + 1
    }
    stack[stack.length - 1]?.children.push({ line, result })
  }

  let value: unknown
  try {
    value = yaml.load(text, { filename, listener, json: false })
  } catch (err) {
    const e = err as { mark?: { line?: number }; reason?: string; message?: string }
    const line = e.mark?.line === undefined ? undefined : e.mark.line + 1
    throw new YamlSyntaxError(`YAML syntax error: ${e.reason ?? e.message ?? String(err)}`, line, { cause: err })
  }

  return {
    value,
    lineOf(path) {
      let node: unknown = value
      let found: number | undefined
      for (const key of path) {
        if (node === null || typeof node !== 'object') break
        const line = lines.get(node)?.get(typeof key === 'number' && !Array.isArray(node) ? String(key) : key)
        if (line === undefined) break
        found = line
        node = (node as Record<string | number, unknown>)[key]
      }
      return found
    },
  }
}
