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
  console.log(`
try it:
  curl -s -H 'x-user-id: alice' -H 'content-type: application/json' \\
       -d '{"dataframe_records":[{"tenure_months":8,"monthly_charges":79.5,"support_calls":3}]}' \\
       -i http://127.0.0.1:8080/models/churn/invocations
  curl -s 'http://127.0.0.1:9464/admin/assign?route=churn&user_id=alice'
  curl -s http://127.0.0.1:9464/metrics | grep -E '^modelsplit_(requests|shadow_comparisons)'
  tail -n 1 data/predictions.jsonl     (the primary's and the shadow's predictions side by side)
  npx modelsplit assign --config ${config} --route churn alice bob
  edit the weights in ${config}: the router reloads it on save
`)
  if (once) await shutdown(0)
  else console.log('running; Ctrl-C stops the models and the router')
} catch (err) {
  console.error(`demo failed: ${err.message}`)
  await shutdown(1)
}
