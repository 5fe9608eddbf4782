// A tiny but real prediction server in MLflow's scoring protocol: POST /invocations with
// {"dataframe_records": [...]}, {"inputs": [...]} or {"instances": [...]} and it answers
// {"predictions": [p, ...]}, the churn probability of each row from a logistic regression.
// Two versions ship with different coefficients, so an A/B split and a shadow test have
// something real to compare. Usage: node examples/model-server.mjs <version> <port>
import { createServer } from 'node:http'

export const MODELS = {
  // v1: the production model. v2: retrained with a stronger tenure effect. v3: a candidate
  // that leans on support calls. Coefficients are illustrative, not fitted to real data.
  v1: { intercept: -1.2, tenure_months: -0.04, monthly_charges: 0.021, support_calls: 0.30 },
  v2: { intercept: -1.0, tenure_months: -0.06, monthly_charges: 0.020, support_calls: 0.32 },
  v3: { intercept: -1.4, tenure_months: -0.05, monthly_charges: 0.018, support_calls: 0.55 },
}

/** Churn probability of one row under one model version. */
export function predict(version, row) {
  const m = MODELS[version]
  const z = m.intercept + m.tenure_months * num(row.tenure_months) + m.monthly_charges * num(row.monthly_charges) + m.support_calls * num(row.support_calls)
  return Math.round((1 / (1 + Math.exp(-z))) * 1e6) / 1e6
}

function num(v) {
  const n = Number(v)
  return Number.isFinite(n) ? n : 0
}

function rowsOf(body) {
  const rows = body.dataframe_records ?? body.inputs ?? body.instances
  if (Array.isArray(rows)) return rows
  if (body.dataframe_split && Array.isArray(body.dataframe_split.data)) {
    const cols = body.dataframe_split.columns ?? []
    return body.dataframe_split.data.map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]])))
  }
  return undefined
}

/** Starts one model server; resolves to { url, close }. */
export function startModelServer(version, port = 0, host = '127.0.0.1', { delayMs = 0 } = {}) {
  const server = createServer((req, res) => {
    const send = (status, obj) => {
      const body = JSON.stringify(obj)
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-model-version': version })
      res.end(body)
    }
    if (req.method === 'GET' && (req.url === '/health' || req.url === '/ping')) return send(200, { status: 'ok', version })
    if (req.method !== 'POST' || !req.url.startsWith('/invocations')) return send(404, { error_code: 'ENDPOINT_NOT_FOUND', message: `POST /invocations, not ${req.method} ${req.url}` })
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      let body
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        return send(400, { error_code: 'BAD_REQUEST', message: 'body is not JSON' })
      }
      const rows = rowsOf(body ?? {})
      if (rows === undefined) return send(400, { error_code: 'BAD_REQUEST', message: 'expected dataframe_records, dataframe_split, inputs or instances' })
      const answer = () => send(200, { predictions: rows.map((r) => predict(version, r ?? {})) })
      if (delayMs > 0) setTimeout(answer, delayMs)
      else answer()
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      const { port: p } = server.address()
      resolve({ url: `http://${host}:${p}`, port: p, close: () => new Promise((r) => server.close(() => r())) })
    })
  })
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [version = 'v1', port = '9001'] = process.argv.slice(2)
  if (!MODELS[version]) {
    console.error(`unknown version ${version}; one of ${Object.keys(MODELS).join(', ')}`)
    process.exit(2)
  }
  const { url } = await startModelServer(version, Number(port))
  console.log(`churn ${version} listening on ${url}/invocations`)
}
