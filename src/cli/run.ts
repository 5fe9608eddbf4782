import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import { compileFile, type Plan } from '../plan/index.js'
import { serve } from './serve.js'
import { ROLLOUT_ACTIONS, rolloutCommand, type RolloutAction } from './rollout.js'
import { assignCommand } from './assign.js'
import { REPORT_KAFKA_USAGE, REPORT_TOTALS_USAGE, REPORT_USAGE, reportCommand, reportKafkaCommand, reportClickhouseCommand, reportSqlCommand, reportTotalsCommand } from './report.js'
import { parseBroker } from '../config/sink.js'

export interface Io {
  readonly out: NodeJS.WritableStream
  readonly err: NodeJS.WritableStream
}

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

const USAGE = `usage: modelsplit <command> [options]

commands:
  serve --config FILE [--log-level LEVEL]     run the router
        [--workers N|auto]                    in N processes sharing the port (auto: one per CPU)
  validate FILE                               check a config; exit 1 listing every problem
  assign --config FILE --route NAME ID...     print the model each user id is assigned to
         [--json]                             (and the numbers that decided it)
  rollout status|pause|resume|abort|promote   a route's rollout (status: every route's) through
          [ROUTE] [--admin URL] [--json]      the admin API (default http://127.0.0.1:9464);
          [--token-file FILE]                 with admin.token_file's bearer token
  report FILE... [--config FILE] [--json]     per route: A/B split and shadow agreement, error
                                              rates, latency and (with --config) A/B statistics
                                              from record files (report -h)
  report --kafka BROKERS --topic T            the same from a Kafka sink's topic
         [--from-beginning | --since ISO_TIME]

options:
  -h, --help                                  show this help
`

/** Runs one CLI command and returns its exit code; never calls process.exit itself. */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'serve': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' }, workers: { type: 'string', short: 'w' } } })
        if (values.config === undefined) return usage(io, 'serve needs --config FILE')
        const workers = values.workers === undefined ? 1 : values.workers === 'auto' ? availableParallelism() : Number(values.workers)
        if (!Number.isInteger(workers) || workers < 1 || workers > 256) return usage(io, `--workers takes a whole number from 1 to 256 or auto, got ${JSON.stringify(values.workers)}`)
        const plan = await compileOrReport(values.config, io)
        if (plan === undefined) return EXIT_FAILURE
        return await serve(values.config, plan, values['log-level'] ?? 'info', io, workers)
      }
      case 'validate': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} })
        if (positionals.length === 0) return usage(io, 'validate needs a FILE')
        let code = EXIT_OK
        for (const file of positionals) {
          const plan = await compileOrReport(file, io)
          if (plan === undefined) code = EXIT_FAILURE
          else io.out.write(`${file}: ok (${plan.config.routes.length} route(s), ${Object.keys(plan.config.models).length} model(s), sha256 ${plan.loaded.sha256})\n`)
        }
        return code
      }
      case 'assign': {
        const { values, positionals } = parseArgs({
          args: rest, allowPositionals: true,
          options: { config: { type: 'string', short: 'c' }, route: { type: 'string', short: 'r' }, json: { type: 'boolean' } },
        })
        if (values.config === undefined || values.route === undefined || positionals.length === 0) {
          return usage(io, 'assign needs --config FILE --route NAME and at least one USER_ID')
        }
        const plan = await compileOrReport(values.config, io)
        if (plan === undefined) return EXIT_FAILURE
        return assignCommand(plan, values.route, positionals, values.json === true, io)
      }
      case 'rollout': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { admin: { type: 'string', short: 'a' }, json: { type: 'boolean' }, 'token-file': { type: 'string' } } })
        const [action, route] = positionals
        if (action === undefined || !(ROLLOUT_ACTIONS as readonly string[]).includes(action)) return usage(io, `rollout needs an action: ${ROLLOUT_ACTIONS.join(', ')}`)
        if (action !== 'status' && route === undefined) return usage(io, `rollout ${action} needs a ROUTE`)
        return await rolloutCommand(action as RolloutAction, route, values.admin ?? 'http://127.0.0.1:9464', values.json === true, io, values['token-file'])
      }
      case 'report': {
        const { values, positionals } = parseArgs({
          args: rest, allowPositionals: true,
          options: {
            json: { type: 'boolean' }, progress: { type: 'boolean' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' },
            kafka: { type: 'string' }, topic: { type: 'string' }, 'from-beginning': { type: 'boolean' }, since: { type: 'string' },
            sql: { type: 'string' }, totals: { type: 'string' }, clickhouse: { type: 'string' },
          },
        })
        if (values.help === true) {
          io.out.write(REPORT_USAGE + '\n' + REPORT_KAFKA_USAGE + '\n' + REPORT_TOTALS_USAGE)
          return EXIT_OK
        }
        const scale = (['sql', 'totals', 'clickhouse'] as const).filter((k) => values[k] !== undefined)
        if (scale.length > 0) {
          const option = scale[0] as 'sql' | 'totals' | 'clickhouse'
          if (values.config === undefined) return usage(io, `report --${option} needs --config FILE (the routes whose experiments it reduces)`)
          if (scale.length > 1) return usage(io, `report --sql prints the reduction, --totals reads its rows, --clickhouse runs it: give one`)
          if (positionals.length > 0 || values.kafka !== undefined) return usage(io, `report --${option} reads no record files nor topic`)
          const plan = await compileOrReport(values.config, io)
          if (plan === undefined) return EXIT_FAILURE
          if (values.sql !== undefined) return reportSqlCommand(plan.config, values.sql, io)
          const opts = { json: values.json === true, config: plan.config }
          if (values.clickhouse !== undefined) return await reportClickhouseCommand(values.clickhouse, opts, io)
          return await reportTotalsCommand(values.totals as string, opts, io)
        }
        const kafka = values.kafka === undefined && values.topic === undefined ? undefined : kafkaSource(values, positionals)
        if (typeof kafka === 'string') return usage(io, kafka)
        if (kafka === undefined && positionals.length === 0) return usage(io, 'report needs at least one FILE (or --kafka BROKERS --topic T)')
        let config
        if (values.config !== undefined) {
          const plan = await compileOrReport(values.config, io)
          if (plan === undefined) return EXIT_FAILURE
          config = plan.config
        }
        const reportOpts = { json: values.json === true, progress: values.progress === true ? true : undefined, config }
        if (kafka !== undefined) return await reportKafkaCommand(kafka, reportOpts, io)
        return await reportCommand(positionals, reportOpts, io)
      }
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.out.write(USAGE)
        return command === undefined ? EXIT_USAGE : EXIT_OK
      default:
        return usage(io, `unknown command "${command}"`)
    }
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return usage(io, (err as Error).message)
    throw err
  }
}

/** The topic `report --kafka` reads, or what is wrong with the options (a usage message). */
function kafkaSource(values: { kafka?: string; topic?: string; 'from-beginning'?: boolean; since?: string }, positionals: readonly string[]): { brokers: string[]; topic: string; since?: Date } | string {
  if (values.kafka === undefined || values.topic === undefined) return 'report --kafka needs both --kafka BROKERS and --topic T'
  if (positionals.length > 0) return 'report reads files or a Kafka topic, not both'
  const brokers = values.kafka.split(',').map((b) => b.trim()).filter((b) => b !== '')
  const bad = brokers.find((b) => parseBroker(b) === undefined)
  if (brokers.length === 0 || bad !== undefined) return `--kafka takes host:port[,host:port...], got ${JSON.stringify(bad ?? values.kafka)}`
  if (values.since === undefined) return { brokers, topic: values.topic }
  if (values['from-beginning'] === true) return 'give --from-beginning or --since, not both'
  const since = new Date(values.since)
  if (!/^\d{4}-\d{2}-\d{2}/.test(values.since) || Number.isNaN(since.getTime())) return `--since takes an ISO 8601 time such as 2026-11-24T00:00:00Z, got ${JSON.stringify(values.since)}`
  return { brokers, topic: values.topic, since }
}

function usage(io: Io, message: string): number {
  io.err.write(`modelsplit: ${message}\n\n${USAGE}`)
  return EXIT_USAGE
}

/** Compiles a config, printing every problem (one per line, file:line: path: message) on failure. */
async function compileOrReport(file: string, io: Io): Promise<Plan | undefined> {
  const compiled = await compileFile(file)
  if (compiled.ok) return compiled.plan
  io.err.write(new ConfigError(compiled.problems).message + '\n')
  return undefined
}
