// The newcomer's first run: starts the example churn models, then the router on
// config/router.yaml, sends a few predictions through it and prints what to try next.
// Usage: npm run demo            (runs until Ctrl-C)
//        npm run demo -- --once  (exits after the sample requests; used by the tests)
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startModelServer } from './model-server.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const once = process.argv.includes('--once')
const config = process.env.MODELSPLIT_CONFIG ?? 'config/router.yaml'
const cli = `${root}dist/cli/main.js`
if (!existsSync(cli)) {
  console.error('dist/ is missing: run `npm ci` (it builds) or `npm run build` first')
  process.exit(1)
}

const models = [await startModelServer('v1', 9001), await startModelServer('v2', 9002), await startModelServer('v3', 9003)]
console.log(`example models: churn-v1 on ${models[0].url}, churn-v2 on ${models[1].url}, churn-v3 (shadow) on ${models[2].url}`)

const router = spawn(process.execPath, [cli, 'serve', '--config', config, '--log-level', 'warn'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
const exited = new Promise((resolve) => router.once('exit', (code) => resolve(code ?? 1)))

async function waitReady() {
  for (let i = 0; i < 100; i++) {
    const r = await Promise.race([fetch('http://127.0.0.1:9464/readyz').then((res) => res.ok, () => false), exited.then(() => 'exited')])
    if (r === 'exited') throw new Error('the router exited before it was ready (see the error above)')
    if (r) return
    await new Promise((res) => setTimeout(res, 100))
  }
  throw new Error('the router did not become ready within 10 s')
}

/**
 * Simulated A/B traffic: users get a prediction, and whether they stayed is fed back to the
 * router by request id. churn-v2 is truly better (45% of its users stay, against 30% under
 * churn-v1), so the experiment reaches a verdict.
 */
async function abTest(users = 4000) {
  let seed = 42
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)
  const stays = { 'churn-v1': 0.30, 'churn-v2': 0.45 }
  const outcomes = []
  let next = 0
  const worker = async () => {
    while (next < users) {
      const i = next++
      const res = await fetch('http://127.0.0.1:8080/models/churn/invocations', {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': `demo-user-${i}` },
        body: JSON.stringify({ dataframe_records: [{ tenure_months: i % 48, monthly_charges: 20 + (i % 90), support_calls: i % 6 }] }),
      })
      await res.text()
      const model = res.headers.get('x-modelsplit-model')
      outcomes.push({ route: 'churn', request_id: res.headers.get('x-request-id'), metric: 'retained', value: random() < (stays[model] ?? 0) ? 1 : 0 })
    }
  }
  process.stdout.write(`\nA/B test: ${users} simulated users, churn-v2 truly keeps more of them…`)
  await Promise.all(Array.from({ length: 16 }, worker))
  const ndjson = outcomes.map((o) => JSON.stringify(o)).join('\n')
  const fb = await fetch('http://127.0.0.1:8080/feedback', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: ndjson })
  const accepted = (await fb.json()).accepted
  const e = await (await fetch('http://127.0.0.1:9464/admin/experiments/churn')).json()
  const r = e.metrics.retained
  const pctOf = (x) => (x === null ? '-' : `${(x * 100).toFixed(1)}%`)
  console.log(` ${accepted} outcomes fed back to POST /feedback`)
  for (const [m, x] of Object.entries(r.models)) console.log(`  ${m.padEnd(9)} ${String(x.assignments).padStart(5)} users, retained ${pctOf(x.rate)} [${pctOf(x.ci[0])}, ${pctOf(x.ci[1])}]`)
  const c = r.comparisons['churn-v2']
  console.log(`  churn-v2 vs churn-v1: lift ${pctOf(c.abs_lift)} (relative ${pctOf(c.rel_lift)}), sequential p = ${c.p_value_sequential?.toExponential(2)}, sample ratio ok: ${!r.srm.mismatch}`)
  console.log(`  verdict: ${r.verdict}`)
}

async function shutdown(code) {
  router.kill('SIGTERM')
  await exited
  await Promise.all(models.map((m) => m.close()))
  process.exit(code)
}
process.once('SIGINT', () => void shutdown(0))
process.once('SIGTERM', () => void shutdown(0))

try {
  await waitReady()
  const row = { tenure_months: 8, monthly_charges: 79.5, support_calls: 3 }
  console.log('\nsample predictions through the router (user → model: answer):')
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
    const res = await fetch('http://127.0.0.1:8080/models/churn/invocations', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': user }, body: JSON.stringify({ dataframe_records: [row] }),
    })
    console.log(`  ${user.padEnd(6)} → ${res.headers.get('x-modelsplit-model')}: ${await res.text()}`)
  }
  await abTest()
  console.log(`
try it:
  curl -s -H 'x-user-id: alice' -H 'content-type: application/json' \\
       -d '{"dataframe_records":[{"tenure_months":8,"monthly_charges":79.5,"support_calls":3}]}' \\
       -i http://127.0.0.1:8080/models/churn/invocations
  curl -s 'http://127.0.0.1:9464/admin/assign?route=churn&user_id=alice'
  curl -s http://127.0.0.1:9464/metrics | grep -E '^modelsplit_(requests|shadow_comparisons)'
  tail -n 1 data/predictions.jsonl     (the primary's and the shadow's predictions side by side)
  npx modelsplit assign --config ${config} --route churn alice bob
  curl -s http://127.0.0.1:9464/admin/experiments/churn
  npx modelsplit report --config ${config} data/predictions.jsonl
  edit the weights in ${config}: the router reloads it on save
`)
  if (once) await shutdown(0)
  else console.log('running; Ctrl-C stops the models and the router')
} catch (err) {
  console.error(`demo failed: ${err.message}`)
  await shutdown(1)
}
