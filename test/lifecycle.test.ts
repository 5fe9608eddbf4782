import { describe, expect, it } from 'vitest'
import { Lifecycle, STOP_ORDER } from '../src/lifecycle.js'

// lifecycle.ts holds the one order a router stops in, for one process and for the primary of
// `serve --workers`: what each mode registers, it stops in that order, and one part that fails
// does not keep the rest (the records above all) from closing.
describe('Lifecycle', () => {
  it('stops the parts in STOP_ORDER whatever order they were registered in, once', async () => {
    const errors: string[] = []
    const life = new Lifecycle((message) => errors.push(message))
    const stopped: string[] = []
    for (const name of [...STOP_ORDER].reverse()) life.add(name, async () => { await Promise.resolve(); stopped.push(name) })
    const [a, b] = [life.stop(() => 1000), life.stop(() => 1000)]
    expect(life.isStopping).toBe(true)
    await Promise.all([a, b])
    expect(stopped).toEqual([...STOP_ORDER])
    expect(errors).toEqual([])
  })

  it('goes on after a part that throws, and says which', async () => {
    const errors: string[] = []
    const life = new Lifecycle((message) => errors.push(message))
    const stopped: string[] = []
    life.add('records', () => { stopped.push('records') })
    life.add('traffic', () => { throw new Error('boom') })
    life.add('admin', () => { stopped.push('admin') })
    await life.stop(() => 1000)
    expect(stopped).toEqual(['records', 'admin'])
    expect(errors).toEqual(['shutdown: stopping traffic failed; stopping the rest'])
  })

  it('gives each part what is left of one budget', async () => {
    const life = new Lifecycle(() => undefined)
    const seen: number[] = []
    life.add('traffic', async (remaining) => {
      seen.push(remaining())
      await new Promise((resolve) => setTimeout(resolve, 60))
    })
    life.add('tracing', (remaining) => { seen.push(remaining()) })
    await life.stop(() => 500)
    expect(seen[0]).toBeLessThanOrEqual(500)
    expect(seen[1]).toBeLessThanOrEqual(500 - 50)
    expect(seen[1]).toBeGreaterThanOrEqual(0)
  })
})
