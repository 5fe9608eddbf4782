import type { Plan } from '../plan/index.js'
import type { Io } from './run.js'

/** `modelsplit assign`: the model per user id and the numbers that decided it, without starting anything. */
export function assignCommand(plan: Plan, routeName: string, userIds: readonly string[], json: boolean, io: Io): number {
  const route = plan.config.routes.find((r) => r.name === routeName)
  const compiled = plan.routes.find((r) => r.name === routeName)
  if (route === undefined || compiled === undefined) {
    io.err.write(`modelsplit: no route named "${routeName}" in ${plan.loaded.file}; routes: ${plan.config.routes.map((r) => r.name).join(', ')}\n`)
    return 1
  }
  for (const id of userIds) {
    const e = compiled.assigner.explain(id)
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
