// What an experiment is across changing plans: weights start periods, arms/control/salt start over.
import { describe, expect, it } from 'vitest'
import { Tally } from '../src/evaluation/index.js'
import { Metrics } from '../src/metrics/index.js'

describe('the tally across changing plans', () => {
  it('expects each period\'s assignments at that period\'s weights', () => {
    const t = new Tally(new Metrics({ defaultMetrics: false }))
    const a = t.assignmentCounter('r', 'a')
    const b = t.assignmentCounter('r', 'b')
    t.observe('r', 'exp1', ['a', 'b'], [0.9, 0.1])
    a.count += 90
    b.count += 10
    t.observe('r', 'exp1', ['a', 'b'], [0.5, 0.5])
    a.count += 50
    b.count += 50
    expect(t.expected('r', 'a')).toBeCloseTo(90 + 50, 9)
    expect(t.expected('r', 'b')).toBeCloseTo(10 + 50, 9)
    // The same shares again start no period.
    t.observe('r', 'exp1', ['a', 'b'], [0.5, 0.5])
    expect(t.expected('r', 'b')).toBeCloseTo(60, 9)
  })

  it('starts an experiment over when its arms, control or salt change, and keeps sequential p at its running minimum', () => {
    const t = new Tally(new Metrics({ defaultMetrics: false }))
    const a = t.assignmentCounter('r', 'a')
    t.observe('r', 'exp1', ['a', 'b'], [0.5, 0.5])
    a.count += 10
    t.addOutcome('r', 'a', 'converted', 1)
    expect(t.runningMin('r', 'converted\u0000b', 0.04)).toBe(0.04)
    expect(t.runningMin('r', 'converted\u0000b', 0.2)).toBe(0.04)
    t.observe('r', 'exp2', ['a', 'b'], [0.5, 0.5])
    expect(t.assignments('r', 'a')).toBe(0)
    expect(a.count).toBe(0)
    expect(t.outcomes('r', 'a', 'converted').n).toBe(0)
    expect(t.runningMin('r', 'converted\u0000b', 0.2)).toBe(0.2)
  })
})
