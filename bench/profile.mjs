// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by package.
import { readFile } from 'node:fs/promises'

/** Where a script URL comes from: a package name, `modelsplit` (dist/), `node:` internals, or the VM. */
function origin(url) {
  if (url === '') return '(native: syscalls, builtins)'
  if (url.startsWith('node:')) return 'node (core)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/') || url.includes('/.dist-')) return 'modelsplit'
  return url
}

function shortUrl(url) {
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) return url.slice(nm + 14)
  const d = url.search(/\/(dist|\.dist-[^/]+)\//)
  if (d >= 0) return `dist/${url.slice(d + 1).split('/').slice(1).join('/')}`
  return url.replace(/^file:\/\//, '')
}

/**
 * Reads a profile and returns `{ totalMs, functions: [{ name, url, selfMs, pct }], packages: [...] }`,
 * both sorted by self time; `(idle)` is excluded from the percentages of busy time.
 */
export async function summariseProfile(file, top = 25) {
  const profile = JSON.parse(await readFile(file, 'utf8'))
  const samples = profile.samples?.length ?? 0
  const totalMs = (profile.endTime - profile.startTime) / 1000
  const msPerHit = samples > 0 ? totalMs / samples : 0
  const byFn = new Map()
  const byPkg = new Map()
  let busyHits = 0
  let idleHits = 0
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0
    if (hits === 0) continue
    const { functionName, url, lineNumber } = node.callFrame
    const name = functionName || '(anonymous)'
    if (name === '(idle)') { idleHits += hits; continue }
    busyHits += hits
    const key = `${name}\u0000${url}:${url ? lineNumber + 1 : ''}`
    byFn.set(key, (byFn.get(key) ?? 0) + hits)
    const pkg = ['(garbage collector)', '(program)'].includes(name) ? name : origin(url)
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + hits)
  }
  const rows = (m) => [...m].sort((a, b) => b[1] - a[1])
  return {
    totalMs,
    busyMs: busyHits * msPerHit,
    idleMs: idleHits * msPerHit,
    functions: rows(byFn).slice(0, top).map(([key, hits]) => {
      const [name, where] = key.split('\u0000')
      return { name, url: shortUrl(where), selfMs: hits * msPerHit, pct: (100 * hits) / busyHits }
    }),
    packages: rows(byPkg).map(([name, hits]) => ({ name, selfMs: hits * msPerHit, pct: (100 * hits) / busyHits })),
  }
}
