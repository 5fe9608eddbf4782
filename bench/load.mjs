// The autocannon driver: each load runs in a worker thread (see load-worker.mjs).
import { Worker } from 'node:worker_threads'

/** The fixed set of user ids the load cycles through. */
export const USER_IDS = Array.from({ length: 256 }, (_, i) => `user-${String(i).padStart(4, '0')}`)
const BODY = JSON.stringify({ features: [0.12, 3.4, 5.6, 7.8, 0.91, 2, 1, 0] })

/**
 * Drives `url + path` with POSTs: `{ connections, duration }` (seconds) or `{ connections, amount }`,
 * optionally at `overallRate` req/s. Resolves to `{ rps, p50, p90, p99, max, errors, requests, seconds, ... }`
 * (latencies in ms, 2xx only).
 */
export function runLoad({ url, path = '/predict', connections, duration, amount, overallRate }) {
  const worker = new Worker(new URL('./load-worker.mjs', import.meta.url), {
    workerData: { url, path, connections, duration, amount, overallRate, ids: USER_IDS, body: BODY },
  })
  return new Promise((resolve, reject) => {
    let result
    worker.once('message', (m) => {
      result = m
      void worker.terminate() // autocannon may leave a timer or socket behind; the result is in
    })
    worker.once('error', reject)
    worker.once('exit', (code) => {
      if (result?.error) reject(new Error(result.error))
      else if (result === undefined) reject(new Error(`load worker exited (code ${code}) without a result`))
      else resolve(result)
    })
  })
}
