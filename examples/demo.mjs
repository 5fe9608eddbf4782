// The newcomer's first run: starts the example churn models, then the router on
// config/router.yaml, sends a few predictions through it and runs an A/B test; then the automated
// decisions live: a second router on config/rollout.yaml rolls churn-v2 out step by step, promotes
// the shadow churn-v3 to the next candidate and rolls it out too, printing each decision; then
// LLM traffic: a third router on config/llm.yaml ramps one tiny OpenAI-compatible chat model
// against another, with a streamed shadow and a judge whose verdicts gate each step.
// Usage: npm run demo                (runs until Ctrl-C)
//        npm run demo -- --once      (exits when all parts are done)
//        npm run demo -- --rollout   (only the automated decisions; with --once, exits after them:
//                                     test/demo-rollout.test.ts runs that)
//        npm run demo -- --llm       (only the LLM part; with --once, exits after it:
//                                     test/demo-llm.test.ts runs that)
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import yaml from 'js-yaml'
import { startModelServer } from './model-server.mjs'
import { COUNTRIES, startChatModel, startJudge } from './llm-servers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const once = process.argv.includes('--once')
const rolloutOnly = process.argv.includes('--rollout')
const llmOnly = process.argv.includes('--llm')
const config = process.env.MODELSPLIT_CONFIG ?? 'config/router.yaml'
const rolloutConfig = process.env.MODELSPLIT_ROLLOUT_CONFIG ?? 'config/rollout.yaml'
const llmConfig = process.env.MODELSPLIT_LLM_CONFIG ?? 'config/llm.yaml'
const cli = `${root}dist/cli/main.js`
if (!existsSync(cli)) {
  console.error('dist/ is missing: run `npm ci` (it builds) or `npm run build` first')
  process.exit(1)
}

/** What is running, so that shutdown stops all of it. */
const routers = []
const models = []
let stopTraffic = () => {}

/** Starts `modelsplit serve` on a config; resolves once its admin port answers /readyz. */
async function startRouter(file, adminUrl) {
  const child = spawn(process.execPath, [cli, 'serve', '--config', file, '--log-level', 'warn'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)))
  routers.push({ child, exited })
  for (let i = 0; i < 100; i++) {
    const r = await Promise.race([fetch(`${adminUrl}/readyz`).then((res) => res.ok, () => false), exited.then(() => 'exited')])
    if (r === 'exited') throw new Error(`the router on ${file} exited before it was ready (see the error above)`)
    if (r) return
    await new Promise((res) => setTimeout(res, 100))
  }
  throw new Error(`the router on ${file} did not become ready within 10 s`)
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

/** The A/B part: three example models, the router on config/router.yaml, sample predictions, an A/B test. */
async function abPart() {
  const started = [await startModelServer('v1', 9001), await startModelServer('v2', 9002), await startModelServer('v3', 9003)]
  models.push(...started)
  console.log(`example models: churn-v1 on ${started[0].url}, churn-v2 on ${started[1].url}, churn-v3 (shadow) on ${started[2].url}`)
  await startRouter(config, 'http://127.0.0.1:9464')
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
}

// --- the automated decisions, live ----------------------------------------------------------------

/** How often the users of each model truly stay, in the decisions part: each candidate is better. */
const STAYS = { 'churn-v1': 0.30, 'churn-v2': 0.45, 'churn-v3': 0.55 }
/**
 * Simulated inference time of the models in the decisions part: latency is mostly the model's, as
 * in production, so the p99 gates judge models rather than the load on the machine the demo runs on.
 */
const MODEL_DELAY_MS = 100
/** Simulated clients in the decisions part, each sending one request after the other. */
const CLIENTS = 24
/** The decisions part gives up (and --once exits 1) after this long. */
const ROLLOUT_DEADLINE_MS = 60_000

const sleep = (ms) => new Promise((res) => setTimeout(res, ms))

/** A number in [0, 1) fixed by the user's number: whether that user stays does not depend on timing. */
function unit(i) {
  let x = (i + 0x9e3779b9) >>> 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0
  return ((x ^ (x >>> 16)) >>> 0) / 4294967296
}

/** Where the decisions config listens, its route, its models, and its decision state file. */
function readRolloutConfig(file) {
  const path = resolve(root, file)
  const doc = yaml.load(readFileSync(path, 'utf8'))
  const local = (host) => (host === undefined || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host)
  const route = doc.routes[0]
  return {
    url: `http://${local(doc.listen?.host)}:${doc.listen?.port ?? 8080}`,
    admin: `http://${local(doc.admin?.host)}:${doc.admin?.port ?? 9464}`,
    interval: doc.evaluation?.interval ?? '60s',
    route,
    models: Object.entries(doc.models).map(([name, m]) => ({ name, version: name.slice(name.lastIndexOf('-') + 1), port: Number(new URL(m.url).port) })),
    stateFile: resolve(dirname(path), dirname(doc.recording?.path ?? './data/predictions.jsonl'), 'decisions.json'),
    recordFile: resolve(dirname(path), doc.recording?.path ?? './data/predictions.jsonl'),
  }
}

/**
 * Simulated users, each new (so every step's share shows): a prediction each, and whether they
 * stayed fed back to POST /feedback by request id twice a second.
 */
function startTraffic(url, route, clients = CLIENTS) {
  const metric = route.metrics?.[0]?.name ?? 'retained'
  const counts = { sent: 0, failed: 0, fed: 0 }
  let running = true
  let next = 0
  let outcomes = []
  const client = async () => {
    while (running) {
      const i = next++
      try {
        const res = await fetch(`${url}${route.path}/invocations`, {
          method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': `rollout-user-${i}` },
          body: JSON.stringify({ dataframe_records: [{ tenure_months: i % 48, monthly_charges: 20 + ((i * 7) % 90), support_calls: i % 3 }] }),
        })
        await res.text()
        counts.sent++
        const model = res.headers.get('x-modelsplit-model')
        if (res.ok) outcomes.push({ route: route.name, request_id: res.headers.get('x-request-id'), metric, value: unit(i) < (STAYS[model] ?? 0) ? 1 : 0 })
      } catch {
        counts.failed++
        await sleep(50)
      }
    }
  }
  const flush = async () => {
    if (outcomes.length === 0) return
    const batch = outcomes
    outcomes = []
    const res = await fetch(`${url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: batch.map((o) => JSON.stringify(o)).join('\n') })
    counts.fed += (await res.json()).accepted ?? 0
  }
  const feeder = (async () => {
    while (running) {
      await sleep(500)
      await flush().catch(() => {})
    }
  })()
  // Clients join one by one, so that a router just started warms up before it is busy.
  const all = [feeder, ...Array.from({ length: clients }, (_, k) => sleep(k * 150).then(() => running && client()))]
  return {
    counts,
    stop: async () => {
      running = false
      await Promise.all(all)
      await flush().catch(() => {})
    },
  }
}

/** The numbers a rollout decision saw: each arm's requests and p99 on the step, the guardrails' p. */
function figures(inputs) {
  if (inputs == null) return '-'
  const arm = (name, w) => `${name} ${w.requests} requests${w.p99 == null ? '' : `, p99 ${(w.p99 * 1000).toFixed(1)} ms`}`
  const parts = [arm('candidate', inputs.candidate)]
  // At 100% the control serves nobody: the candidate is judged against the control's last step.
  if (inputs.control?.requests > 0) parts.push(arm('control', inputs.control))
  for (const g of inputs.guardrails ?? []) parts.push(`${g.metric}: sequential p ${g.p == null ? '-' : g.p.toPrecision(2)}${g.worse ? ' (candidate lower)' : ''}`)
  return parts.join(' · ')
}

const sharesOf = (shares) => Object.entries(shares).map(([m, x]) => `${m} ${Math.round(x * 1000) / 10}%`).join(' · ')

/**
 * The decisions part: a router on config/rollout.yaml, traffic with outcomes, and every decision
 * printed as /admin/rollouts/:route shows it, until the promoted shadow's rollout is done.
 * Resolves to true when it ended as planned.
 */
async function rolloutPart() {
  const rc = readRolloutConfig(rolloutConfig)
  const route = rc.route
  const promotable = (route.shadow ?? []).filter((s) => s.promote_when != null).map((s) => s.model)
  const r = route.rollout
  console.log(`
automated decisions: a second router on ${rolloutConfig} (predictions ${rc.url}, admin ${rc.admin})
  decides every ${rc.interval}: ${r.candidate} rolls out against ${route.control ?? route.split[0].model} in steps of ${r.steps.join(', ')}%, each held ${r.step_interval}
  with at least ${r.min_requests} requests per arm and its gates met; then the shadow ${promotable.join(', ') || '(none)'}, once it agrees
  with the control (promote_when), becomes the next candidate and walks the same steps
  traffic: ${CLIENTS} simulated clients, each user's outcome (${route.metrics?.[0]?.name}) fed back to POST /feedback`)
  if (existsSync(rc.stateFile)) {
    rmSync(rc.stateFile, { force: true })
    console.log(`  (a fresh start: the decision state of an earlier run, ${relative(root, rc.stateFile)}, is removed)`)
  }
  const started = await Promise.all(rc.models.map((m) => startModelServer(m.version, m.port, '127.0.0.1', { delayMs: MODEL_DELAY_MS })))
  models.push(...started)
  await startRouter(rolloutConfig, rc.admin)
  const traffic = startTraffic(rc.url, route)
  stopTraffic = traffic.stop
  console.log(`\n  time (UTC) kind      result        reason`)
  const seen = new Set()
  let lastReason = ''
  let weights = ''
  let last
  let done = false
  const deadline = Date.now() + ROLLOUT_DEADLINE_MS
  while (!done && Date.now() < deadline) {
    await sleep(250)
    last = await (await fetch(`${rc.admin}/admin/rollouts/${route.name}`)).json()
    for (const d of last.decisions ?? []) {
      const key = `${d.at}|${d.kind}|${d.result}|${d.reason}`
      if (seen.has(key)) continue
      seen.add(key)
      // A hold that says what the one before said adds nothing: one line per change of reason.
      if (d.result === 'hold' && d.reason === lastReason) continue
      lastReason = d.reason
      console.log(`  ${d.at.slice(11, 19)}   ${d.kind.padEnd(9)} ${d.result.padEnd(13)} ${d.reason}`)
      if (d.kind === 'rollout' && d.result !== 'hold' && d.result !== 'start') console.log(`  ${''.padEnd(10)} seen on the step: ${figures(d.inputs)}`)
    }
    const now = sharesOf(last.effective_shares ?? {})
    if (now !== weights) console.log(`  ${''.padEnd(10)} weights in force: ${(weights = now)}`)
    done = (last.state === 'promoted' || last.state === 'rolled_back') && (promotable.length === 0 || promotable.includes(last.candidate))
  }
  await traffic.stop()
  stopTraffic = () => {}
  const c = traffic.counts
  if (!done) console.log(`\n  not done within ${ROLLOUT_DEADLINE_MS / 1000} s: the rollout is ${last?.state} at ${last?.percent}% (see the reasons above)`)
  console.log(`
final weights: ${sharesOf(last?.effective_shares ?? {})} (${last?.candidate} ${last?.state}; ${c.sent} requests sent, ${c.fed} outcomes fed back${c.failed > 0 ? `, ${c.failed} failed` : ''})
try it:
  npx modelsplit rollout status ${route.name} --admin ${rc.admin}
  curl -s ${rc.admin}/admin/rollouts/${route.name}
  curl -s ${rc.admin}/metrics | grep -E '^modelsplit_(rollout|decisions|split_weight)'
  grep '"type":"decision"' ${relative(root, rc.recordFile)} | tail -n 1     (each decision is a record, with the numbers it saw)
`)
  return done
}

// --- LLM traffic ---------------------------------------------------------------------------------

/** Simulated chat clients in the LLM part, each streaming one request after the other. */
const LLM_CLIENTS = 8

/** One streamed chat request; resolves to the arm that answered and the raw SSE text. */
async function chat(url, user, question) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', stream: true, user, messages: [{ role: 'user', content: question }] }),
  })
  return { model: res.headers.get('x-modelsplit-model'), status: res.status, text: await res.text() }
}

/** The text of a chat stream: its deltas' content, in order. */
function streamedText(sse) {
  let out = ''
  for (const line of sse.split('\n')) {
    if (!line.startsWith('data: {')) continue
    out += JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? ''
  }
  return out
}

/** Chat users, each new (so every step's share shows), each asking about one country. */
function startChatTraffic(url) {
  const counts = { sent: 0, failed: 0 }
  let running = true
  let next = 0
  const client = async () => {
    while (running) {
      const i = next++
      try {
        // Each user asks in their own words (the judge's taste varies with the question).
        const r = await chat(url, `llm-user-${i}`, `Question ${i}: what is the capital of ${COUNTRIES[i % COUNTRIES.length]}?`)
        if (r.status === 200) counts.sent++
        else counts.failed++
      } catch {
        counts.failed++
        await sleep(50)
      }
    }
  }
  const all = Array.from({ length: LLM_CLIENTS }, (_, k) => sleep(k * 100).then(() => running && client()))
  return { counts, stop: async () => { running = false; await Promise.all(all) } }
}

/**
 * The LLM part: two tiny OpenAI-compatible chat models and a judge (in this process), a router on
 * config/llm.yaml, streamed chat traffic, and every decision printed as it is taken; then what the
 * router measured per arm: request, token and cost shares side by side, first-token times, and the
 * judge's win rate. Resolves to true when chat-v2 was promoted.
 */
async function llmPart() {
  const path = resolve(root, llmConfig)
  const doc = yaml.load(readFileSync(path, 'utf8'))
  const local = (host) => (host === undefined || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host)
  const url = `http://${local(doc.listen?.host)}:${doc.listen?.port ?? 8080}`
  const admin = `http://${local(doc.admin?.host)}:${doc.admin?.port ?? 9464}`
  const route = doc.routes[0]
  const portOf = (name) => Number(new URL(doc.models[name].url).port)
  const [control, candidate] = route.split.map((s) => s.model)
  const gates = route.rollout.gates
  console.log(`
LLM traffic: a router on ${llmConfig} (OpenAI API ${url}/v1, admin ${admin})
  ${candidate} (full sentences, dearer tokens) ramps against ${control} (one word) in steps of ${route.rollout.steps.join(', ')}%;
  the control's users are mirrored to ${candidate} as a streamed shadow, the finished answers compared,
  and the pairs left undecided judged blind by ${route.judge.model}: a step goes on once ${candidate}'s win rate
  (95% lower bound, over at least ${gates.min_judged} decided verdicts) reaches ${gates.min_win_rate}
  traffic: ${LLM_CLIENTS} simulated chat clients, each request streamed (SSE)`)
  const stateFile = resolve(dirname(path), dirname(doc.recording?.path ?? './data/predictions.jsonl'), 'decisions.json')
  if (existsSync(stateFile)) {
    rmSync(stateFile, { force: true })
    console.log(`  (a fresh start: the decision state of an earlier run, ${relative(root, stateFile)}, is removed)`)
  }
  const started = await Promise.all([
    startChatModel({ style: 'terse', port: portOf(control) }),
    startChatModel({ style: 'full', port: portOf(candidate), firstTokenMs: 45 }),
    startJudge({ port: portOf(route.judge.model) }),
  ])
  models.push(...started)
  await startRouter(llmConfig, admin)
  const sample = await chat(url, 'alice', 'What is the capital of Kenya?')
  const events = sample.text.split('\n\n').filter((e) => e !== '')
  console.log(`\n  one streamed answer through the router (alice → ${sample.model}): ${events.length} events, text "${streamedText(sample.text)}"`)
  console.log(`    first: ${events[0]}\n    last:  ${events.at(-1)}`)
  const traffic = startChatTraffic(url)
  stopTraffic = traffic.stop
  console.log(`\n  time (UTC) kind      result        reason`)
  const seen = new Set()
  let lastReason = ''
  let weights = ''
  let last
  let done = false
  const deadline = Date.now() + ROLLOUT_DEADLINE_MS
  while (!done && Date.now() < deadline) {
    await sleep(250)
    last = await (await fetch(`${admin}/admin/rollouts/${route.name}`)).json()
    for (const d of last.decisions ?? []) {
      const key = `${d.at}|${d.kind}|${d.result}|${d.reason}`
      if (seen.has(key)) continue
      seen.add(key)
      if (d.result === 'hold' && d.reason === lastReason) continue
      lastReason = d.reason
      console.log(`  ${d.at.slice(11, 19)}   ${d.kind.padEnd(9)} ${d.result.padEnd(13)} ${d.reason}`)
    }
    const now = sharesOf(last.effective_shares ?? {})
    if (now !== weights) console.log(`  ${''.padEnd(10)} weights in force: ${(weights = now)}`)
    done = last.state === 'promoted' || last.state === 'rolled_back'
  }
  await traffic.stop()
  stopTraffic = () => {}
  if (!done) console.log(`\n  not done within ${ROLLOUT_DEADLINE_MS / 1000} s: the rollout is ${last?.state} at ${last?.percent}% (see the reasons above)`)
  const pct = (x) => (x == null ? '-' : `${(100 * x).toFixed(1)}%`)
  const llm = await (await fetch(`${admin}/admin/llm`)).json()
  console.log(`\n  per arm, side by side (GET /admin/llm): a request share is not a token or cost share`)
  console.log(`  ${'model'.padEnd(9)} ${'requests'.padStart(8)} ${'share'.padStart(7)} ${'tokens'.padStart(8)} ${'share'.padStart(7)} ${'cost'.padStart(10)} ${'share'.padStart(7)}`)
  for (const a of llm.routes.find((r) => r.route === route.name)?.arms ?? []) {
    console.log(`  ${a.model.padEnd(9)} ${String(a.requests).padStart(8)} ${pct(a.request_share).padStart(7)} ${String(a.tokens).padStart(8)} ${pct(a.token_share).padStart(7)} ${a.cost.toFixed(6).padStart(10)} ${pct(a.cost_share).padStart(7)}`)
  }
  const metrics = await (await fetch(`${admin}/metrics`)).text()
  const ttft = (model) => {
    const sum = Number(/^gen_ai_server_time_to_first_token_seconds_sum\{([^}]*)\} (\S+)$/m.exec(metrics.split('\n').filter((l) => l.includes(`model="${model}"`) && l.startsWith('gen_ai_server_time_to_first_token_seconds_sum')).join('\n'))?.[2])
    const count = Number(/ (\S+)$/.exec(metrics.split('\n').find((l) => l.startsWith('gen_ai_server_time_to_first_token_seconds_count') && l.includes(`model="${model}"`)) ?? '')?.[1])
    return count > 0 ? `${((1000 * sum) / count).toFixed(1)} ms` : '-'
  }
  console.log(`  mean time to first token: ${control} ${ttft(control)} · ${candidate} ${ttft(candidate)} (gen_ai_server_time_to_first_token_seconds)`)
  const shadows = await (await fetch(`${admin}/admin/shadows`)).json()
  const pair = shadows.routes.find((r) => r.route === route.name)?.pairs.find((p) => p.primary === control && p.shadow === candidate)
  const j = pair?.judged
  if (j !== undefined) {
    console.log(`  the judge on ${candidate} (shadow) vs ${control}: ${j.wins} wins, ${j.ties} ties, ${j.losses} losses; win rate ${pct(j.win_rate)} [${pct(j.ci[0])}, ${pct(j.ci[1])}], sign test p ${j.sign_p.toPrecision(2)}, sequential p ${j.sequential_p.toPrecision(2)}`)
  }
  const c = traffic.counts
  console.log(`
final weights: ${sharesOf(last?.effective_shares ?? {})} (${last?.candidate} ${last?.state}; ${c.sent} chat requests streamed${c.failed > 0 ? `, ${c.failed} failed` : ''})
look at:
  curl -s ${admin}/admin/llm                        (request, token and cost shares per arm)
  curl -s ${admin}/admin/shadows                    (agreement, and the judge's verdicts with their interval)
  curl -s ${admin}/metrics | grep -E '^(gen_ai_|modelsplit_llm_)'   (first-token time, tokens, cost, verdicts)
  curl -sN ${url}/v1/chat/completions -H 'content-type: application/json' \\
       -d '{"model":"chat","stream":true,"user":"bob","messages":[{"role":"user","content":"What is the capital of Peru?"}]}'
  grep '"type":"judgement"' ${relative(root, resolve(dirname(path), doc.recording.path))} | tail -n 1     (a verdict, naming its request)
  open ${admin}/                                    (the console: shares side by side, the judge's win rate)
`)
  return done && last?.state === 'promoted'
}

async function shutdown(code) {
  await stopTraffic()
  for (const r of routers) r.child.kill('SIGTERM')
  await Promise.all(routers.map((r) => r.exited))
  await Promise.all(models.map((m) => m.close()))
  process.exit(code)
}
process.once('SIGINT', () => void shutdown(0))
process.once('SIGTERM', () => void shutdown(0))

try {
  let ok = true
  if (!rolloutOnly && !llmOnly) await abPart()
  if (!llmOnly) ok = await rolloutPart() && ok
  if (!rolloutOnly) ok = await llmPart() && ok
  if (once) await shutdown(ok ? 0 : 1)
  else console.log('running; Ctrl-C stops the models and the routers')
} catch (err) {
  console.error(`demo failed: ${err.message}`)
  await shutdown(1)
}
