// lz4js ships no types: the parts of it the Kafka sink's LZ4 codec (decompression) and its tests use.
declare module 'lz4js' {
  /** Decompresses an LZ4 frame. */
  export function decompress(src: Uint8Array, maxSize?: number): Uint8Array
  /** Compresses `src` into an LZ4 frame (dependent blocks: not what Kafka reads; tests compare sizes). */
  export function compress(src: Uint8Array, maxSize?: number): Uint8Array
}
declare module 'lz4js/xxh32.js' {
  export function hash(seed: number, src: Uint8Array, index: number, length: number): number
}
