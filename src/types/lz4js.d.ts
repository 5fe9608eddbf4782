// lz4js ships no types: the parts of it the Kafka sink's LZ4 codec uses.
declare module 'lz4js' {
  /** Compresses `src[sIndex, sIndex+sLength)` into `dst` as one LZ4 block; returns its size (0: not compressible). */
  export function compressBlock(src: Uint8Array, dst: Uint8Array, sIndex: number, sLength: number, hashTable: Uint32Array): number
  /** Decompresses an LZ4 frame. */
  export function decompress(src: Uint8Array, maxSize?: number): Uint8Array
  /** The largest compressed size of `n` bytes. */
  export function compressBound(n: number): number
}
declare module 'lz4js/xxh32.js' {
  export function hash(seed: number, src: Uint8Array, index: number, length: number): number
}
