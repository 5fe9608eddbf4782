// The Kafka sink's record batch encoding without a broker: the CRC32C against the check value of
// the CRC catalogue, and a batch's header fields where the Kafka protocol puts them. That the
// broker takes the batches and a plain consumer reads back what was sent is in kafka-sink.test.ts.
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { KafkaMessage, crc32c, encodeBatch } from '../src/record/kafka-encode.js'
import { createSinkPartitioner, murmur2 } from '../src/record/kafka-partition.js'

describe('Kafka record batch encoding', () => {
  it('CRC32C (Castagnoli) of "123456789" is the catalogue check value 0xE3069283', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
    expect(crc32c(Buffer.alloc(0))).toBe(0)
  })

  it('CRC32C eight bytes a step equals kafkajs’ byte-at-a-time CRC32C for every length 0..64, odd offsets and 64 kB', () => {
    const require = createRequire(import.meta.url)
    const theirs = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number
    const data = randomBytes(70_000)
    for (let len = 0; len <= 64; len++) {
      for (const from of [0, 1, 3, 7, 21]) expect(crc32c(data, from, from + len), `${from}+${len}`).toBe(theirs(data.subarray(from, from + len)))
    }
    expect(crc32c(data, 21)).toBe(theirs(data.subarray(21)))
    expect(crc32c(data, 5, 65_541)).toBe(theirs(data.subarray(5, 65_541)))
  })

  it('a batch carries magic 2, its codec, offsets, min/max timestamps, producer id, epoch, sequence, count and a CRC over the rest', async () => {
    const type = Buffer.from('org.modelsplit.prediction')
    const source = Buffer.from('/modelsplit/h')
    const t0 = Date.UTC(2026, 11, 7)
    const messages = [new KafkaMessage('k1', '{"a":1}', t0 + 50, 'id-1', type, source), new KafkaMessage(null, '{"b":"é"}', t0, 'id-2', type, source), new KafkaMessage('k3', '{}', t0 + 20, 'id-3', type, source)]
    const b = await encodeBatch(messages, { compression: 0, producerId: 4242n, producerEpoch: 3, firstSequence: 17 })
    expect(b.readInt32BE(8)).toBe(b.length - 12)
    expect(b[16]).toBe(2)
    expect(b.readUInt32BE(17)).toBe(crc32c(b, 21))
    expect(b.readInt16BE(21)).toBe(0)
    expect(b.readInt32BE(23)).toBe(2)
    expect(Number(b.readBigInt64BE(27))).toBe(t0)
    expect(Number(b.readBigInt64BE(35))).toBe(t0 + 50)
    expect(b.readBigInt64BE(43)).toBe(4242n)
    expect(b.readInt16BE(51)).toBe(3)
    expect(b.readInt32BE(53)).toBe(17)
    expect(b.readInt32BE(57)).toBe(3)
    const lz4 = await encodeBatch(messages, { compression: 3, producerId: -1n, producerEpoch: 0, firstSequence: 0 })
    expect(lz4.readInt16BE(21)).toBe(3)
    expect(lz4.readBigInt64BE(43)).toBe(-1n)
  })
})

describe('Kafka sink partitioner', () => {
  it('murmur2 and the partition agree with kafkajs’ DefaultPartitioner (Java’s) for ASCII, UTF-8, empty and long keys', async () => {
    const require = createRequire(import.meta.url)
    const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: string) => number
    const { Partitioners } = (await import('kafkajs')).default
    const theirs = Partitioners.DefaultPartitioner()
    const ours = createSinkPartitioner()
    const partitionMetadata = [0, 1, 2, 3, 4, 5, 6].map((partitionId) => ({ partitionId, leader: 1, partitionErrorCode: 0, replicas: [1], isr: [1] }))
    const keys = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'é', '日本語🚀', 'x'.repeat(1000), ...Array.from({ length: 2000 }, (_, i) => `req-${i}-${randomBytes(i % 13).toString('base64')}${i % 7 === 0 ? 'ü' : ''}`)]
    for (const key of keys) {
      expect(murmur2(key), key).toBe(kafkajsMurmur2(key))
      expect(ours({ topic: 't', partitionMetadata, message: { key } }), key).toBe(theirs({ topic: 't', partitionMetadata, message: { key, value: '' } }))
    }
    // No key: round robin over the partitions with a leader.
    const led = partitionMetadata.map((p) => ({ ...p, leader: p.partitionId % 2 === 0 ? 1 : -1 }))
    const seen = new Set(Array.from({ length: 40 }, () => ours({ topic: 't', partitionMetadata: led, message: { key: null } })))
    expect([...seen].sort()).toEqual([0, 2, 4, 6])
  })
})
