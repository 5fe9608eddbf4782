import { Assigner } from '../assign/index.js'
import type { LoadedConfig } from '../config/index.js'
import type { Io } from './run.js'

/** `modelsplit assign`: the model per user id and the numbers that decided it, without starting anything. */
export function assignCommand(loaded: LoadedConfig, routeName: string, userIds: readonly string[], json: boolean, io: Io): number {
  const route = loaded.config.routes.find((r) => r.name === routeName)
  if (route === undefined) {
    io.err.write(`modelsplit: no route named "${routeName}" in ${loaded.file}; routes: ${loaded.config.routes.map((r) => r.name).join(', ')}\n`)
    return 1
  }
  const assigner = new Assigner({ algorithm: route.hash, salt: route.salt, models: route.split.map((s) => s.model), weights: route.split.map((s) => s.weight) })
  for (const id of userIds) {
    const e = assigner.explain(id)
    if (json) {
      io.out.write(JSON.stringify({ route: route.name, user_id: id, salt: route.salt, ...e }) + '\n')
      continue
    }
    io.out.write(`${id}\t${e.model}\n`)
    for (const c of e.candidates) {
      const mark = c.model === e.model ? '*' : ' '
      if (e.algorithm === 'rendezvous') {
        io.out.write(`  ${mark} ${c.model.padEnd(20)} weight=${c.weight} share=${c.share.toFixed(4)} murmur3(${JSON.stringify(c.key)})=${c.hash} score=${fmt(c.score)}\n`)
      } else {
        io.out.write(`  ${mark} ${c.model.padEnd(20)} weight=${c.weight} ${c.percent ?? '(no part)'} threshold=${c.threshold ?? '-'} murmur2(${JSON.stringify(c.key)})=${c.hash}\n`)
      }
    }
  }
  return 0
}

function fmt(score: number | undefined): string {
  return score === undefined ? '-' : Number.isFinite(score) ? score.toPrecision(6) : 'inf (weight 0)'
}
