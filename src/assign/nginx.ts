/**
 * `hash: nginx` — reproduces nginx's `split_clients` bit for bit, so a team moving a split off
 * nginx keeps every user on the model nginx gave them.
 *
 * What nginx does (nginx/nginx, src/http/modules/ngx_http_split_clients_module.c):
 * - `ngx_http_split_clients()` parses each `NN.NN%` with `ngx_atofp(value, len - 1, 2)`
 *   (src/core/ngx_string.c): a fixed-point number with at most two decimals, so 90.00% → 9000;
 *   `*` → 0. A result of 0 ("0%", "0.00%") is rejected as "invalid percent value".
 * - `ngx_conf_split_clients_block()` then, in list order, checks `sum > 10000` ("percent total is
 *   greater than 100%"; `*` counts as bringing the sum to exactly 10000) and turns each non-`*`
 *   part into a cumulative uint32 threshold:
 *   `last += part[i].percent * (uint64_t) 0xffffffff / 10000; part[i].percent = last;`
 *   i.e. each part's width is floored on its own (64-bit product, integer division) before it is
 *   added; `last` is uint32_t and never wraps because the widths sum to at most 0xffffffff.
 * - `ngx_http_split_clients_variable()` hashes the evaluated key with `ngx_murmur_hash2(data,
 *   len)` (src/core/ngx_murmurhash.c: MurmurHash2, `h = 0 ^ len`, i.e. seed 0, over the raw bytes)
 *   and returns the first part with `hash < part[i].percent || part[i].percent == 0`; if none
 *   matches (percentages below 100% and no `*`) the variable is empty.
 */
import murmurhash from 'murmurhash'

export interface NginxSplit {
  /** index into the route's split list for each part, in list order */
  readonly indices: Uint16Array
  /** cumulative uint32 threshold per part; 0 = '*' */
  readonly thresholds: Uint32Array
  /** "90.00%" or "*" per part, for nginx config and /admin/assign */
  readonly percents: readonly string[]
}

/** 1 unit = 0.01%: what `ngx_atofp(.., .., 2)` yields for a percentage. */
const BASIS = 10000
const UINT32_MAX = 0xffffffff
const ENCODER = new TextEncoder()

/**
 * Builds the nginx parts for a route's weights, in list order; zero weights are omitted and the
 * last positive-weight model becomes `*`.
 *
 * Percentages: each cumulative boundary (the share of this model plus all before it) is rounded
 * to the nearest 0.01%, and a model's percentage is the difference of its two boundaries. So
 * - weights copied from an nginx config (33.33 / 33.33 / 33.34) give that config back exactly,
 *   where truncating a float share (33.33 / 100 · 10000 = 3332.999…) would turn 33.33% into 33.32%;
 * - every model's traffic is within 0.01% of its share, and the errors don't add up down the list;
 * - the percentages never total more than 100%: the last boundary is at most the whole.
 * A positive weight whose part would round to 0.00% (nginx rejects 0%, and `*` left with nothing
 * would get 1 hash in 2^32) throws a RangeError: nginx cannot express it.
 */
export function buildNginxSplit(weights: readonly number[]): NginxSplit {
  const live: number[] = []
  let total = 0
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number
    if (!Number.isFinite(w) || w < 0) {
      throw new RangeError(`weight ${i} is ${w}: weights must be finite and >= 0`)
    }
    if (w > 0) {
      live.push(i)
      total += w
    }
  }
  if (live.length === 0) throw new RangeError('at least one weight must be positive')
  if (live.length > 0xffff) throw new RangeError('too many models for one split')

  const n = live.length
  const indices = Uint16Array.from(live)
  const thresholds = new Uint32Array(n)
  const percents: string[] = []
  let cumWeight = 0
  let boundary = 0 // in 0.01% units
  let last = 0 // uint32 `last` of ngx_conf_split_clients_block()
  for (let p = 0; p < n; p++) {
    const index = live[p] as number
    if (p === n - 1) {
      if (boundary >= BASIS) throw tooSmall(index, weights, total)
      percents.push('*') // thresholds[p] stays 0, which nginx reads as `*`
      break
    }
    cumWeight += weights[index] as number
    const next = Math.min(BASIS, Math.round((cumWeight * BASIS) / total))
    const percent = next - boundary
    if (percent <= 0) throw tooSmall(index, weights, total)
    boundary = next
    // percent * 0xffffffff < 2^53, so the product and the remainder are exact doubles: this is
    // the C `percent * (uint64_t) 0xffffffff / 10000` with its truncating integer division.
    const product = percent * UINT32_MAX
    last += (product - (product % BASIS)) / BASIS
    thresholds[p] = last
    percents.push(`${formatPercent(percent)}%`)
  }
  return { indices, thresholds, percents }
}

function formatPercent(units: number): string {
  const whole = Math.floor(units / 100)
  const frac = units % 100
  return `${whole}.${frac < 10 ? '0' : ''}${frac}`
}

function tooSmall(index: number, weights: readonly number[], total: number): RangeError {
  // Half a unit (0.005%) rounds up to 0.01%, the smallest share nginx can write.
  const min = (total * 0.5) / BASIS
  return new RangeError(
    `weight ${index} (${weights[index]}) is below nginx split_clients' 0.01% resolution ` +
      `(share ${((100 * (weights[index] as number)) / total).toPrecision(3)}%): ` +
      `raise it to about ${min.toPrecision(3)} or more, or set it to 0 to drop the model`,
  )
}

/** MurmurHash2, seed 0, of the key's UTF-8 bytes: nginx's `ngx_murmur_hash2()`. */
export function nginxHash(key: string): number {
  // murmurhash.v2 starts from `h = seed ^ len` like ngx_murmur_hash2's `h = 0 ^ len`; handing it
  // bytes from one shared encoder spares the TextEncoder it would build per call for a string.
  return murmurhash.v2(ENCODER.encode(key), 0)
}

/**
 * Returns the split-list index nginx picks for `hash`, or -1 where nginx leaves the variable
 * empty (only possible for a split without `*`, which buildNginxSplit never makes).
 */
export function nginxPick(split: NginxSplit, hash: number): number {
  const thresholds = split.thresholds
  for (let i = 0; i < thresholds.length; i++) {
    const t = thresholds[i] as number
    // ngx_http_split_clients_variable(): `hash < part[i].percent || part[i].percent == 0`
    if (hash < t || t === 0) return split.indices[i] as number
  }
  return -1
}

/**
 * Renders the equivalent nginx block, e.g.
 * `split_clients "${http_x_user_id}" $variant { 90.00% churn-v1; * churn-v2; }`.
 */
export function nginxSplitClientsBlock(
  keyExpr: string,
  variable: string,
  split: NginxSplit,
  names: readonly string[],
): string {
  const v = variable.startsWith('$') ? variable : `$${variable}`
  const lines = [`split_clients ${quote(keyExpr)} ${v} {`]
  for (let p = 0; p < split.percents.length; p++) {
    const name = names[split.indices[p] as number]
    if (name === undefined) throw new RangeError(`no name for split index ${split.indices[p]}`)
    lines.push(`    ${split.percents[p]} ${quote(name)};`)
  }
  lines.push('}')
  return lines.join('\n')
}

/** nginx config string: double-quoted, with `"` and `\` escaped (ngx_conf_file.c's read_token). */
function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '\\$&')}"`
}
