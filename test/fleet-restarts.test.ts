// Replicas that restart and join while a rollout runs, behind a real Prometheus: two or three
// routers on ephemeral ports, each scraped every second, deciding every 2 s on their own scheduler
// (no test calls tick here). The admin ports are chosen before Prometheus starts, so a replica that
// joins later, or comes back on the same port after a restart, is already a target: a restarted
// replica is the same series starting again from zero, as a restarted pod is.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { buildServer, type Router } from '../src/server.js'
import { prometheusBin, startPrometheus, type RunningPrometheus } from './helpers/prometheus.js'
import { parseMetrics } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'
import { freePort, jsonEcho } from './helpers/upstream.js'

const INTERVAL = 2000

interface Decision { at: string; kind: string; result: string; reason: string; inputs?: { control?: unknown; candidate?: { requests: number } } }
interface Status {
  state: string; percent: number; control: string; candidate: string; step_started_at: string
  effective_shares: Record<string, number>; decisions: Decision[]
}

interface Replica {
  readonly name: string
  readonly dir: string
  readonly adminPort: number
  running?: { url: string; adminUrl: string; router: Router }
}

const config = (v1: string, v2: string, prom: string, steps: string, stepInterval: string): string => `evaluation:
  interval: 2s
  prometheus: { url: "${prom}", scrape_interval: 1s, lookback: 1m }
models:
  v1: { url: "${v1}" }
  v2: { url: "${v2}" }
routes:
  - name: churn
    path: /churn
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
    rollout: { candidate: v2, steps: ${steps}, step_interval: ${stepInterval}, min_requests: 20, gates: { max_p99_latency_ratio: 100 } }
`

/**
 * `size` replica slots (each with its own directory, so its decisions.json survives a restart, and
 * its admin port), Prometheus scraping all of them, models v1 and v2, and a traffic loop over the
 * replicas that are up. Everything stops when the test finishes.
 */
async function fleet(size: number, steps: string, stepInterval: string) {
  const v1 = await upstream(jsonEcho('v1'))
  const v2 = await upstream(jsonEcho('v2'))
  const promPort = await freePort()
  const yaml = config(v1.url, v2.url, `http://127.0.0.1:${promPort}`, steps, stepInterval)
  const replicas: Replica[] = []
  for (let i = 0; i < size; i++) {
    const dir = await mkdtemp(join(tmpdir(), `modelsplit-fleet-${i}-`))
    await writeFile(join(dir, 'router.yaml'), yaml)
    replicas.push({ name: `r${i}`, dir, adminPort: await freePort() })
  }
  const prom: RunningPrometheus = await startPrometheus(replicas.map((r) => `127.0.0.1:${r.adminPort}`), [], promPort)
  let traffic = true
  let user = 0
  const loop = (async () => {
    while (traffic) {
      const up = replicas.filter((r) => r.running !== undefined)
      await Promise.all(up.map((r) => fetch(`${r.running?.url}/churn`, { headers: { 'x-user-id': `u${user++}` } }).then((x) => x.text()).catch(() => undefined)))
      // Pacing, not synchronisation: about 50 requests a second per replica.
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  const stop = async (r: Replica): Promise<void> => {
    const running = r.running
    r.running = undefined
    await running?.router.close()
  }
  onTestFinished(async () => {
    traffic = false
    await loop
    for (const r of replicas) await stop(r)
    await prom.close()
    for (const r of replicas) await rm(r.dir, { recursive: true, force: true })
  })
  return {
    replicas,
    prom,
    /** Starts (or restarts, from its directory and on its admin port) a replica; resolves once it serves. */
    async start(r: Replica): Promise<void> {
      const router = await buildServer({ configFile: join(r.dir, 'router.yaml'), watch: false, defaultMetrics: false })
      const { url, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: r.adminPort })
      r.running = { url, adminUrl, router }
    },
    stop,
    async status(r: Replica): Promise<Status> {
      return await (await fetch(`${r.running?.adminUrl}/admin/rollouts/churn`)).json() as Status
    },
    /** The largest value of a query's answer (NaN with none). */
    async max(q: string): Promise<number> {
      const values = (await prom.query(q)).map((s) => Number(s.value[1]))
      return values.length === 0 ? Number.NaN : Math.max(...values)
    },
  }
}

type Fleet = Awaited<ReturnType<typeof fleet>>

/** Polls until `check` passes, or fails with its last error at the deadline. */
const until = <T>(check: () => Promise<T>, timeout = 20_000): Promise<T> => vi.waitFor(check, { timeout, interval: 50 })

/** The model each of 200 users gets from a replica. */
async function modelsOf(r: Replica): Promise<string[]> {
  return Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const res = await fetch(`${r.running?.url}/churn`, { headers: { 'x-user-id': `same-${i}` } })
    await res.text()
    return res.headers.get('x-served-by') ?? ''
  }))
}

/**
 * The models 200 users get from each replica, asked while no decision moved any of them (their
 * step starts the same before and after): the fleet's decisions land at one instant on every
 * replica, but the requests cannot, so a round that straddles a boundary is asked again.
 */
async function modelsOfEach(f: Fleet, rs: readonly Replica[]): Promise<string[][]> {
  return until(async () => {
    const steps = async (): Promise<string> => JSON.stringify((await Promise.all(rs.map((r) => f.status(r)))).map((s) => [s.state, s.step_started_at]))
    const before = await steps()
    const models = await Promise.all(rs.map(modelsOf))
    expect(await steps()).toBe(before)
    expect(new Set(JSON.parse(before).map((x: unknown) => JSON.stringify(x))).size, before).toBe(1)
    return models
  })
}

const noRestartHold = (s: Status): void => {
  expect(s.decisions.filter((d) => /went down|replica restarted/.test(d.reason))).toEqual([])
}

describe.skipIf(prometheusBin === '')('a fleet whose replicas restart and join during a rollout', () => {
  it('promotes when a replica restarts during the 100% step: its counters start from zero again and the control is judged by its baseline only', async () => {
    const f = await fleet(2, '[50, 100]', '4s')
    const [a, b] = f.replicas as [Replica, Replica]
    await f.start(a)
    await f.start(b)
    const at100 = await until(async () => {
      const s = await f.status(a)
      expect(s).toMatchObject({ percent: 100, state: expect.stringMatching(/running|holding/) })
      return s
    })
    // B has served the control on the 50% step: its counter of v1 drops to zero with the restart.
    await f.stop(b)
    await f.start(b)
    expect(Date.now(), 'B restarted inside the 100% step').toBeLessThan(Date.parse(at100.step_started_at) + 4000)
    const promoted: (string | undefined)[] = []
    for (const r of [a, b]) {
      const s = await until(async () => {
        const s = await f.status(r)
        expect(s.state, JSON.stringify(s.decisions.slice(-3))).toBe('promoted')
        return s
      })
      noRestartHold(s)
      // The candidate's requests on the step count B's before and after its restart.
      const promote = s.decisions.find((d) => d.result === 'promote')
      expect(promote?.inputs?.candidate?.requests).toBeGreaterThanOrEqual(20)
      expect(Date.parse(String(promote?.at))).toBeGreaterThanOrEqual(Date.parse(at100.step_started_at) + 4000)
      promoted.push(promote?.at)
    }
    expect(promoted[1]).toBe(promoted[0])
  }, 60_000)

  it('a replica started just after a boundary takes that boundary\'s decision with the fleet, and every user gets the same model from every replica', async () => {
    const f = await fleet(3, '[20, 60, 100]', '4s')
    const [a, b, c] = f.replicas as [Replica, Replica, Replica]
    await f.start(a)
    await f.start(b)
    const at60 = await until(async () => {
      const s = await f.status(a)
      expect(s.percent).toBe(60)
      return s
    })
    // The boundary where the fleet leaves 60% (the step lasts 4 s); C starts 100 ms after it,
    // before the others' decision there (a scrape interval after it) is in Prometheus.
    const leave = Date.parse(at60.step_started_at) + 4000
    await until(async () => expect(Date.now()).toBeGreaterThanOrEqual(leave + 100), 10_000)
    await f.start(c)
    expect(Date.now(), 'C started before the fleet\'s decision could be visible').toBeLessThan(leave + INTERVAL)
    // The fleet moves; C moves with it, not one step behind.
    let moved = 0
    const [sa, sc] = await until(async () => {
      const [sa, sc] = await Promise.all([f.status(a), f.status(c)])
      if (sa.percent === 100 && moved === 0) moved = Date.now()
      expect(sa.percent).toBe(100)
      expect(sc.percent).toBe(100)
      return [sa, sc]
    })
    expect(Date.now() - moved, 'C followed within a scrape of the fleet').toBeLessThan(1000)
    expect(sc.step_started_at).toBe(sa.step_started_at)
    expect(sc.effective_shares).toEqual(sa.effective_shares)
    const [ma, mb, mc] = await modelsOfEach(f, [a, b, c])
    expect(mc).toEqual(ma)
    expect(mb).toEqual(ma)
    // And from there on the three decide together: each promotes at the same boundary.
    const promoted = await Promise.all([a, b, c].map((r) => until(async () => {
      const s = await f.status(r)
      expect(s.state).toBe('promoted')
      return s.decisions.find((d) => d.result === 'promote')?.at
    })))
    expect(new Set(promoted).size).toBe(1)
  }, 60_000)

  it('a replica that joins during the 100% step reads the control\'s baseline from Prometheus and promotes with the fleet', async () => {
    const f = await fleet(3, '[50, 100]', '6s')
    const [a, b, c] = f.replicas as [Replica, Replica, Replica]
    await f.start(a)
    await f.start(b)
    await until(async () => expect(await f.max('modelsplit_rollout_step{route="churn"}')).toBe(100))
    await f.start(c)
    const joined = await f.status(c)
    expect(joined).toMatchObject({ percent: 100, state: expect.stringMatching(/running|holding/) })
    expect(joined.decisions.filter((d) => d.result === 'join')).toEqual([expect.objectContaining({ reason: expect.stringMatching(/at 100% since/) })])
    const [pa, pc] = await Promise.all([a, c].map((r) => until(async () => {
      const s = await f.status(r)
      expect(s.state, JSON.stringify(s.decisions.slice(-2))).toBe('promoted')
      return s.decisions.find((d) => d.result === 'promote') as Decision
    })))
    // C took the promotion itself, at the same boundary, judging the same baseline as A.
    expect(pc?.at).toBe(pa?.at)
    expect(pc?.inputs?.control).toEqual(pa?.inputs?.control)
    expect((pc?.inputs?.control as { requests: number }).requests).toBeGreaterThanOrEqual(20)
  }, 60_000)

  it('a replica restarted from an older decisions.json takes the fleet\'s step before it serves, then decides with the fleet', async () => {
    const f = await fleet(2, '[20, 60, 100]', '4s')
    const [a, b] = f.replicas as [Replica, Replica]
    await f.start(a)
    await f.start(b)
    const at20 = await f.status(b)
    expect(at20.percent).toBe(20)
    // B goes down on the 20% step (its decisions.json says so) and misses the boundary to 60%.
    await f.stop(b)
    const at60 = await until(async () => {
      const s = await f.status(a)
      expect(s.percent).toBe(60)
      return s
    })
    await until(async () => expect(await f.max('modelsplit_rollout_step{route="churn"}')).toBe(60))
    await f.start(b)
    // Before it answered anyone it was on the fleet's step, said so, and serves what A serves.
    // (A decision at a later boundary may already have followed: B takes it with A.)
    const back = await f.status(b)
    expect(back.percent).toBeGreaterThanOrEqual(60)
    expect(back.decisions.filter((d) => d.result === 'catch_up')).toEqual([expect.objectContaining({
      reason: expect.stringMatching(new RegExp(`\\w+ at 60% since ${at60.step_started_at} \\(this replica was at 20% \\(\\w+\\) since`)),
    })])
    const [ma, mb] = await modelsOfEach(f, [a, b])
    expect(mb).toEqual(ma)
    const promoted = await Promise.all([a, b].map((r) => until(async () => {
      const s = await f.status(r)
      expect(s.state, JSON.stringify(s.decisions.slice(-2))).toBe('promoted')
      noRestartHold(s)
      return s.decisions.filter((d) => d.kind === 'rollout' && /advance|promote/.test(d.result)).map((d) => d.at).at(-1)
    })))
    expect(promoted[1]).toBe(promoted[0])
  }, 60_000)
})

// The smaller items, on one router deciding from its own counters (the scheduler's interval is an
// hour: each test takes its decisions with tick at the boundary it chooses).
const single = (v1: string, v2: string, route: string): string => `evaluation: { interval: 1h }
models:
  v1: { url: "${v1}" }
  v2: { url: "${v2}" }
routes:
  - name: churn
    path: /churn
    metrics: [{ name: converted, type: binary }]
    split: [{ model: v1, weight: 100 }, { model: v2, weight: 0 }]
${route}`
const ROLLOUT = '    rollout: { candidate: v2, steps: [10, 50, 100], step_interval: 1s, min_requests: 20, gates: { max_p99_latency_ratio: 100 } }\n'

describe('what /admin/rollouts and the metrics say', () => {
  it('shows a decision\'s state only together with the weights it put in force', async () => {
    const r = await router(single((await upstream(jsonEcho('v1'))).url, (await upstream(jsonEcho('v2'))).url, ROLLOUT))
    await Promise.all(Array.from({ length: 400 }, (_, i) => fetch(`${r.url}/churn`, { headers: { 'x-user-id': `u${i}` } }).then((x) => x.text())))
    const start = Date.parse(String(r.router.decisions.status('churn')?.step_started_at))
    const seen: { percent: unknown; share: unknown }[] = []
    let done = false
    const tick = r.router.decisions.tick(start + 10_000).finally(() => { done = true })
    while (!done) {
      const s = r.router.decisions.status('churn') as { percent: number; effective_shares: Record<string, number> }
      seen.push({ percent: s.percent, share: Math.round(100 * (s.effective_shares.v2 ?? 0)) })
      await new Promise((resolve) => setImmediate(resolve))
    }
    await tick
    const s = r.router.decisions.status('churn') as { percent: number; effective_shares: Record<string, number> }
    seen.push({ percent: s.percent, share: Math.round(100 * (s.effective_shares.v2 ?? 0)) })
    expect(seen.at(-1)).toEqual({ percent: 50, share: 50 })
    expect(seen.filter((x) => x.percent !== x.share)).toEqual([])
  })

  it('an operator\'s resume just after a boundary holds that boundary and says why, not that a replica restarted', async () => {
    const r = await router(single((await upstream(jsonEcho('v1'))).url, (await upstream(jsonEcho('v2'))).url, ROLLOUT))
    expect((await r.router.decisions.act('churn', 'pause')).ok).toBe(true)
    expect((await r.router.decisions.act('churn', 'resume')).ok).toBe(true)
    const boundary = Math.floor(Date.now() / 3_600_000) * 3_600_000
    await r.router.decisions.tick(boundary)
    const s = r.router.decisions.status('churn') as { state: string; decisions: Decision[] }
    expect(s.state).toBe('running')
    expect(s.decisions.at(-1)).toMatchObject({ result: 'hold', reason: expect.stringMatching(/^holding at 10%: the step restarted at .*, after this boundary; its figures are judged from the next one$/) })
  })

  it('after a promotion names the new control in /admin/rollouts and modelsplit_rollout_info', async () => {
    const r = await router(single((await upstream(jsonEcho('v1'))).url, (await upstream(jsonEcho('v2'))).url, ROLLOUT))
    expect((await r.router.decisions.act('churn', 'promote')).ok).toBe(true)
    const s = await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json() as Status
    expect(s).toMatchObject({ state: 'promoted', candidate: 'v2', control: 'v2', effective_shares: { v1: 0, v2: 1 } })
    const info = [...parseMetrics(await (await fetch(`${r.adminUrl}/metrics`)).text())].filter(([k]) => k.startsWith('modelsplit_rollout_info{'))
    expect(info).toEqual([[expect.stringMatching(/candidate="v2",control="v2"/), 1]])
  })

  it('a bandit with no outcome yet holds its even shares at every boundary, and says why', async () => {
    const r = await router(single((await upstream(jsonEcho('v1'))).url, (await upstream(jsonEcho('v2'))).url, '    bandit: { metric: converted }\n'))
    await Promise.all(Array.from({ length: 100 }, (_, i) => fetch(`${r.url}/churn`, { headers: { 'x-user-id': `u${i}` } }).then((x) => x.text())))
    for (const boundary of [3_600_000, 7_200_000, 10_800_000]) await r.router.decisions.tick(boundary)
    const s = r.router.decisions.status('churn') as { effective_shares: Record<string, number>; decisions: Decision[] }
    expect(s.effective_shares).toEqual({ v1: 0.5, v2: 0.5 })
    expect(s.decisions.slice(1).map((d) => [d.result, d.reason])).toEqual(Array.from({ length: 3 }, () => ['hold', 'shares kept: no outcome of converted on any arm yet, nothing to reweight on']))
  })
})
