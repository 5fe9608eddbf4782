// Comparing two language-model answers, cheapest layer first, stopping at the first that decides:
// exact bytes, normalised text, then structure (JSON answers, tool calls). What none decides is
// left `undecided` for a judge. Pure.

/** What is compared of an answer: its text and its tool calls (name and JSON arguments text). */
export interface TextAnswer {
  readonly text: string
  readonly toolCalls: readonly { readonly name: string; readonly arguments: string }[]
}

export type TextLayer = 'exact' | 'normalised' | 'structured' | 'undecided'

export interface TextComparison {
  /** null: no layer decided (the texts differ, and neither is structured). */
  readonly agree: boolean | null
  readonly layer: TextLayer
}

/**
 * Text as a reader sees it: Unicode NFKC (full-width and compatibility forms folded), case
 * folded, runs of whitespace one space, trimmed.
 */
export function normaliseText(s: string): string {
  return s.normalize('NFKC').toLowerCase().replace(/\s+/gu, ' ').trim()
}

/** A JSON value written with sorted keys, so equal structures give equal strings. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** The JSON an answer's text holds (bare, or in one ``` fence), or undefined. */
function jsonOf(text: string): unknown {
  const t = text.trim()
  const fenced = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/.exec(t)
  const body = fenced === null ? t : (fenced[1] as string)
  const c = body.charCodeAt(0)
  if (c !== 123 && c !== 91) return undefined // only objects and arrays count as structured answers
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

function argsOf(s: string): string {
  try {
    return canonical(JSON.parse(s))
  } catch {
    return normaliseText(s)
  }
}

function sameCalls(a: TextAnswer, b: TextAnswer, key: (s: string) => string): boolean {
  if (a.toolCalls.length !== b.toolCalls.length) return false
  for (let i = 0; i < a.toolCalls.length; i++) {
    const x = a.toolCalls[i] as TextAnswer['toolCalls'][number]
    const y = b.toolCalls[i] as TextAnswer['toolCalls'][number]
    if (x.name !== y.name || key(x.arguments) !== key(y.arguments)) return false
  }
  return true
}

const same = (s: string): string => s

/** The cascade: exact, normalised, structured; else undecided. */
export function compareText(a: TextAnswer, b: TextAnswer): TextComparison {
  if (a.text === b.text && sameCalls(a, b, same)) return { agree: true, layer: 'exact' }
  if (normaliseText(a.text) === normaliseText(b.text) && sameCalls(a, b, normaliseText)) return { agree: true, layer: 'normalised' }
  // Tool calls decide on their own: the same functions with the same arguments, field by field.
  if (a.toolCalls.length > 0 || b.toolCalls.length > 0) return { agree: sameCalls(a, b, argsOf), layer: 'structured' }
  const ja = jsonOf(a.text)
  const jb = jsonOf(b.text)
  if (ja !== undefined && jb !== undefined) return { agree: canonical(ja) === canonical(jb), layer: 'structured' }
  return { agree: null, layer: 'undecided' }
}
