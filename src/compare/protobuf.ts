// The least protobuf that reading inference answers needs: walk a message's fields, read varints,
// fixed-width numbers and length-delimited bytes. Pure; wire format from
// https://protobuf.dev/programming-guides/encoding/ (proto3 packs repeated scalars, and a parser
// must also take them unpacked).

/** One field as it appears on the wire. */
export interface WireField {
  readonly number: number
  /** 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
  readonly wire: number
  /** The value's bytes: the varint's, the fixed width's, or the delimited payload. */
  readonly start: number
  readonly end: number
}

/** Reads a varint as a bigint (64 bits); null past the end or past 10 bytes. */
export function readVarint(buf: Uint8Array, at: number): { value: bigint; next: number } | null {
  let value = 0n
  let shift = 0n
  for (let i = at; i < buf.length && i < at + 10; i++) {
    const b = buf[i] as number
    value |= BigInt(b & 0x7f) << shift
    if (b < 0x80) return { value: BigInt.asUintN(64, value), next: i + 1 }
    shift += 7n
  }
  return null
}

/** The top-level fields of a message, in wire order; throws on bytes that are not protobuf. */
export function fields(buf: Uint8Array): WireField[] {
  const out: WireField[] = []
  let i = 0
  while (i < buf.length) {
    const tag = readVarint(buf, i)
    if (tag === null) throw new Error(`truncated field tag at byte ${i}`)
    const number = Number(tag.value >> 3n)
    const wire = Number(tag.value & 7n)
    if (number === 0) throw new Error(`field number 0 at byte ${i}`)
    i = tag.next
    let start = i
    let end: number
    switch (wire) {
      case 0: {
        const v = readVarint(buf, i)
        if (v === null) throw new Error(`truncated varint of field ${number}`)
        end = v.next
        break
      }
      case 1: end = i + 8; break
      case 5: end = i + 4; break
      case 2: {
        const len = readVarint(buf, i)
        if (len === null) throw new Error(`truncated length of field ${number}`)
        start = len.next
        end = start + Number(len.value)
        break
      }
      default: throw new Error(`unsupported wire type ${wire} of field ${number}`)
    }
    if (end > buf.length) throw new Error(`field ${number} runs past the end of the message`)
    out.push({ number, wire, start, end })
    i = end
  }
  return out
}

/** The bytes of a length-delimited field. */
export function bytesOf(buf: Uint8Array, f: WireField): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + f.start, f.end - f.start)
}

/** A string field. */
export function stringOf(buf: Uint8Array, f: WireField): string {
  return bytesOf(buf, f).toString('utf8')
}

/**
 * The values of a repeated varint field (packed or not), as unsigned 64-bit bigints; the caller
 * reinterprets them (int32 and int64 as signed, bool as 0/1).
 */
export function pushVarints(buf: Uint8Array, f: WireField, out: bigint[]): void {
  if (f.wire === 0) {
    out.push((readVarint(buf, f.start) as { value: bigint }).value)
    return
  }
  let i = f.start
  while (i < f.end) {
    const v = readVarint(buf, i)
    if (v === null || v.next > f.end) throw new Error('truncated packed varint')
    out.push(v.value)
    i = v.next
  }
}

/** The values of a repeated fixed-width field (float, double), packed or not. */
export function pushFixed(buf: Uint8Array, f: WireField, width: 4 | 8, out: number[]): void {
  const view = new DataView(buf.buffer, buf.byteOffset)
  const start = f.start
  const end = f.wire === 2 ? f.end : f.start + width
  if ((end - start) % width !== 0) throw new Error('packed fixed-width values of a bad length')
  for (let i = start; i < end; i += width) out.push(width === 4 ? view.getFloat32(i, true) : view.getFloat64(i, true))
}
