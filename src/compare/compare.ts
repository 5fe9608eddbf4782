/** How two predictions are compared: numeric tolerance, and whether probability rows compare by argmax. */
export type CompareOptions = { tolerance: number; mode: 'exact' | 'argmax' }

/** Agreement between a primary and a shadow prediction, or why they could not be compared. */
export type Comparison =
  | {
      agree: boolean
      abs_diff_max: number | null
      abs_diff_mean: number | null
      fraction_agree: number
      compared: number
    }
  | { error: string }

/** Running totals for one comparison; one object per call, nothing allocated per leaf. */
type Tally = {
  readonly tolerance: number
  readonly argmax: boolean
  compared: number
  agreed: number
  diffCount: number
  diffSum: number
  diffMax: number
  error: string
  // Filled only on the way back up from a mismatch, so the happy path pays nothing for it.
  errorPath: Array<string | number>
}

/**
 * Compares a shadow prediction with the primary's, leaf by leaf; structural mismatches
 * (array lengths, array vs scalar) are errors, a key missing on one side is a disagreement.
 */
export function comparePredictions(primary: unknown, shadow: unknown, opts: CompareOptions): Comparison {
  if (!(Number.isFinite(opts.tolerance) && opts.tolerance >= 0)) {
    return { error: `tolerance must be a finite number >= 0, got ${String(opts.tolerance)}` }
  }
  if (opts.mode !== 'exact' && opts.mode !== 'argmax') {
    return { error: `mode must be "exact" or "argmax", got ${JSON.stringify(opts.mode)}` }
  }
  const tally: Tally = {
    tolerance: opts.tolerance,
    argmax: opts.mode === 'argmax',
    compared: 0,
    agreed: 0,
    diffCount: 0,
    diffSum: 0,
    diffMax: 0,
    error: '',
    errorPath: [],
  }
  try {
    if (!walk(primary, shadow, tally)) {
      const where = tally.errorPath.length === 0 ? '' : ` at /${tally.errorPath.map(escapeToken).join('/')}`
      return { error: `shape mismatch${where}: ${tally.error}` }
    }
  } catch (err) {
    if (err instanceof RangeError) return { error: 'prediction is nested too deeply to compare' }
    throw err
  }
  return {
    agree: tally.agreed === tally.compared,
    abs_diff_max: tally.diffCount === 0 ? null : tally.diffMax,
    abs_diff_mean: tally.diffCount === 0 ? null : tally.diffSum / tally.diffCount,
    // Nothing to compare (e.g. two empty batches) is vacuous agreement, not 0/0.
    fraction_agree: tally.compared === 0 ? 1 : tally.agreed / tally.compared,
    compared: tally.compared,
  }
}

/** Returns false (with `tally.error` set) when the two values cannot be aligned. */
function walk(a: unknown, b: unknown, tally: Tally): boolean {
  const aIsArray = Array.isArray(a)
  const bIsArray = Array.isArray(b)
  if (aIsArray || bIsArray) {
    if (!aIsArray || !bIsArray) return mismatch(tally, `primary is ${describe(a)}, shadow is ${describe(b)}`)
    if (a.length !== b.length) {
      // Element i of one batch no longer lines up with element i of the other, so any
      // per-element agreement would be noise: report it instead of guessing an alignment.
      return mismatch(tally, `primary has ${a.length} elements, shadow has ${b.length}`)
    }
    if (tally.argmax && isNumberRow(a) && isNumberRow(b)) {
      compareRow(a, b, tally)
      return true
    }
    for (let i = 0; i < a.length; i++) {
      if (!walk(a[i], b[i], tally)) {
        tally.errorPath.unshift(i)
        return false
      }
    }
    return true
  }
  const aIsObject = typeof a === 'object' && a !== null
  const bIsObject = typeof b === 'object' && b !== null
  if (aIsObject || bIsObject) {
    if (!aIsObject || !bIsObject) return mismatch(tally, `primary is ${describe(a)}, shadow is ${describe(b)}`)
    return walkObjects(a as Record<string, unknown>, b as Record<string, unknown>, tally)
  }
  if (typeof a === 'number' && typeof b === 'number') {
    compareNumbers(a, b, tally)
    return true
  }
  // Labels, booleans and null must match exactly; a number against a string simply disagrees.
  tally.compared++
  if (a === b) tally.agreed++
  return true
}

function walkObjects(a: Record<string, unknown>, b: Record<string, unknown>, tally: Tally): boolean {
  // for…in with Object.hasOwn avoids the key arrays Object.keys would allocate.
  for (const key in a) {
    if (!Object.hasOwn(a, key)) continue
    if (Object.hasOwn(b, key)) {
      if (!walk(a[key], b[key], tally)) {
        tally.errorPath.unshift(key)
        return false
      }
    } else {
      tally.compared += Math.max(1, countLeaves(a[key], tally.argmax))
    }
  }
  for (const key in b) {
    if (Object.hasOwn(b, key) && !Object.hasOwn(a, key)) {
      tally.compared += Math.max(1, countLeaves(b[key], tally.argmax))
    }
  }
  return true
}

function compareNumbers(a: number, b: number, tally: Tally): void {
  tally.compared++
  if (Number.isNaN(a) || Number.isNaN(b)) {
    // A model that outputs NaN where the other does not is a disagreement worth seeing.
    if (Number.isNaN(a) && Number.isNaN(b)) tally.agreed++
    return
  }
  if (!Number.isFinite(a) || !Number.isFinite(b)) {
    // Infinities agree only with themselves; their difference would poison max and mean.
    if (a === b) tally.agreed++
    return
  }
  const diff = recordDiff(a, b, tally)
  if (diff <= tally.tolerance) tally.agreed++
}

/** One probability row counts as one compared leaf: it agrees when both pick the same class. */
function compareRow(a: readonly number[], b: readonly number[], tally: Tally): void {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number
    const y = b[i] as number
    if (Number.isFinite(x) && Number.isFinite(y)) recordDiff(x, y, tally)
  }
  tally.compared++
  if (argmax(a) === argmax(b)) tally.agreed++
}

function recordDiff(a: number, b: number, tally: Tally): number {
  const diff = Math.abs(a - b)
  tally.diffCount++
  tally.diffSum += diff
  if (diff > tally.diffMax) tally.diffMax = diff
  return diff
}

/** Index of the largest value, first one on ties; a NaN wins, as in numpy.argmax. */
function argmax(row: readonly number[]): number {
  let best = 0
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number
    if (Number.isNaN(v)) return i
    if (v > (row[best] as number)) best = i
  }
  return best
}

function isNumberRow(value: readonly unknown[]): value is number[] {
  if (value.length === 0) return false
  for (const v of value) {
    if (typeof v !== 'number') return false
  }
  return true
}

/** Leaves a value would contribute had the other side had it too. */
function countLeaves(value: unknown, argmaxMode: boolean): number {
  if (Array.isArray(value)) {
    if (argmaxMode && isNumberRow(value)) return 1
    let n = 0
    for (const v of value) n += countLeaves(v, argmaxMode)
    return n
  }
  if (typeof value === 'object' && value !== null) {
    let n = 0
    for (const key in value) {
      if (Object.hasOwn(value, key)) n += countLeaves((value as Record<string, unknown>)[key], argmaxMode)
    }
    return n
  }
  return 1
}

function mismatch(tally: Tally, message: string): false {
  tally.error = message
  return false
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length} element${value.length === 1 ? '' : 's'}`
  if (value === null) return 'null'
  if (typeof value === 'object') return 'an object'
  return `a ${typeof value}`
}

// RFC 6901 §3 escaping, so the error path can be pasted back into a pointer spec.
function escapeToken(token: string | number): string {
  return typeof token === 'number' ? String(token) : token.replaceAll('~', '~0').replaceAll('/', '~1')
}
