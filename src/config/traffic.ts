// Where a route's traffic goes: its `split` between models, the model for users without an id
// (`missing_user_id`), the `shadow` models it mirrors to and how their answers are `compare`d.
import { buildNginxSplit } from '../assign/index.js'
import { compilePredictionSpec } from '../compare/index.js'
import { describe, type Checker, type KeyPath } from './check.js'
import { readPromoteWhen } from './decisions.js'
import { DEFAULTS } from './defaults.js'
import type { CompareConfig, HashAlgorithm, ShadowConfig, SplitEntry } from './types.js'

const SPLIT_KEYS = ['model', 'weight'] as const
const SHADOW_KEYS = ['model', 'percent', 'max_in_flight', 'promote_when', 'stream'] as const
const COMPARE_KEYS = ['prediction', 'tolerance', 'mode', 'rtol'] as const

/**
 * The smallest positive weight: below it a rendezvous score −ln(u)/weight overflows to Infinity and
 * the model could win no user, or no model could.
 */
const MIN_POSITIVE_WEIGHT = 1e-9

/** `routes[].split`: the models the route's users are divided between, and their relative weights. */
export function readSplit(c: Checker, value: unknown, path: KeyPath, models: Record<string, unknown> | undefined, hash: HashAlgorithm): SplitEntry[] | undefined {
  if (value === undefined || value === null) return undefined // reported as required
  const list = c.list(value, path, '{ model, weight } entries')
  if (list === undefined) return undefined
  if (list.length === 0) {
    c.add(path, 'must list at least one { model, weight }')
    return undefined
  }
  const out: SplitEntry[] = []
  const seen = new Map<string, number>()
  let ok = true
  list.forEach((raw, i) => {
    const p = [...path, i]
    const o = c.object(raw, p, SPLIT_KEYS, ['model', 'weight'])
    if (o === undefined) return void (ok = false)
    const model = c.string(o.model, [...p, 'model'])
    if (o.weight !== undefined && o.weight !== null && (typeof o.weight !== 'number' || !Number.isFinite(o.weight) || o.weight < 0)) {
      c.add([...p, 'weight'], `must be a number >= 0, got ${describe(o.weight)}`)
      ok = false
    } else if (typeof o.weight === 'number' && o.weight > 0 && o.weight < MIN_POSITIVE_WEIGHT) {
      c.add([...p, 'weight'], `must be 0 or at least ${MIN_POSITIVE_WEIGHT}, got ${o.weight}: weights are relative, so write them on a larger scale (such as percentages)`)
      ok = false
    }
    if (model === undefined || typeof o.weight !== 'number') return void (ok = false)
    if (models !== undefined && !Object.hasOwn(models, model)) {
      c.add([...p, 'model'], `model "${model}" is not defined under models; defined: ${Object.keys(models).join(', ') || '(none)'}`)
      ok = false
    }
    const dup = seen.get(model)
    if (dup !== undefined) {
      c.add([...p, 'model'], `model "${model}" appears twice in this split (also at [${dup}]): give it one entry with the summed weight`)
      ok = false
    }
    seen.set(model, i)
    out.push({ model, weight: o.weight })
  })
  if (ok && out.every((s) => s.weight === 0)) {
    c.add(path, 'all weights are 0: at least one model needs a positive weight to receive traffic')
    return undefined
  }
  if (!ok) return undefined
  // Shares are weight / sum: a sum that overflows to Infinity would give every model share 0.
  const total = out.reduce((a, s) => a + s.weight, 0)
  if (!Number.isFinite(total)) {
    c.add(path, `weights sum to ${total}: they are relative, so write them on a small scale such as percentages (50, 50)`)
    return undefined
  }
  if (hash === 'nginx') {
    // nginx's split_clients writes shares in 0.01% steps: a positive weight below that has no
    // percentage nginx could express, so the split is refused here rather than when it is built.
    try {
      buildNginxSplit(out.map((s) => s.weight))
    } catch (err) {
      const m = /^weight (\d+)/.exec((err as Error).message)
      c.add(m === null ? path : [...path, Number(m[1]), 'weight'], `hash: nginx: ${(err as Error).message}`)
      return undefined
    }
  }
  return out
}

/** `routes[].missing_user_id`: random, reject or the model that answers a request with no user id. */
export function readMissing(c: Checker, value: unknown, path: KeyPath, models: Record<string, unknown> | undefined): string | undefined {
  const s = c.string(value, path, 'random')
  if (s === undefined || s === 'random' || s === 'reject') return s
  if (models !== undefined && !Object.hasOwn(models, s)) {
    c.add(path, `must be random, reject or a defined model name; "${s}" is not defined under models`)
    return undefined
  }
  return s
}

/** `routes[].shadow`: the models each request is mirrored to, in what share, with what cap. */
export function readShadows(c: Checker, value: unknown, path: KeyPath, models: Record<string, unknown> | undefined): ShadowConfig[] | undefined {
  if (value === undefined || value === null) return []
  const list = c.list(value, path, '{ model, percent, max_in_flight } entries')
  if (list === undefined) return undefined
  const out: ShadowConfig[] = []
  const seen = new Map<string, number>()
  let ok = true
  list.forEach((raw, i) => {
    const p = [...path, i]
    const o = c.object(raw, p, SHADOW_KEYS, ['model'])
    if (o === undefined) return void (ok = false)
    const model = c.string(o.model, [...p, 'model'])
    const percent = c.number(o.percent, [...p, 'percent'], { min: 0, max: 100, fallback: 100 })
    const maxInFlight = c.number(o.max_in_flight, [...p, 'max_in_flight'], { min: 1, integer: true, fallback: DEFAULTS.max_in_flight })
    const promoteWhen = readPromoteWhen(c, o.promote_when, [...p, 'promote_when'])
    const stream = c.oneOf(o.stream, [...p, 'stream'], ['as_requested', 'off'] as const, 'as_requested')
    if (model === undefined || percent === undefined || maxInFlight === undefined || promoteWhen === undefined) return void (ok = false)
    if (models !== undefined && !Object.hasOwn(models, model)) {
      c.add([...p, 'model'], `model "${model}" is not defined under models; defined: ${Object.keys(models).join(', ') || '(none)'}`)
      ok = false
    }
    const dup = seen.get(model)
    if (dup !== undefined) {
      c.add([...p, 'model'], `model "${model}" is shadowed twice on this route (also at [${dup}])`)
      ok = false
    }
    seen.set(model, i)
    out.push({ model, percent, max_in_flight: maxInFlight, promote_when: promoteWhen, stream })
  })
  return ok ? out : undefined
}

/** `routes[].compare`: how a shadow's prediction is compared with the primary's. */
export function readCompare(c: Checker, value: unknown, path: KeyPath): CompareConfig | undefined {
  if (value === undefined || value === null) return DEFAULTS.compare
  const o = c.object(value, path, COMPARE_KEYS)
  if (o === undefined) return undefined
  const prediction = c.string(o.prediction, [...path, 'prediction'], DEFAULTS.compare.prediction)
  if (prediction !== undefined && prediction !== 'auto') {
    try {
      compilePredictionSpec(prediction)
    } catch (err) {
      c.add([...path, 'prediction'], `must be auto or a JSON Pointer such as /predictions/0/score: ${(err as Error).message}`)
      return undefined
    }
  }
  const tolerance = c.number(o.tolerance, [...path, 'tolerance'], { min: 0, fallback: DEFAULTS.compare.tolerance })
  const mode = c.oneOf(o.mode, [...path, 'mode'], ['exact', 'argmax'] as const, 'exact')
  const rtol = o.rtol === undefined || o.rtol === null ? null : c.number(o.rtol, [...path, 'rtol'], { min: 0 })
  if (prediction === undefined || tolerance === undefined || rtol === undefined) return undefined
  return rtol === null ? { prediction, tolerance, mode } : { prediction, tolerance, mode, rtol }
}
