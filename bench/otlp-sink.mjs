// A local OTLP/HTTP receiver for the tracing cases: answers every export at once and discards it,
// counting batches and bytes so the report shows spans were sent.
import { createServer } from 'node:http'

/** Starts the sink on an ephemeral 127.0.0.1 port: `{ url, stats(), close() }`. */
export async function startOtlpSink() {
  const stats = { batches: 0, bytes: 0 }
  const server = createServer((req, res) => {
    req.on('data', (c) => { stats.bytes += c.length })
    req.on('end', () => {
      stats.batches++
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 })
      res.end('{}')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats: () => ({ ...stats }),
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
