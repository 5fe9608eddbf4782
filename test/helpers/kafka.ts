// A real Apache Kafka broker for tests (scripts/kafka: jars from Maven Central, KRaft, one node on
// 127.0.0.1), a raw reader of a topic, and a router run as its own process.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { kafkaClient } from '../../src/record/kafka-client.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SCRIPT = join(ROOT, 'scripts/kafka/broker.sh')

/**
 * Fetches the broker's jars (once; cached under .cache/kafka) and says whether a broker can run
 * here: undefined if so, else why not (the Kafka tests then skip, saying so).
 */
export function kafkaUnavailable(): string | undefined {
  for (const tool of ['java', 'mvn']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`
  }
  const r = spawnSync('bash', [join(ROOT, 'scripts/kafka/fetch.sh')], { encoding: 'utf8', timeout: 600_000 })
  if (r.status !== 0) return `the Kafka broker could not be fetched with Maven: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' ') || r.error?.message}`
  return undefined
}

async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port
        s.close(() => resolve(p))
      })
    })
    if (port < 65000 && await isFree(port + 1)) return port
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

export interface Broker {
  /** `127.0.0.1:PORT` */
  readonly address: string
  start(): Promise<void>
  /** A clean shutdown. */
  stop(): Promise<void>
  /** SIGKILL, as in a crash. */
  kill(): Promise<void>
  /** Stops the broker and deletes its data. */
  remove(): Promise<void>
  /** The broker's JVM process id (to freeze it with SIGSTOP). */
  pid(): Promise<number>
}

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (c: Buffer) => { err += c.toString() })
    child.on('exit', (code) => code === 0 ? resolve() : reject(new Error(`broker.sh ${args.join(' ')} exited ${code}: ${err}`)))
  })
}

/** Starts a broker on free ports with its data in a temporary directory. */
export async function startBroker(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'modelsplit-kafka-'))
  const port = await freePortPair()
  const broker: Broker = {
    address: `127.0.0.1:${port}`,
    start: () => run(['start', dir, String(port)]),
    stop: () => run(['stop', dir]),
    kill: () => run(['kill', dir]),
    pid: () => readFile(join(dir, 'broker.pid'), 'utf8').then((text) => Number(text.trim())),
    async remove() {
      await run(['kill', dir]).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
  await broker.start()
  return broker
}

export interface RawMessage {
  readonly partition: number
  readonly key: string | null
  readonly value: string
  readonly headers: Record<string, string>
  /** The message's timestamp (ms since the epoch, as a decimal string). */
  readonly timestamp: string
}

/** Every message of a topic up to its current end, read with a plain consumer (not the code under test). */
export async function readTopic(address: string, topic: string): Promise<RawMessage[]> {
  const kafka = kafkaClient({ brokers: [address], client_id: 'test-reader' })
  const admin = kafka.admin()
  await admin.connect()
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]))
  await admin.disconnect()
  const out: RawMessage[] = []
  const left = new Set([...ends].filter(([, high]) => high > 0).map(([p]) => p))
  if (left.size === 0) return out
  const consumer = kafka.consumer({ groupId: `test-${Math.random()}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`reading ${topic} timed out with partitions ${[...left]} unfinished`)), 60_000)
    void consumer.run({
      eachMessage: async ({ partition, message }) => {
        out.push({
          partition,
          key: message.key?.toString() ?? null,
          value: message.value?.toString() ?? '',
          headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
          timestamp: message.timestamp,
        })
        if (Number(message.offset) + 1 >= (ends.get(partition) ?? 0)) left.delete(partition)
        if (left.size === 0) {
          clearTimeout(timer)
          resolve()
        }
      },
    })
  })
  await consumer.disconnect()
  return out
}

export { spawnRouter, type RouterProcess } from './router-process.js'
