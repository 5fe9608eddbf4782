import type { FeedbackProblem } from './feedback.js'

/** JSON nested deeper than this (counted from the body: array 1, outcome 2) is refused. An outcome is a flat object. */
export const MAX_NESTING = 16

/** One outcome's JSON may be at most this long; anything longer is not an outcome (and would stall JSON.parse). */
export const MAX_OUTCOME_CHARS = 64 * 1024

// Work between two yields to the event loop: short enough that predictions sharing the process
// wait at most about this long for their turn (per step of their way through the router) while a
// 10 MB batch is processed.
const SLICE_MS = 2
// Outcomes are parsed by JSON.parse in groups of about this many characters.
const PARSE_GROUP_CHARS = 32 * 1024
// The scanner checks the clock every this many steps.
const SCAN_STEPS = 16 * 1024

/** Cuts long work into slices that yield to the event loop, so other requests are served in between. */
export class Slicer {
  #since = performance.now()

  /** Starts a new slice: after an await of something else, which yielded already. */
  restart(): void {
    this.#since = performance.now()
  }

  /** Yields (setImmediate) once this slice has run SLICE_MS; otherwise returns at once. */
  async pause(): Promise<void> {
    if (performance.now() - this.#since < SLICE_MS) return
    await new Promise<void>((resolve) => setImmediate(resolve))
    this.#since = performance.now()
  }
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const LF = 0x0a

function isSpace(c: number): boolean {
  return c === 0x20 || c === LF || c === 0x0d || c === 0x09
}

function isDelimiter(c: number): boolean {
  return isSpace(c) || c === 0x2c || c === 0x5d || c === 0x7d || c === 0x5b || c === 0x7b || c === QUOTE || c === 0x3a
}

function problem(at: string, message: string): FeedbackProblem {
  return { status: 400, at, message }
}

/**
 * Finds the items of a feedback body without building them: the elements of a top-level JSON
 * array, or the top-level values of anything else (one object, possibly pretty-printed, or NDJSON).
 * It tracks strings and nesting only, never recursing, so any depth costs nothing but a problem
 * naming the field; JSON.parse then builds each item and reports syntax errors. It reads bytes:
 * every byte of a UTF-8 multi-byte character is ≥ 0x80, so none is mistaken for a quote or bracket,
 * and the body is never decoded whole (10 MB at once would stall the event loop).
 */
class Scanner {
  readonly #text: Buffer
  readonly #slicer: Slicer
  readonly isArray: boolean
  // Per item: where it starts and ends, and the 1-based line it starts on. Plain number arrays,
  // not an object per item: 200 000 small objects would only feed the garbage collector.
  readonly starts: number[] = []
  readonly ends: number[] = []
  readonly lines: number[] = []
  #pos = 0
  #line = 1
  #steps = 0

  constructor(text: Buffer, slicer: Slicer) {
    this.#text = text
    this.#slicer = slicer
    this.#skipSpace()
    this.isArray = this.#at(this.#pos) === 0x5b
  }

  /** The byte at `i`, or -1 past the end. */
  #at(i: number): number {
    return i < this.#text.length ? this.#text[i] as number : -1
  }

  /** Scans the whole body; a problem if it cannot be split into items. */
  async scan(): Promise<FeedbackProblem | undefined> {
    const text = this.#text
    if (!this.isArray) {
      for (this.#skipSpace(); this.#pos < text.length; this.#skipSpace()) {
        const p = await this.#item()
        if (p !== undefined) return p
      }
      return undefined
    }
    this.#pos++
    this.#skipSpace()
    if (this.#at(this.#pos) === 0x5d) {
      this.#pos++
    } else {
      for (;;) {
        this.#skipSpace()
        if (this.#pos >= text.length) return problem('body', 'not JSON: the array is not closed')
        const p = await this.#item()
        if (p !== undefined) return p
        this.#skipSpace()
        const c = this.#at(this.#pos)
        this.#pos++
        if (c === 0x5d) break
        if (c < 0) return problem('body', 'not JSON: the array is not closed')
        if (c !== 0x2c) return problem(`[${this.starts.length - 1}]`, 'not JSON: expected "," or "]" after the outcome')
        this.#skipSpace()
        if (this.#at(this.#pos) === 0x5d) return problem(`[${this.starts.length}]`, 'not JSON: a comma before "]"')
      }
    }
    this.#skipSpace()
    return this.#pos < text.length ? problem('body', 'not JSON: text after the closing "]"') : undefined
  }

  #skipSpace(): void {
    let c = this.#at(this.#pos)
    while (isSpace(c)) {
      if (c === LF) this.#line++
      c = this.#at(++this.#pos)
    }
  }

  /** Position after the string starting at `from` (a quote), or -1 if it never ends. */
  #stringEnd(from: number): number {
    const text = this.#text
    for (let k = from + 1; ;) {
      const q = text.indexOf(QUOTE, k)
      if (q < 0) return -1
      let b = q - 1
      while (b > from && text[b] === BACKSLASH) b--
      // An even run of backslashes escapes itself, not the quote.
      if ((q - 1 - b) % 2 === 0) return q + 1
      k = q + 1
    }
  }

  /** Scans one item starting at the current position (not a space) and records its span. */
  async #item(): Promise<FeedbackProblem | undefined> {
    const text = this.#text
    const start = this.#pos
    const line = this.#line
    const index = this.starts.length
    const base = this.isArray ? 1 : 0
    const c0 = this.#at(start)
    if (++this.#steps >= SCAN_STEPS) {
      this.#steps = 0
      await this.#slicer.pause()
    }
    let end: number
    if (c0 === QUOTE) {
      end = this.#stringEnd(start)
      if (end < 0) return this.#unterminated(index, line)
    } else if (c0 !== 0x7b && c0 !== 0x5b) {
      end = start
      while (end < text.length && !isDelimiter(this.#at(end))) end++
      if (end === start) end++ // a stray delimiter: JSON.parse names it
    } else {
      const isObject = c0 === 0x7b
      let depth = 0
      let isKeyNext = isObject
      let keyStart = -1
      let keyEnd = -1
      let j = start
      for (;;) {
        if (j >= text.length) return this.#unterminated(index, line)
        if (++this.#steps >= SCAN_STEPS) {
          this.#steps = 0
          await this.#slicer.pause()
        }
        const c = text[j] as number
        if (c === QUOTE) {
          const e = this.#stringEnd(j)
          if (e < 0) return this.#unterminated(index, line)
          if (depth === 1 && isKeyNext) {
            keyStart = j
            keyEnd = e
          }
          j = e
          continue
        }
        j++
        if (c === 0x7b || c === 0x5b) {
          if (++depth + base > MAX_NESTING) return this.#tooDeep(index, line, keyStart < 0 ? undefined : this.#key(keyStart, keyEnd))
        } else if (c === 0x7d || c === 0x5d) {
          if (--depth === 0) break
        } else if (depth === 1 && isObject && (c === 0x2c || c === 0x3a)) {
          // Inside the outcome object a comma starts a key, a colon its value.
          isKeyNext = c === 0x2c
        } else if (c === LF) {
          this.#line++
        }
      }
      end = j
    }
    if (end - start > MAX_OUTCOME_CHARS) {
      return problem(this.isArray ? `[${index}]` : index === 0 ? 'body' : `line ${line}`, `an outcome of ${end - start} characters: outcomes are small objects, at most ${MAX_OUTCOME_CHARS}`)
    }
    this.starts.push(start)
    this.ends.push(end)
    this.lines.push(line)
    this.#pos = end
    return undefined
  }

  #key(start: number, end: number): string {
    const raw = this.#text.toString('utf8', start, end)
    try {
      const key = JSON.parse(raw) as string
      return key.length > 40 ? `${key.slice(0, 40)}…` : key
    } catch {
      return raw.slice(0, 40)
    }
  }

  #where(index: number, field: string | undefined): string {
    const item = this.isArray || index > 0 ? `[${index}]` : ''
    if (field === undefined) return item === '' ? 'body' : item
    return item === '' ? field : `${item}.${field}`
  }

  #tooDeep(index: number, line: number, field: string | undefined): FeedbackProblem {
    const where = this.isArray ? '' : ` (line ${line})`
    return problem(this.#where(index, field), `nested more than ${MAX_NESTING} levels deep${where}: an outcome is a flat object such as {"metric":"converted","value":1}`)
  }

  #unterminated(index: number, line: number): FeedbackProblem {
    const at = this.isArray ? `[${index}]` : index === 0 ? 'body' : `line ${line}`
    return problem(at, 'not JSON: the text ends inside a value')
  }
}

/**
 * Reads a feedback body and hands each item to `visit`, in order, with the number of items: a JSON
 * object, a JSON array of objects, or NDJSON (one object per line, as high-volume producers stream
 * them). Works in slices that yield to the event loop, and builds items a group at a time, so a
 * visitor that keeps only what it needs lets the rest die young. Nesting deeper than MAX_NESTING
 * is a 400 problem naming the field, never a stack overflow. Returns the problem, if any; items
 * before it may have been visited.
 */
export async function forEachItem(raw: Buffer | string | undefined, slicer: Slicer, visit: (item: unknown, index: number, count: number) => void): Promise<FeedbackProblem | undefined> {
  const body = raw === undefined ? Buffer.alloc(0) : typeof raw === 'string' ? Buffer.from(raw) : raw
  const scanner = new Scanner(body, slicer)
  const found = await scanner.scan()
  if (found !== undefined) return found
  const { starts, ends, lines } = scanner
  const count = starts.length
  if (count === 0 && !scanner.isArray) return problem('body', 'empty body: send a JSON object, a JSON array of objects, or NDJSON')
  const at = (i: number): string => scanner.isArray ? `[${i}]` : count === 1 ? 'body' : `line ${lines[i] as number}`
  for (let a = 0; a < count;) {
    // A group of items decoded and parsed at once: one JSON.parse per about PARSE_GROUP_CHARS.
    const texts: string[] = []
    let chars = 0
    let b = a
    for (; b < count && (b === a || chars < PARSE_GROUP_CHARS); b++) {
      texts.push(body.toString('utf8', starts[b], ends[b]))
      chars += (ends[b] as number) - (starts[b] as number)
    }
    let values: unknown[]
    try {
      values = JSON.parse(`[${texts.join(',')}]`) as unknown[]
    } catch (err) {
      // Find the item at fault, to name it.
      for (let i = a; i < b; i++) {
        try {
          JSON.parse(texts[i - a] as string)
        } catch (e) {
          return problem(at(i), `not JSON: ${(e as Error).message}`)
        }
      }
      return problem(at(a), `not JSON: ${(err as Error).message}`)
    }
    for (let i = 0; i < values.length; i++) visit(values[i], a + i, count)
    a = b
    await slicer.pause()
  }
  return undefined
}

/** Every item of a feedback body (see forEachItem), or the problem that stopped reading it. */
export async function parseFeedbackBody(raw: Buffer | string | undefined, slicer: Slicer = new Slicer()): Promise<unknown[] | FeedbackProblem> {
  const items: unknown[] = []
  const found = await forEachItem(raw, slicer, (item) => { items.push(item) })
  return found ?? items
}
