import { existsSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { Agent, fetch } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildNginxSplit, nginxHash, nginxPick, nginxSplitClientsBlock } from '../src/assign/nginx.js'
import type { NginxSplit } from '../src/assign/nginx.js'
import { findNginx, startNginx } from './helpers/nginx.js'
import type { RunningNginx } from './helpers/nginx.js'

const FIXTURE_URL = new URL('./fixtures/nginx-split-clients.json', import.meta.url)

interface FixtureCase {
  name: string
  weights: number[]
  salt: string
  percents: string[]
  /** [user id, split-list index nginx chose] */
  ids: [string, number][]
}
interface Fixture {
  comment: string
  nginxVersion: string
  cases: FixtureCase[]
}

const fixture: Fixture = existsSync(FIXTURE_URL)
  ? (JSON.parse(readFileSync(FIXTURE_URL, 'utf8')) as Fixture)
  : { comment: '', nginxVersion: '', cases: [] }

/** Weight sets checked against real nginx; names double as nginx location paths. */
const CASES: readonly { name: string; weights: number[]; salt: string }[] = [
  { name: 'ninety-ten', weights: [90, 10], salt: '' },
  { name: 'ninety-ten-salted', weights: [90, 10], salt: 'churn-2024' },
  { name: 'thirds', weights: [1, 1, 1], salt: '' },
  { name: 'one-two-three-four', weights: [1, 2, 3, 4], salt: 'exp7' },
  { name: 'tiny-last', weights: [9999, 1], salt: '' },
  { name: 'tiny-first', weights: [1, 9999], salt: 'x' },
  { name: 'zero-weight', weights: [3, 0, 7], salt: '' },
  { name: 'zeros-utf8-salt', weights: [0, 5, 0, 5, 0], salt: 'Ω-sel' },
  { name: 'nginx-percents', weights: [33.33, 33.33, 33.34], salt: '' },
  { name: 'single-model', weights: [0, 4], salt: 'solo' },
]

const modelName = (index: number): string => `model-${index}`

describe('buildNginxSplit', () => {
  it('writes shares as 2-decimal percentages with the last model as *', () => {
    expect(buildNginxSplit([90, 10]).percents).toEqual(['90.00%', '*'])
    expect(buildNginxSplit([1, 1, 1]).percents).toEqual(['33.33%', '33.34%', '*'])
    expect(buildNginxSplit([1, 2, 3, 4]).percents).toEqual(['10.00%', '20.00%', '30.00%', '*'])
    expect(buildNginxSplit([2, 1]).percents).toEqual(['66.67%', '*'])
    expect(buildNginxSplit([33.33, 33.33, 33.34]).percents).toEqual(['33.33%', '33.33%', '*'])
    expect(buildNginxSplit([5]).percents).toEqual(['*'])
  })

  it('omits zero-weight models and keeps list indices', () => {
    const split = buildNginxSplit([0, 3, 0, 7, 0])
    expect(Array.from(split.indices)).toEqual([1, 3])
    expect(split.percents).toEqual(['30.00%', '*'])
  })

  it('computes thresholds as nginx does: per-part floor(percent * 0xffffffff / 10000), summed', () => {
    const split = buildNginxSplit([1, 1, 1])
    const part = (p: bigint): bigint => (p * 0xffffffffn) / 10000n
    expect(Array.from(split.thresholds)).toEqual([Number(part(3333n)), Number(part(3333n) + part(3334n)), 0])
    expect(Array.from(buildNginxSplit([9999, 1]).thresholds)).toEqual([Number(part(9999n)), 0])
  })

  it('never totals more than 100% nor writes 0%', () => {
    let seed = 7
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
    for (let trial = 0; trial < 2000; trial++) {
      const weights = Array.from({ length: 2 + Math.floor(rand() * 6) }, () =>
        rand() < 0.2 ? 0 : Math.round(rand() * 1e6) / 100 + 0.5,
      )
      if (weights.every((w) => w === 0)) continue
      const split = buildNginxSplit(weights)
      const units = split.percents.filter((p) => p !== '*').map((p) => Math.round(Number.parseFloat(p) * 100))
      expect(units.every((u) => u >= 1)).toBe(true)
      expect(units.reduce((a, b) => a + b, 0)).toBeLessThan(10000)
    }
  })

  it('rejects weights nginx cannot express and says what to write', () => {
    expect(() => buildNginxSplit([1, 1e6])).toThrow(/0\.01% resolution.*or set it to 0/)
    expect(() => buildNginxSplit([1e6, 1])).toThrow(/weight 1 .*0\.01% resolution/)
    expect(() => buildNginxSplit([0, 0])).toThrow(/positive/)
    expect(() => buildNginxSplit([1, -1])).toThrow(/>= 0/)
  })
})

describe('nginxPick', () => {
  it('follows `hash < percent || percent == 0` at every boundary', () => {
    const split = buildNginxSplit([1, 2, 3, 4])
    const [t0, t1, t2] = Array.from(split.thresholds)
    expect(nginxPick(split, 0)).toBe(0)
    expect(nginxPick(split, t0! - 1)).toBe(0)
    expect(nginxPick(split, t0!)).toBe(1)
    expect(nginxPick(split, t1! - 1)).toBe(1)
    expect(nginxPick(split, t1!)).toBe(2)
    expect(nginxPick(split, t2!)).toBe(3)
    expect(nginxPick(split, 0xffffffff)).toBe(3)
  })

  it('returns -1 like nginx leaves the variable empty when no part matches', () => {
    const noStar: NginxSplit = { indices: Uint16Array.of(0), thresholds: Uint32Array.of(100), percents: ['0.01%'] }
    expect(nginxPick(noStar, 100)).toBe(-1)
  })
})

describe('nginxHash', () => {
  it('is MurmurHash2 with seed 0 over UTF-8 bytes', () => {
    for (const key of ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'josé', '用户42', '🙂🙂', 'x'.repeat(1001)]) {
      expect(nginxHash(key)).toBe(murmur2(new TextEncoder().encode(key)))
    }
    expect(nginxHash('')).toBe(0)
  })
})

describe('nginxSplitClientsBlock', () => {
  it('renders the split_clients block nginx loads', () => {
    const block = nginxSplitClientsBlock('${http_x_user_id}SALT', '$variant', buildNginxSplit([9, 0, 1]), [
      'churn-v1',
      'unused',
      'churn "v2"',
    ])
    expect(block).toBe(
      'split_clients "${http_x_user_id}SALT" $variant {\n    90.00% "churn-v1";\n    * "churn \\"v2\\"";\n}',
    )
  })
})

describe.runIf(fixture.cases.length > 0)(`golden vectors recorded from ${fixture.nginxVersion}`, () => {
  it.each(fixture.cases)('$name', ({ weights, salt, percents, ids }) => {
    const split = buildNginxSplit(weights)
    expect(split.percents).toEqual(percents)
    const wrong = ids.filter(([id, expected]) => nginxPick(split, nginxHash(id + salt)) !== expected)
    expect(wrong).toEqual([])
  })
})

describe.skipIf(!findNginx())('against real nginx split_clients', () => {
  let nginx: RunningNginx
  let agent: Agent
  const splits = CASES.map((c) => ({ ...c, split: buildNginxSplit(c.weights) }))

  beforeAll(async () => {
    const blocks = splits.map((c, n) =>
      nginxSplitClientsBlock(
        `\${http_x_user_id}${c.salt}`,
        `$variant_${n}`,
        c.split,
        c.weights.map((_, i) => modelName(i)),
      ),
    )
    const locations = splits.map(
      (c, n) => `        location = /${c.name} {
            add_header X-Key "\${http_x_user_id}${c.salt}";
            return 200 $variant_${n};
        }`,
    )
    nginx = await startNginx(`${blocks.join('\n')}
    server {
        listen 127.0.0.1:{{port}};
${locations.join('\n')}
    }`)
    agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 })
  })

  afterAll(async () => {
    await agent?.close()
    await nginx?.close()
  })

  it('picks the same model as nginx for every id', { timeout: 120_000 }, async () => {
    const ids = userIds()
    const recorded: FixtureCase[] = []
    let compared = 0
    for (const c of splits) {
      const boundary = boundaryIds(c.split, c.salt)
      const all = [...ids, ...boundary]
      const got = await mapLimit(all, 32, (id) => askNginx(nginx.url, c.name, id, c.salt, agent))
      const mismatches: string[] = []
      for (let i = 0; i < all.length; i++) {
        const id = all[i] as string
        const ours = nginxPick(c.split, nginxHash(id + c.salt))
        if (got[i] !== modelName(ours)) mismatches.push(`${JSON.stringify(id)}: nginx ${got[i]}, ours ${modelName(ours)}`)
      }
      expect(mismatches, c.name).toEqual([])
      compared += all.length
      recorded.push({
        name: c.name,
        weights: c.weights,
        salt: c.salt,
        percents: [...c.split.percents],
        ids: [...ids.slice(0, 48), ...ids.filter(isUnusual).slice(0, 24), ...boundary].map((id) => [
          id,
          Number((got[all.indexOf(id)] ?? '').slice('model-'.length)),
        ]),
      })
    }
    expect(compared).toBeGreaterThan(20_000)
    if (process.env.NGINX_UPDATE_FIXTURE === '1') await writeFixture(recorded)
  })
})

/** Sends one id and returns nginx's $variant; checks the key reached nginx byte for byte. */
async function askNginx(base: string, path: string, id: string, salt: string, dispatcher: Agent): Promise<string> {
  // Header values are bytes: send the UTF-8 bytes as latin1 code units so they arrive unchanged.
  const res = await fetch(`${base}/${path}`, {
    headers: { 'x-user-id': Buffer.from(id, 'utf8').toString('latin1') },
    dispatcher,
  })
  const body = await res.text()
  if (res.status !== 200) throw new Error(`nginx answered ${res.status} for ${JSON.stringify(id)}`)
  const echoed = Buffer.from(res.headers.get('x-key') ?? '', 'latin1').toString('utf8')
  if (echoed !== id + salt) throw new Error(`nginx saw key ${JSON.stringify(echoed)}, sent ${JSON.stringify(id + salt)}`)
  return body
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

function isUnusual(id: string): boolean {
  return id.length === 0 || id.length > 64 || /[^\x21-\x7e]/.test(id)
}

/**
 * A few thousand ids: every MurmurHash2 tail length, UTF-8 (2-, 3- and 4-byte sequences), empty,
 * long. No leading/trailing whitespace: HTTP strips it from header values before nginx sees them.
 */
function userIds(): string[] {
  const ids = ['', '0', 'a', 'ab', 'abc', 'abcd', 'abcde', 'josé', 'José', '用户42', '用户', 'Ωmega', 'straße', '🙂', 'a🙂b']
  ids.push('ü'.repeat(37), '用'.repeat(333), 'long-'.repeat(200), 'x'.repeat(4000), 'a b c', 'id-with-"quote"')
  let seed = 0x9e3779b9
  const rand = (): number => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32)
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@éß日本語用户🙂'
  const chars = Array.from(alphabet)
  for (let i = 0; i < 1000; i++) ids.push(`user-${i}`)
  for (let i = 0; i < 600; i++) ids.push(String(Math.floor(rand() * 1e12)))
  for (let i = 0; i < 1000; i++) {
    const len = 1 + Math.floor(rand() * 24)
    let s = ''
    for (let j = 0; j < len; j++) s += chars[Math.floor(rand() * chars.length)]
    ids.push(s)
  }
  for (let i = 0; i < 200; i++) ids.push(uuid(rand))
  return ids
}

function uuid(rand: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16)).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`
}

// --- MurmurHash2 (ngx_murmur_hash2), written out here so the tests don't only trust the library ---

const M = 0x5bd1e995
const M_INV = (() => {
  let x = M // Newton's iteration for the inverse of an odd number mod 2^32
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(M, x))
  return x
})()

const mix = (k: number): number => {
  k = Math.imul(k, M)
  k ^= k >>> 24
  return Math.imul(k, M)
}
const unmix = (k: number): number => {
  k = Math.imul(k, M_INV)
  k ^= k >>> 24 // x ^= x >>> 24 undoes itself: 2 * 24 >= 32
  return Math.imul(k, M_INV)
}
const unXorShift = (y: number, s: number): number => {
  let x = y
  for (let i = s; i < 32; i += s) x = y ^ (x >>> s)
  return x
}
const word = (b: Uint8Array, i: number): number => (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24))
const tailBits = (b: Uint8Array, i: number, n: number): number => {
  let t = 0
  for (let j = n - 1; j >= 0; j--) t ^= b[i + j]! << (8 * j)
  return t
}

function murmur2(b: Uint8Array): number {
  let h = b.length >>> 0
  let i = 0
  for (; b.length - i >= 4; i += 4) h = Math.imul(h, M) ^ mix(word(b, i))
  const rest = b.length - i
  if (rest > 0) h = Math.imul(h ^ tailBits(b, i, rest), M)
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h >>> 0
}

/**
 * An 8-character ASCII id whose key (id + salt) hashes to exactly `target`: MurmurHash2 is a
 * bijection per block, so fix the first 4 bytes, run the rest backwards, and keep the result when
 * the 4 solved bytes are alphanumeric. Lets the test hit each threshold at T - 1 and T.
 */
function preimage(target: number, salt: string, start: number): string {
  const suffix = new TextEncoder().encode(salt)
  const len = 8 + suffix.length
  const ok = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
  let g = unXorShift(target >>> 0, 15)
  g = Math.imul(g, M_INV)
  g = unXorShift(g, 13)
  const rest = suffix.length % 4
  if (rest > 0) g = Math.imul(g, M_INV) ^ tailBits(suffix, suffix.length - rest, rest)
  for (let i = suffix.length - rest - 4; i >= 0; i -= 4) g = Math.imul(g ^ mix(word(suffix, i)), M_INV)
  for (let n = start; ; n++) {
    const prefix = (n % 1_000_000).toString(36).padStart(4, '0').slice(-4)
    const pb = new TextEncoder().encode(prefix)
    const h1 = Math.imul(len, M) ^ mix(word(pb, 0))
    const k = unmix(g ^ Math.imul(h1, M))
    const bytes = [k & 0xff, (k >>> 8) & 0xff, (k >>> 16) & 0xff, k >>> 24]
    if (bytes.every(ok)) return prefix + String.fromCharCode(...bytes)
  }
}

function boundaryIds(split: NginxSplit, salt: string): string[] {
  const targets = [0, 1, 0xfffffffe, 0xffffffff]
  for (const t of split.thresholds) if (t !== 0) targets.push(t - 1, t, t + 1)
  return targets.map((t, i) => {
    const id = preimage(t, salt, i * 7919)
    if (nginxHash(id + salt) !== t) throw new Error(`preimage of ${t} failed: ${id}`)
    return id
  })
}

async function writeFixture(cases: FixtureCase[]): Promise<void> {
  // `nginx -v` prints "nginx version: nginx/1.22.1" on stderr.
  const version = spawnSync(findNginx() ?? 'nginx', ['-v'], { encoding: 'utf8' }).stderr.trim()
  const out: Fixture = {
    comment:
      'Recorded from real nginx split_clients by test/assign-nginx.test.ts (NGINX_UPDATE_FIXTURE=1): ' +
      'for each case, the split_clients block built from `weights` was loaded into nginx with key ' +
      '"${http_x_user_id}<salt>", and each id was sent as X-User-Id; the number is the split-list ' +
      'index of the model nginx returned. Do not edit by hand.',
    nginxVersion: version.replace(/^nginx version:\s*/, ''),
    cases,
  }
  // One id row per line keeps the file reviewable in a diff.
  const json = JSON.stringify(out, null, 2).replace(/\[\n\s+("(?:[^"\\]|\\.)*"),\n\s+(\d+)\n\s+\]/g, '[$1, $2]')
  await writeFile(FIXTURE_URL, `${json}\n`)
}
