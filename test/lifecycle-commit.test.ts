// Nothing observable changes before a reload commits: binding a new plan (what a reload does before
// its swap, and may still fail after) leaves the route's experiment as it was; only once the plan
// is in force (observePlan) does a new experiment start, and the arms bound before the swap then
// count their users into it.
import { afterEach, describe, expect, it } from 'vitest'
import { Tally } from '../src/evaluation/index.js'
import { unitHash } from '../src/experiment/index.js'
import { Metrics } from '../src/metrics/index.js'
import { compile, type Plan } from '../src/plan/index.js'
import { bindPlan, observePlan } from '../src/proxy/runtime.js'
import { Pools } from '../src/upstream/pools.js'

const yaml = (salt: string): string => `models:
  a: { url: "http://127.0.0.1:9" }
  b: { url: "http://127.0.0.1:10" }
routes:
  - name: r
    path: /r
    salt: ${salt}
    split: [{ model: a, weight: 1 }, { model: b, weight: 1 }]
    metrics: [{ name: clicked, type: binary }]
`

function plan(salt: string): Plan {
  const c = compile(yaml(salt), 'f.yaml')
  if (!c.ok) throw new Error(JSON.stringify(c.problems))
  return c.plan
}

const pools = new Pools()
afterEach(() => pools.close(true))

describe('a reload before it commits', () => {
  it('binding a plan of another experiment changes nothing until it is in force', () => {
    const tally = new Tally(new Metrics({ defaultMetrics: false }))
    const first = bindPlan(plan('one'), new Metrics({ defaultMetrics: false }), tally, pools)
    observePlan(first, tally)
    tally.addOutcome('r', 'a', 'clicked', 1)
    const arm = first.routes[0]?.targets[0]
    arm?.users.sample?.see(unitHash('alice'), 0)
    expect(tally.route('r')?.users.size).toBe(1)

    // A new salt is a new experiment: prepared (bound), not yet swapped in.
    const second = bindPlan(plan('two'), new Metrics({ defaultMetrics: false }), tally, pools)
    expect(tally.outcomes('r', 'a', 'clicked').n).toBe(1)
    expect(tally.route('r')?.users.size).toBe(1)

    // In force: the new experiment starts from nothing, and the new arms count into it.
    observePlan(second, tally)
    expect(tally.outcomes('r', 'a', 'clicked').n).toBe(0)
    second.routes[0]?.targets[0]?.users.sample?.see(unitHash('bob'), 0)
    expect(tally.route('r')?.users.size).toBe(1)
    expect(tally.route('r')?.users.entries()).toEqual([[unitHash('bob'), 0, 0]])
  })
})
