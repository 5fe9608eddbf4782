// The Kafka broker of the `ms-record-kafka` case: scripts/kafka/broker.sh (jars from Maven Central,
// KRaft, one node on 127.0.0.1), its data in the bench's temp dir, stopped with the case.
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { closedPort } from './model-servers.mjs'

const SCRIPT = fileURLToPath(new URL('../scripts/kafka/broker.sh', import.meta.url))
const run = promisify(execFile)

/** Starts a broker (fetching its jars first if needed); resolves with its address and a stop(). */
export async function startKafka(tmp) {
  // The broker listens on PORT and its controller on PORT+1: a port whose next one is free too.
  // Another process can still take either before the JVM binds them: then again, on other ports.
  for (let attempt = 1; ; attempt++) {
    const dir = join(tmp, `kafka-${attempt}`)
    let port = await closedPort()
    while (port > 65000 || !(await isFree(port + 1))) port = await closedPort()
    try {
      await run('bash', [SCRIPT, 'start', dir, String(port)], { timeout: 600_000 })
      return { address: `127.0.0.1:${port}`, stop: () => run('bash', [SCRIPT, 'stop', dir]).then(() => {}) }
    } catch (err) {
      await run('bash', [SCRIPT, 'stop', dir]).catch(() => {})
      if (attempt >= 3 || !/Address already in use/.test(`${err.stdout ?? ''}${err.stderr ?? ''}${err.message}`)) throw err
    }
  }
}

/** Whether 127.0.0.1:`port` can be listened on now. */
function isFree(port) {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** The recording section that sends the recorded route's records to the broker, with a spool in the temp dir. */
export function kafkaRecording(address, base) {
  return { ...base, sink: 'kafka', kafka: { brokers: [address], topic: 'bench-records', acks: 'all', compression: 'lz4', linger_ms: 20 }, spool: { path: './spool', max_bytes: 1073741824 } }
}
