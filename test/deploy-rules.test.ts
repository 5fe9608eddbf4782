// deploy/prometheus/modelsplit-rules.yaml: `promtool check rules` and `promtool test rules` on its
// unit tests (Debian's prometheus package ships promtool; skipped without it), and a check that the
// rules and their tests' synthetic series name only metrics and labels the router exports, so a
// misspelt name cannot hide behind a test that misspells it the same way.
import { execFile, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import yaml from 'js-yaml'
import { describe, expect, it } from 'vitest'
import { Metrics } from '../src/metrics/index.js'

const run = promisify(execFile)
const dir = fileURLToPath(new URL('../deploy/prometheus/', import.meta.url))
const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim()

interface Rule { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
interface RulesFile { groups: { name: string; rules: Rule[] }[] }
interface TestsFile { rule_files: string[]; tests: { input_series: { series: string }[]; alert_rule_test?: { alertname: string }[] }[] }

const load = async <T>(name: string): Promise<T> => yaml.load(await readFile(`${dir}${name}`, 'utf8')) as T

/** The router's metrics and their labels: names from its registry, labels from the README's table. */
async function exported(): Promise<Map<string, Set<string>>> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const documented = new Map<string, Set<string>>()
  for (const m of readme.matchAll(/^\| `((?:modelsplit|gen_ai)_\w+)` \| \w+ \|\s*`?([\w, ]*)`?\s*\|/gm)) {
    documented.set(m[1] as string, new Set((m[2] as string).split(',').map((l) => l.trim()).filter((l) => l !== '')))
  }
  const out = new Map<string, Set<string>>()
  for (const metric of new Metrics({ defaultMetrics: false }).registry.getMetricsAsArray()) {
    const labels = documented.get(metric.name)
    expect(labels, `${metric.name} is in the README's metrics table`).toBeDefined()
    const all = new Set([...(labels as Set<string>), 'instance', 'job'])
    if (String(metric.type) === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) out.set(metric.name + suffix, suffix === '_bucket' ? new Set([...all, 'le']) : all)
    } else {
      out.set(metric.name, all)
    }
  }
  return out
}

/** Every `modelsplit_…{labels}` selector (or bare name) in a PromQL expression or series line. */
function selectors(text: string): { name: string; labels: string[] }[] {
  return [...text.matchAll(/\b(modelsplit_\w+)(\{([^}]*)\})?/g)].map((m) => ({
    name: m[1] as string,
    labels: [...(m[3] ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)/g)].map((l) => l[1] as string),
  }))
}

describe('the Prometheus rules', () => {
  it('alert on what the issue lists, with a severity, a summary and a description each', async () => {
    const rules = await load<RulesFile>('modelsplit-rules.yaml')
    const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined)
    expect(alerts.map((a) => a.alert).sort()).toEqual([
      'ModelsplitConfigDrift', 'ModelsplitConfigReloadFailed', 'ModelsplitErrorRateAboveControl', 'ModelsplitMlflowFailing', 'ModelsplitRecordsDropped',
      'ModelsplitRolloutRolledBack', 'ModelsplitSampleRatioMismatch', 'ModelsplitShadowAgreementLow', 'ModelsplitShadowsDropped',
    ])
    for (const a of alerts) {
      expect(a.labels?.severity, a.alert).toMatch(/^(warning|critical)$/)
      expect(a.annotations?.summary, a.alert).toBeTruthy()
      expect(a.annotations?.description, a.alert).toBeTruthy()
    }
    const rollback = alerts.find((a) => a.alert === 'ModelsplitRolloutRolledBack') as Rule
    expect(rollback.expr).toContain('modelsplit_rollout_state{state="rolled_back"}')
    expect(rollback.expr).toContain('increase(modelsplit_decisions_total{result="rollback"}')
    // Every alert has a unit test.
    const tests = await load<TestsFile>('modelsplit-rules.test.yaml')
    const tested = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).map((a) => a.alertname)))
    for (const a of alerts) expect(tested.has(a.alert as string), `${a.alert} has a promtool test`).toBe(true)
  })

  it('name only metrics and labels the router exports, in the rules and in their tests\' series', async () => {
    const metrics = await exported()
    const rulesText = await readFile(`${dir}modelsplit-rules.yaml`, 'utf8')
    const tests = await load<TestsFile>('modelsplit-rules.test.yaml')
    const problems: string[] = []
    const check = (where: string, text: string): void => {
      for (const s of selectors(text)) {
        const labels = metrics.get(s.name)
        if (labels === undefined) problems.push(`${where}: ${s.name} is not a metric of the router`)
        else for (const l of s.labels) if (!labels.has(l)) problems.push(`${where}: ${s.name} has no label ${l}`)
      }
    }
    const rules = (yaml.load(rulesText) as RulesFile).groups.flatMap((g) => g.rules)
    for (const r of rules) check(r.record ?? r.alert ?? '?', r.expr)
    for (const t of tests.tests) for (const s of t.input_series) check(`test series ${s.series}`, s.series)
    expect(problems).toEqual([])
    // Recording rules are named level:metric:operations and each is used by another rule or the dashboard.
    const dashboard = await readFile(new URL('../deploy/grafana/modelsplit.json', import.meta.url), 'utf8')
    for (const r of rules.filter((x) => x.record !== undefined)) {
      expect(r.record).toMatch(/^modelsplit:[a-z0-9_]+(:[a-z0-9_]+)?$/)
      const users = rules.filter((x) => x !== r && x.expr.includes(r.record as string)).length + (dashboard.includes(`${r.record}{`) ? 1 : 0)
      expect(users, `${r.record} is used`).toBeGreaterThan(0)
    }
  })

  it.skipIf(promtool === '')('pass `promtool check rules`', async () => {
    const { stdout } = await run(promtool, ['check', 'rules', 'modelsplit-rules.yaml'], { cwd: dir })
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/)
  })

  it.skipIf(promtool === '')('pass their unit tests (`promtool test rules`)', async () => {
    const r = spawnSync(promtool, ['test', 'rules', 'modelsplit-rules.test.yaml'], { cwd: dir, encoding: 'utf8' })
    expect(r.stdout + r.stderr).toMatch(/SUCCESS/)
    expect(r.status, r.stdout + r.stderr).toBe(0)
  })
})
