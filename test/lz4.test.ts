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
})
