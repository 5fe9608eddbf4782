import * as lz4 from 'lz4js'
import { hash as xxh32 } from 'lz4js/xxh32.js'

// The LZ4 frame format (lz4_Frame_format.md). Kafka reads frames whose blocks are independent
// (KafkaLZ4BlockInputStream: "Dependent block stream is unsupported"), which lz4js's own
// compress() does not write, so the frame is assembled here from its block compressor.
const MAGIC = 0x184d2204
// FLG: version 01, block independence; BD: 4 MiB blocks.
const FLG = 0x40 | 0x20
const BD = 7 << 4
const BLOCK_BYTES = 4 * 1024 * 1024
const UNCOMPRESSED = 0x80000000
const HEADER = Buffer.from([FLG, BD])
const HEADER_CHECKSUM = (xxh32(0, HEADER, 0, 2) >>> 8) & 0xff
// lz4js's hash table (2^16 positions): one for the process, cleared per block. A table made per
// frame was 256 KiB allocated and zeroed outside the heap for every partition of every send, and
// cost more than compressing a typical batch (profile of the Kafka sink).
const TABLE = new Uint32Array(1 << 16)

/** Compresses `src` into one LZ4 frame of independent blocks, as Kafka's LZ4 codec expects. */
export function lz4Frame(src: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(src.length / BLOCK_BYTES))
  const out = Buffer.allocUnsafe(7 + blocks * 4 + lz4.compressBound(src.length) + 4)
  out.writeUInt32LE(MAGIC, 0)
  out[4] = FLG
  out[5] = BD
  out[6] = HEADER_CHECKSUM
  let o = 7
  for (let s = 0; s < src.length; s += BLOCK_BYTES) {
    const block = src.subarray(s, Math.min(src.length, s + BLOCK_BYTES))
    // A clean table per block: a stale position could match at offset 0 or reach into the previous block.
    TABLE.fill(0)
    const size = lz4.compressBlock(block, out.subarray(o + 4), 0, block.length, TABLE)
    if (size === 0 || size >= block.length) {
      out.writeUInt32LE((UNCOMPRESSED | block.length) >>> 0, o)
      out.set(block, o + 4)
      o += 4 + block.length
    } else {
      out.writeUInt32LE(size, o)
      o += 4 + size
    }
  }
  out.writeUInt32LE(0, o)
  return out.subarray(0, o + 4)
}

/** Decompresses an LZ4 frame. */
export function lz4Unframe(src: Uint8Array): Buffer {
  const out = lz4.decompress(src)
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
}
