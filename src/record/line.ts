/**
 * A record as the file writer holds it between accepting it and writing it: one serialised line,
 * its size in bytes, and lines joined into the text of one write.
 */

/** A serialised record, newline included: text, or bytes when it carries an answer as it came. */
export type Line = string | Buffer

/** Bytes the line takes in the file (UTF-8 for text). */
export function sizeOf (line: Line): number {
  return typeof line === 'string' ? Buffer.byteLength(line) : line.length
}

/** lines[i, j) as one text, or one Buffer when some of them are bytes. */
export function joinLines (lines: readonly Line[], i: number, j: number): string | Buffer {
  let text = true
  for (let k = i; k < j; k++) if (typeof lines[k] !== 'string') text = false
  if (text) return i === 0 && j === lines.length ? (lines as string[]).join('') : (lines.slice(i, j) as string[]).join('')
  if (j === i + 1) return lines[i] as Buffer
  return Buffer.concat(lines.slice(i, j).map((l) => typeof l === 'string' ? Buffer.from(l) : l))
}
