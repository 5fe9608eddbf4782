// Validation of the decision keys: every mistake named with its line and key path.
import { describe, expect, it } from 'vitest'
import { parseDuration } from '../src/config/decisions.js'
import { compile } from '../src/plan/index.js'

const base = (route: string, top = '') => `${top}models:
  v1: { url: "http://127.0.0.1:9001" }
  v2: { url: "http://127.0.0.1:9002" }
  v3: { url: "http://127.0.0.1:9003" }
routes:
  - name: churn
    path: /churn
    metrics: [{ name: converted, type: binary }]
    split:
      - { model: v1, weight: 100 }
      - { model: v2, weight: 0 }
${route}`

const problemsOf = (text: string) => {
  const r = compile(text, 'router.yaml')
  return r.ok ? [] : r.problems.map((p) => ({ line: p.line, path: p.path, message: p.message }))
}

describe('decision keys', () => {
  it('accepts the issue\'s example and fills the defaults', () => {
    const r = compile(base(`    rollout:
      candidate: v2
      steps: [1, 5, 10, 25, 50, 100]
      step_interval: 10m
      min_requests: 1000
      gates: { max_error_rate_increase: 0.005, max_p99_latency_ratio: 1.25, guardrails: [converted] }
      on_failure: rollback
      promote: true
    shadow:
      - model: v3
        percent: 100
        promote_when: { min_compared: 5000, min_agreement: 0.97, max_p99_latency_ratio: 1.2, max_error_rate: 0.001 }
`, 'evaluation:\n  interval: 60s\n  prometheus: { url: "http://prometheus:9090", lookback: 30d }\n').replace('      - { model: v2, weight: 0 }', '      - { model: v2, weight: 0 }\n      - { model: v3, weight: 0 }'), 'router.yaml')
    expect(r.ok ? [] : r.problems).toEqual([])
    if (!r.ok) return
    expect(r.plan.config.evaluation).toEqual({ interval_ms: 60_000, prometheus: { url: 'http://prometheus:9090', lookback_ms: 30 * 86_400_000, scrape_interval_ms: 15_000 } })
    expect(r.plan.config.routes[0]?.rollout).toMatchObject({ candidate: 'v2', step_interval_ms: 600_000, on_failure: 'rollback' })
  })

  it.each([
    ['a candidate not in the split', '    rollout: { candidate: v3, steps: [10, 100] }\n', 12, 'routes[0].rollout.candidate', /"v3" must be a model in this route's split/],
    ['steps not strictly increasing', '    rollout: { candidate: v2, steps: [10, 5, 100] }\n', 12, 'routes[0].rollout.steps[1]', /strictly increasing: 5 follows 10/],
    ['a single step of 100', '    rollout: { candidate: v2, steps: [100] }\n', 12, 'routes[0].rollout.steps', /cannot start at 100: .* list a step below it first, e\.g\. \[50, 100\]/],
    ['a step outside 0–100', '    rollout: { candidate: v2, steps: [10, 150] }\n', 12, 'routes[0].rollout.steps[1]', /percent in \(0, 100\], got 150/],
    ['a duration without a unit', '    rollout: { candidate: v2, steps: [10, 100], step_interval: 600 }\n', 12, 'routes[0].rollout.step_interval', /duration with a unit/],
    ['rollout and bandit on one route', '    rollout: { candidate: v2, steps: [50, 100] }\n    bandit: { metric: converted }\n', 13, 'routes[0].bandit', /a rollout or a bandit, not both/],
    ['a bandit metric the route does not declare', '    bandit: { metric: revenue }\n', 12, 'routes[0].bandit.metric', /metric "revenue" is not declared/],
    ['a guardrail the route does not declare', '    rollout: { candidate: v2, steps: [50, 100], gates: { guardrails: [revenue] } }\n', 12, 'routes[0].rollout.gates.guardrails[0]', /metric "revenue" is not declared/],
    ['promote_when on a route without rollout', '    shadow: [{ model: v3, promote_when: { min_compared: 10 } }]\n', 12, 'routes[0].shadow[0].promote_when', /needs a rollout on this route/],
  ])('names %s with its line and key path', (_name, route, line, path, message) => {
    const problems = problemsOf(base(route))
    expect(problems).toContainEqual({ line, path, message: expect.stringMatching(message) })
  })

  it('refuses an interval too short for Prometheus\' scrape', () => {
    const problems = problemsOf(base('', 'evaluation:\n  interval: 20s\n  prometheus: { url: "http://127.0.0.1:9090", scrape_interval: 15s }\n'))
    expect(problems).toContainEqual({ line: 2, path: 'evaluation.interval', message: expect.stringMatching(/at least twice evaluation.prometheus.scrape_interval \(15s\)/) })
  })

  it('reads durations as Prometheus and Kubernetes write them', () => {
    expect([parseDuration('500ms'), parseDuration('30s'), parseDuration('10m'), parseDuration('2h'), parseDuration('30d'), parseDuration('1.5s')]).toEqual([500, 30_000, 600_000, 7_200_000, 2_592_000_000, 1500])
    expect([parseDuration('10'), parseDuration('10 m'), parseDuration('1w'), parseDuration('')]).toEqual([undefined, undefined, undefined, undefined])
  })
})
