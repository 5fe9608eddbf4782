import * as lz4 from 'lz4js'
import { hash as xxh32 } from 'lz4js/xxh32.js'

// The LZ4 frame format (lz4_Frame_format.md). Kafka reads frames whose blocks are independent
// (KafkaLZ4BlockInputStream: "Dependent block stream is unsupported"), which lz4js's own
// compress() does not write, so the frame is assembled here, from the block compressor below.
const MAGIC = 0x184d2204
// FLG: version 01, block independence; BD: 4 MiB blocks.
const FLG = 0x40 | 0x20
const BD = 7 << 4
const BLOCK_BYTES = 4 * 1024 * 1024
const UNCOMPRESSED = 0x80000000
const HEADER = Buffer.from([FLG, BD])
const HEADER_CHECKSUM = (xxh32(0, HEADER, 0, 2) >>> 8) & 0xff

// The block compressor is the LZ4 reference's fast one (lz4_Block_format.md for what it writes),
// rather than lz4js's compressBlock, which was the sink's top JS function after the CRC: 4096
// hash slots (16 KiB, in cache, as lz4's default) instead of 65 536 cleared for every partition of
// every send, a multiplicative hash with Math.imul, and no calls per position.
const MIN_MATCH = 4
// The last 5 bytes of a block are literals, and the last match starts 12 or more bytes before the
// end (the format's end-of-block rules, which decoders such as Kafka's lz4-java rely on).
const LAST_LITERALS = 5
const MF_LIMIT = 12
const HASH_LOG = 12
const MAX_OFFSET = 65_535
// After this many misses in a row the search steps further each time (as lz4's acceleration does),
// so incompressible input goes by fast.
const SKIP_TRIGGER = 6
// Each slot holds a position plus the current block's base: an entry below the base is from an
// earlier block and counts as empty, so the table is cleared only when the bases run out.
const TABLE = new Int32Array(1 << HASH_LOG)
let base = 1

function read32(b: Uint8Array, i: number): number {
  return (b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24)
}

function hash(seq: number): number {
  return Math.imul(seq, -1640531535) >>> (32 - HASH_LOG) // 2654435761, lz4's prime, as int32
}

/** Writes a length's continuation bytes (255, 255, …, rest) at `o`; returns the offset after them. */
function writeLength(dst: Uint8Array, o: number, n: number): number {
  for (; n >= 255; n -= 255) dst[o++] = 255
  dst[o++] = n
  return o
}

/** Compresses `src[from, to)` as one LZ4 block into `dst` at `o`; returns the offset after it. */
export function compressBlock(src: Uint8Array, from: number, to: number, dst: Uint8Array, o: number): number {
  if (base > 0x3fff_ffff) {
    TABLE.fill(0)
    base = 1
  }
  const b = base - from
  base += to - from + MAX_OFFSET + 1
  let anchor = from
  if (to - from > MF_LIMIT) {
    const matchLimit = to - LAST_LITERALS
    const lastStart = to - MF_LIMIT
    let ip = from
    let misses = 1 << SKIP_TRIGGER
    while (ip <= lastStart) {
      const seq = read32(src, ip)
      const h = hash(seq)
      const ref = (TABLE[h] as number) - b
      TABLE[h] = ip + b
      if (ref < from || ip - ref > MAX_OFFSET || read32(src, ref) !== seq) {
        ip += misses++ >> SKIP_TRIGGER
        continue
      }
      misses = 1 << SKIP_TRIGGER
      let end = ip + MIN_MATCH
      for (let r = ref + MIN_MATCH; end < matchLimit && src[end] === src[r]; r++) end++
      const literals = ip - anchor
      const matchLen = end - ip - MIN_MATCH
      const token = o++
      dst[token] = ((literals >= 15 ? 15 : literals) << 4) | (matchLen >= 15 ? 15 : matchLen)
      if (literals >= 15) o = writeLength(dst, o, literals - 15)
      for (let i = anchor; i < ip; i++) dst[o++] = src[i] as number
      const offset = ip - ref
      dst[o++] = offset & 0xff
      dst[o++] = offset >>> 8
      if (matchLen >= 15) o = writeLength(dst, o, matchLen - 15)
      ip = anchor = end
    }
  }
  const literals = to - anchor
  dst[o++] = (literals >= 15 ? 15 : literals) << 4
  if (literals >= 15) o = writeLength(dst, o, literals - 15)
  dst.set(src.subarray(anchor, to), o)
  return o + literals
}

/** Compresses `src` into one LZ4 frame of independent blocks, as Kafka's LZ4 codec expects. */
export function lz4Frame(src: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(src.length / BLOCK_BYTES))
  // At most: the header, each block's size and bound (its bytes, a 255th more, 16), the end mark.
  const out = Buffer.allocUnsafe(7 + blocks * 20 + src.length + Math.ceil(src.length / 255) + 4)
  out.writeUInt32LE(MAGIC, 0)
  out[4] = FLG
  out[5] = BD
  out[6] = HEADER_CHECKSUM
  let o = 7
  for (let s = 0; s < src.length; s += BLOCK_BYTES) {
    const e = Math.min(src.length, s + BLOCK_BYTES)
    const size = compressBlock(src, s, e, out, o + 4) - (o + 4)
    if (size >= e - s) {
      // Stored as it is, flagged uncompressed, when compressing did not make it smaller.
      out.writeUInt32LE((UNCOMPRESSED | (e - s)) >>> 0, o)
      out.set(src.subarray(s, e), o + 4)
      o += 4 + e - s
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
