import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'

const NEWLINE = 0x0a
const CR = 0x0d

/** A line that was not a record: truncated by a crash, corrupted, or not a JSON object. */
export interface SkippedLine {
  path: string
  /** 1-based line number within `path`. */
  line: number
  /** Why: `'invalid_json'` or `'not_object'`. */
  reason: 'invalid_json' | 'not_object'
}

export interface ReadRecordsOptions {
  /** Called after each chunk read with bytes read so far and the total size of all files (sized when reading starts). */
  onProgress?: (bytesRead: number, totalBytes: number) => void
  /** Called for each line skipped (also counted in `skipped`). */
  onSkip?: (info: SkippedLine) => void
  /** Read size; default 64 KiB. */
  highWaterMark?: number
  /** Stops reading; the iterator then rejects with the signal's reason. */
  signal?: AbortSignal
}

/** The iterable `readRecords` returns: iterate once; `skipped` and `read` count as it goes. */
export interface RecordReader extends AsyncIterable<Record<string, unknown>> {
  /** Lines that were not blank and not a JSON object (a truncated last line, corruption). */
  readonly skipped: number
  /** Records yielded so far. */
  readonly read: number
}

/**
 * Streams the records of one or more JSONL files in order, a chunk at a time, so memory stays small
 * however big the files. Blank lines are ignored; a truncated or invalid line is skipped and counted.
 *
 * @example
 * const reader = readRecords(await recordFiles('data/predictions.jsonl'))
 * for await (const record of reader) tally(record)
 * console.log(`${reader.skipped} lines skipped`)
 */
export function readRecords (paths: readonly string[] | string, opts: ReadRecordsOptions = {}): RecordReader {
  const files = typeof paths === 'string' ? [paths] : [...paths]
  let skipped = 0
  let read = 0

  async function * iterate (): AsyncGenerator<Record<string, unknown>> {
    let totalBytes = 0
    for (const path of files) totalBytes += (await stat(path)).size
    let bytesRead = 0

    for (const path of files) {
      let lineNo = 0
      const parse = (buf: Buffer): Record<string, unknown> | undefined => {
        lineNo++
        let end = buf.length
        if (end > 0 && buf[end - 1] === CR) end--
        const text = buf.toString('utf8', 0, end)
        if (text.trim() === '') return undefined
        let value: unknown
        try {
          value = JSON.parse(text)
        } catch {
          skip(path, lineNo, 'invalid_json')
          return undefined
        }
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          skip(path, lineNo, 'not_object')
          return undefined
        }
        return value as Record<string, unknown>
      }

      // Pieces of a line that spans chunks; joined once the line ends.
      let carry: Buffer[] = []
      const stream = createReadStream(path, { highWaterMark: opts.highWaterMark ?? 64 * 1024, signal: opts.signal })
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        bytesRead += chunk.length
        let from = 0
        for (let nl = chunk.indexOf(NEWLINE, from); nl !== -1; nl = chunk.indexOf(NEWLINE, from)) {
          let line = chunk.subarray(from, nl)
          if (carry.length > 0) {
            carry.push(line)
            line = Buffer.concat(carry)
            carry = []
          }
          from = nl + 1
          const record = parse(line)
          if (record !== undefined) {
            read++
            yield record
          }
        }
        if (from < chunk.length) carry.push(chunk.subarray(from))
        opts.onProgress?.(bytesRead, totalBytes)
      }
      // No final '\n': a crash cut the line short; parse decides (a complete object is kept).
      if (carry.length > 0) {
        const record = parse(Buffer.concat(carry))
        if (record !== undefined) {
          read++
          yield record
        }
      }
    }
  }

  function skip (path: string, line: number, reason: SkippedLine['reason']): void {
    skipped++
    opts.onSkip?.({ path, line, reason })
  }

  return {
    get skipped () { return skipped },
    get read () { return read },
    [Symbol.asyncIterator]: iterate
  }
}
