// Command-line options of `npm run bench`.
import { parseArgs } from 'node:util'

export const HELP = `Usage: npm run bench -- [options]
       npm run bench -- calibration [options]   (the analysis' calibration: bench/calibration.mjs)

Benchmarks modelsplit against direct calls, against a bare Node proxy (node-floor: node:http +
murmur2 split + undici Pool) and against nginx (same split, same mirror) with autocannon, plus a
memory case, a hot-reload case and CPU profiles. Everything on 127.0.0.1. Each load case reports
req/s, latency and the proxy's CPU µs per request (utime + stime from /proc).

  --duration S          seconds per load case run (default 10)
  --connections N       autocannon connections, the same for every case (default 50)
  --repeats N           runs per case, interleaved A B C A B C; medians reported (default 3)
  --rate R              req/s for the fixed-rate latency cases (default 2000)
  --same-rate           every load case at --rate req/s instead of as fast as it goes: on a loaded
                        machine, CPU µs per request then compares at the same batching (a case
                        that happens to run at half the rate pays more per request for that alone)
  --pin                 the proxy under test on a CPU of its own (the last; taskset), the bench, its
                        load generator, model servers and Kafka broker on the others: its CPU per
                        request then is its own work, not what co-scheduled processes do to it
  --memory-requests N   requests in the memory case (default 1000000)
  --workers N           cluster workers for the ms-cluster-* cases (default: CPU count); by
                        \`serve --workers N\` if the build has it, else bench/cluster-router.mjs
  --cases a,b,c         only these cases (default: all); names below
  --no-nginx            skip the nginx cases (and do not install nginx)
  --smoke               a tiny run for CI: direct + ms-split for 1 s, a 3000-request memory case,
                        and the check that node-floor splits users as modelsplit does
  --profile-kinds a,b   what the profile case profiles (default split,shadow; also dead-shadow, a
                        shadow on a closed port, record, the file sink, record-kafka, the
                        Kafka sink with a broker of its own, and floor-split, floor-shadow: the
                        bare Node forwarder without and with its mirror)
  --out DIR             where results go (default bench/results)
  --help                this text

Cases: direct, node-floor, ms-split, ms-split-overhead, ms-record, ms-record-kafka, ms-split-trace-1, ms-split-trace-001, ms-shadow-trace-1, nginx-split, node-floor-shadow, ms-shadow, nginx-shadow,
ms-slow-shadow, nginx-slow-shadow, ms-dead-shadow, nginx-dead-shadow, ms-split-w1, ms-split-w2,
ms-cluster-split, ms-cluster-shadow, direct-rate, ms-rate, nginx-rate, memory, reload, profile.
Exit status: 0, or 1 when the memory case grows, the reload case has failed requests or
node-floor and modelsplit send a user to different models.
`

/** Parses argv into the bench options; `help: true` when --help was given. */
export function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      connections: { type: 'string' },
      repeats: { type: 'string' },
      rate: { type: 'string' },
      'memory-requests': { type: 'string' },
      workers: { type: 'string' },
      cases: { type: 'string' },
      'no-nginx': { type: 'boolean', default: false },
      'same-rate': { type: 'boolean', default: false },
      pin: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      out: { type: 'string' },
      'profile-kinds': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  const smoke = values.smoke
  const num = (name, fallback) => {
    const raw = values[name]
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`)
    return n
  }
  return {
    help: values.help,
    smoke,
    duration: num('duration', smoke ? 1 : 10),
    connections: num('connections', smoke ? 10 : 50),
    repeats: num('repeats', smoke ? 1 : 3),
    rate: num('rate', 2000),
    memoryRequests: num('memory-requests', smoke ? 3000 : 1_000_000),
    workers: values.workers === undefined ? undefined : num('workers', 2),
    cases: values.cases?.split(',').map((s) => s.trim()).filter(Boolean) ?? (smoke ? ['direct', 'ms-split', 'memory'] : undefined),
    nginx: !values['no-nginx'] && !smoke,
    sameRate: values['same-rate'],
    pin: values.pin,
    out: values.out,
    profileKinds: values['profile-kinds']?.split(',').map((s) => s.trim()).filter(Boolean),
  }
}
