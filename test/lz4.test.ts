// The Kafka sink's LZ4 frames (src/record/lz4.ts) with the hash table kept between frames: each
// frame decodes to its own input whatever was compressed before it. A table left dirty by an
// earlier frame would let a position match itself (offset 0) or bytes of the earlier input.
// The broker's own check of LZ4 batches (Java lz4) is in kafka-sink.test.ts, which runs on lz4.
import { randomBytes } from 'node:crypto'
import * as lz4 from 'lz4js'
import { describe, expect, it } from 'vitest'
import { lz4Frame, lz4Unframe } from '../src/record/lz4.js'

const record = (i: number): string => JSON.stringify({ type: 'prediction', ts: '2026-12-07T03:44:02.123Z', request_id: `req-${i}`, route: 'rec', model: i % 2 === 0 ? 'a' : 'b', input: { x: [1, 2, 3, i] }, output: { predictions: [0.5] } })

describe('lz4Frame', () => {
  it('frames in a row each decode to their own input: the same bytes again, shorter, longer, random, empty', () => {
    const batch = Buffer.from(Array.from({ length: 40 }, (_, i) => record(i)).join(''))
    const inputs = [batch, batch, batch.subarray(0, 700), batch.subarray(300), randomBytes(5000), Buffer.concat([batch, batch, batch]), Buffer.alloc(0), Buffer.from('x'), batch]
    for (const input of inputs) {
      const frame = lz4Frame(input)
      expect(Buffer.from(lz4Unframe(frame)).equals(input)).toBe(true)
      // lz4js's own frame reader agrees too (magic, descriptor checksum, end mark).
      expect(Buffer.from(lz4.decompress(frame)).equals(input)).toBe(true)
    }
    // Records compress: the batch's frame is well under half its size.
    expect(lz4Frame(batch).length).toBeLessThan(batch.length / 2)
  })

  it('every length around the end-of-block rules, long literal runs, long matches, offsets at the 64 KiB limit and a frame of two blocks decode to their input', () => {
    const decodes = (input: Buffer): void => {
      const frame = lz4Frame(input)
      expect(Buffer.from(lz4.decompress(frame)).equals(input), `${input.length} bytes`).toBe(true)
    }
    const text = Buffer.from(Array.from({ length: 400 }, (_, i) => record(i)).join(''))
    for (let n = 0; n <= 80; n++) {
      decodes(text.subarray(0, n))
      decodes(Buffer.alloc(n, 0x61))
    }
    // Literal runs of 15, 270 and 5000 bytes between matches (length bytes 255, 255, …), a match of
    // 10 000 equal bytes, and a repeat 65 535 bytes back (the largest offset) and 65 536 (too far).
    const noise = randomBytes(70_000)
    decodes(Buffer.concat([text.subarray(0, 100), noise.subarray(0, 15), text.subarray(0, 100), noise.subarray(0, 270), text.subarray(0, 100), noise.subarray(0, 5000), text.subarray(0, 100)]))
    decodes(Buffer.concat([Buffer.from('head'), Buffer.alloc(10_000, 7), Buffer.from('tail of it')]))
    for (const gap of [65_535 - 64, 65_536 - 64, 65_537 - 64]) decodes(Buffer.concat([text.subarray(0, 64), noise.subarray(0, gap), text.subarray(0, 64), noise.subarray(0, 40)]))
    // More than one 4 MiB block: each block independent (Kafka's reader refuses dependent ones).
    const big = Buffer.concat(Array.from({ length: 40 }, () => Buffer.concat([text, noise])))
    expect(big.length).toBeGreaterThan(4 * 1024 * 1024)
    decodes(big)
  })

  it('compresses records about as well as lz4js does (within 15 %)', () => {
    const batch = Buffer.from(Array.from({ length: 80 }, (_, i) => record(i)).join(''))
    const theirs = lz4.compress(batch).length
    expect(lz4Frame(batch).length).toBeLessThan(theirs * 1.15)
  })
})
