import type { PairSummary, Report, RouteSummary, SideSummary } from './aggregate.js'
import type { RouteExperiment } from '../evaluation/index.js'

/** The report as `--json` prints it: what was read, then the accumulator's result. */
export interface ReportDocument extends Report {
  /** Files read, in the order read (rotated siblings oldest first). */
  readonly files: readonly string[]
  /** Lines that were not records (truncated or invalid JSON). */
  readonly skipped_lines: number
  /** Where the records came from when not from files: `kafka BROKERS topic T`. */
  readonly source?: string
  /** Messages read twice (the same `ce_id`: a sink's at-least-once retry) and counted once. */
  readonly duplicates?: number
  /** A/B statistics per route with metrics; present when a config was given (--config). */
  readonly experiments?: readonly RouteExperiment[]
}

/** One JSON document, newline-terminated. */
export function formatJson(doc: ReportDocument): string {
  return JSON.stringify(doc, null, 2) + '\n'
}

/** Plain-text tables, one block per route. */
export function formatText(doc: ReportDocument): string {
  const out: string[] = []
  const { records } = doc
  out.push(`${records.predictions} prediction record(s) from ${doc.source ?? `${doc.files.length} file(s)`}` +
    (doc.duplicates !== undefined && doc.duplicates > 0 ? `; ${doc.duplicates} duplicate message(s) counted once` : '') +
    (records.other > 0 ? `; ${records.other} other record(s) ignored` : '') +
    (records.invalid > 0 ? `; ${records.invalid} malformed prediction record(s) ignored` : '') +
    (doc.skipped_lines > 0 ? `; ${doc.skipped_lines} unreadable line(s) skipped` : ''))
  if (doc.routes.length === 0) out.push('', 'no prediction records')
  for (const route of doc.routes) out.push('', ...routeBlock(route))
  for (const e of doc.experiments ?? []) out.push('', ...experimentBlock(e))
  out.push('',
    'error: status 0 (no answer) or >= 500, or a recorded error. agreement: agree / compared, 95% Wilson interval.',
    `abs_diff_max: comparison.abs_diff_max where numeric. p50/p99: nearest rank, ${doc.quantiles.exact ? 'exact' : `sampled from ${doc.quantiles.reservoir_size} values per series`}.`)
  return out.join('\n') + '\n'
}

function routeBlock(route: RouteSummary): string[] {
  const lines = [`route ${route.route}: ${route.requests} request(s)` + (route.from !== null ? `, ${route.from} to ${route.to ?? ''}` : ''), '']
  lines.push(...indent(table(1,
    ['primary', 'requests', 'share', 'errors', 'error rate', 'p50 ms', 'p99 ms'],
    route.primaries.map((p) => [p.model_versions === undefined ? p.model : `${p.model} (v${p.model_versions.map((v) => v ?? '?').join(', v')})`, String(p.requests), pct(p.share), String(p.errors), pct(p.error_rate), ms(p.latency_ms.p50), ms(p.latency_ms.p99)]),
  )))
  for (const p of route.primaries) {
    if ((p.model_versions?.length ?? 0) > 1) lines.push(`  note: ${p.model} answered as MLflow versions ${(p.model_versions ?? []).map((v) => v ?? 'unresolved').join(', ')} in these records: their numbers are mixed here (the router started a new experiment at each change; filter the records by model_version to compare one)`)
  }
  if (route.pairs.length === 0) return lines
  lines.push('')
  lines.push(...indent(table(2,
    ['primary', 'shadow', 'requests', 'compared', 'cmp errors', 'agree', 'agreement', '95% CI', 'abs_diff_max mean', 'abs_diff_max p99'],
    route.pairs.map((p) => [p.primary, p.shadow, String(p.requests), String(p.compared), String(p.comparison_errors), String(p.agree),
      pct(p.agreement.rate), ci(p), num(p.abs_diff_max.mean), num(p.abs_diff_max.p99)]),
  )))
  lines.push('')
  lines.push(...indent(table(2,
    ['primary', 'shadow', 'primary err', 'p50 ms', 'p99 ms', 'shadow err', 'p50 ms', 'p99 ms'],
    route.pairs.map((p) => [p.primary, p.shadow, ...side(p.primary_side), ...side(p.shadow_side)]),
  )))
  return lines
}

function side(s: SideSummary): string[] {
  return [pct(s.error_rate), ms(s.latency_ms.p50), ms(s.latency_ms.p99)]
}

function ci(p: PairSummary): string {
  const { low, high } = p.agreement
  return low === null || high === null ? '-' : `[${pct(low)}, ${pct(high)}]`
}

function pct(x: number | null): string {
  return x === null ? '-' : `${(x * 100).toFixed(1)}%`
}

function ms(x: number | null): string {
  return x === null ? '-' : x.toFixed(1)
}

/** Differences span orders of magnitude: 4 decimals, exponent below 0.001, 1 decimal from 100. */
function num(x: number | null): string {
  if (x === null) return '-'
  if (x === 0) return '0'
  const a = Math.abs(x)
  if (a >= 100) return x.toFixed(1)
  if (a >= 0.001) return x.toFixed(4)
  return x.toExponential(2)
}

function indent(lines: string[]): string[] {
  return lines.map((l) => `  ${l}`)
}

/** Aligned columns: the first `textColumns` (model names) left-aligned, the numbers right-aligned. */
function table(textColumns: number, header: string[], rows: string[][]): string[] {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((cell, i) => (i < textColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd())
}

function experimentBlock(e: RouteExperiment): string[] {
  const lines: string[] = []
  for (const [metric, r] of Object.entries(e.metrics)) {
    lines.push(`experiment ${e.route} / ${metric} (${r.type}, control ${r.control}): ${r.verdict}`, '')
    lines.push(...indent(table(2,
      ['model', 'weight', 'assignments', 'outcomes', r.type === 'binary' ? 'rate' : 'mean', '95% CI'],
      Object.entries(r.models).map(([m, x]) => [m, String(x.weight), String(x.assignments), String(x.outcomes), num(x.rate ?? x.mean ?? null), `[${num(x.ci[0])}, ${num(x.ci[1])}]`]),
    )))
    const rows = Object.entries(r.comparisons)
    if (rows.length > 0) {
      lines.push('')
      lines.push(...indent(table(1,
        ['candidate', 'abs lift', '95% CI', 'rel lift', 'p', 'p (sequential)', 'needed/arm', 'remaining', 'verdict'],
        rows.map(([m, c]) => [m, num(c.abs_lift), `[${num(c.abs_lift_ci[0])}, ${num(c.abs_lift_ci[1])}]`, pct(c.rel_lift), num(c.p_value), num(c.p_value_sequential),
          c.required_per_arm === null ? '-' : String(c.required_per_arm), c.remaining === null ? '-' : String(c.remaining), c.verdict]),
      )))
    }
    lines.push('', `  sample ratio: chi2 ${num(r.srm.chi2)}, df ${r.srm.df}, p ${num(r.srm.p_value)}${r.srm.mismatch ? ' — MISMATCH' : ''}`, '')
  }
  return lines
}
