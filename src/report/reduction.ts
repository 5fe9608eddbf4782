import type { Config, RouteConfig } from '../config/index.js'
import { FIRST_LOOK, nextLook } from '../experiment/index.js'
import { MAX_OUTCOME_VALUE, SCHEMA_VERSION } from '../record/index.js'

/**
 * The experiment's reduction as one SQL query: record lines in, the totals a RouteAccumulator
 * holds out (per route, arm, metric, bucket, weight period and look segment), small enough for
 * `modelsplit report --totals` to finish the analysis with the router's own code. The query is
 * written once; what differs between engines (reading JSON, the unit hash, bit operations) is a
 * `Dialect` of a few small functions.
 *
 * Its input is a relation `ms_lines(line, ord, event_id)` the caller defines over its records:
 * `line` one record's JSON text, `ord` the order the router applied it (file order; a topic's
 * offsets), `event_id` the CloudEvents id when the source has one (the Kafka sink's `ce_id`), by
 * which an at-least-once duplicate is counted once; null: every line is its own event. The
 * function `ms_unit_hash(VARCHAR) -> BIGINT` (murmur3_x86_32 of "modelsplit-unit:" + id, seed 0,
 * unsigned) is the caller's too, as each engine has its own way to register one.
 *
 * The config's part (routes with metrics, their arms, metrics and buckets) is written into the
 * query as constant tables, so the reduction keeps exactly the records the report would apply:
 * predictions assigned by hash to an arm, outcomes of a declared metric not marked `counted: false`,
 * in a schema this build reads; anything else (unknown fields included) is ignored, never an error.
 */
export type DialectName = 'duckdb'

/** What differs between engines: a handful of expressions over the parsed record `j`. */
interface Dialect {
  /** The parsed record (NULL when the line is not JSON). */
  parse(line: string): string
  /** A top-level or nested field as text (NULL when absent or JSON null). */
  text(path: readonly string[]): string
  /** A field as DOUBLE. */
  num(path: readonly string[]): string
  /** A field's JSON type: 'string', 'number', 'bool', 'null', 'other'; NULL when absent. */
  kind(path: readonly string[]): string
  /** A field's JSON text as it stands (objects: to compare and hand on). */
  raw(path: readonly string[]): string
  xor(a: string, b: string): string
  ln(x: string): string
}

function jsonPath(path: readonly string[]): string {
  return '$' + path.map((p) => `."${p.replace(/["\\]/g, '')}"`).join('')
}

const DUCKDB: Dialect = {
  parse: (line) => `CASE WHEN json_valid(${line}) THEN CAST(${line} AS JSON) END`,
  text: (p) => `json_extract_string(j, '${jsonPath(p)}')`,
  num: (p) => `TRY_CAST(json_extract(j, '${jsonPath(p)}') AS DOUBLE)`,
  // Not `CASE json_type(...) WHEN ...`: an absent field's NULL type must stay NULL, and NULL matches no WHEN.
  kind: (p) => {
    const t = `json_type(j, '${jsonPath(p)}')`
    return `CASE WHEN ${t} IS NULL THEN NULL WHEN ${t} = 'VARCHAR' THEN 'string' WHEN ${t} IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT') ` +
      `THEN 'number' WHEN ${t} = 'BOOLEAN' THEN 'bool' WHEN ${t} = 'NULL' THEN 'null' ELSE 'other' END`
  },
  raw: (p) => `CAST(json_extract(j, '${jsonPath(p)}') AS VARCHAR)`,
  xor: (a, b) => `xor(${a}, ${b})`,
  ln: (x) => `ln(${x})`,
}

const DIALECTS: Record<DialectName, Dialect> = { duckdb: DUCKDB }

/** The dialects `reductionSql` writes. */
export const DIALECT_NAMES: readonly DialectName[] = Object.keys(DIALECTS) as DialectName[]

/** The looks (route-wide outcome counts at which the sequential p's are folded), up to `limit` outcomes. */
export function lookSchedule(limit = 1e12): number[] {
  const looks: number[] = []
  for (let n = FIRST_LOOK; n <= limit; n = nextLook(n)) looks.push(n)
  return looks
}

/**
 * Segment s holds the outcomes numbered (looks[s-1], looks[s]] (segment 0: 1..looks[0]). The query
 * finds an outcome's segment by an equality join on b = floor(ln k / ln 1.05) (a segment is at
 * least 5 % wide, so a few segments meet each b), then the range test: portable, and linear.
 */
function lookTable(looks: readonly number[]): string {
  const rows: string[] = []
  const logG = Math.log(1.05)
  const maxB = Math.floor(Math.log(looks[looks.length - 1] as number) / logG) + 2
  let s = 0
  for (let b = 0; b <= maxB; b++) {
    // Rows for b cover k in [1.05^(b-1), 1.05^(b+2)): a rounding of ln in the engine moves b by one at most.
    const lo = Math.floor(1.05 ** (b - 1))
    const hi = Math.ceil(1.05 ** (b + 2))
    while (s > 0 && (looks[s - 1] as number) >= lo) s--
    for (let t = s; t <= looks.length; t++) {
      const from = t === 0 ? 0 : (looks[t - 1] as number)
      if (from >= hi) break
      const to = t < looks.length ? (looks[t] as number) : 9e18
      if (to < lo) {
        s = t + 1
        continue
      }
      rows.push(`(${b}, ${t}, ${from}, ${to})`)
    }
  }
  return rows.join(',\n    ')
}

function str(s: string): string {
  return `'${s.replace(/'/g, "''")}'`
}

function weightsOf(r: RouteConfig): number[] {
  const total = r.split.reduce((a, s) => a + s.weight, 0)
  return r.split.map((s) => (total > 0 ? s.weight / total : 0))
}

/** The routes the reduction reads: those with metrics (the report's experiments). */
function experimentRoutes(config: Config): RouteConfig[] {
  return config.routes.filter((r) => r.metrics.length > 0)
}

/**
 * The reduction for `config` in `dialect`: one SELECT whose rows (`kind` and the columns that kind
 * uses, the rest NULL) are what `TotalsAccumulator` reads. Rows: `requests` per route and arm;
 * `period` at each change of the recorded shares (with the requests before it); `users` per
 * route, first period, arm and sampling level; `cell` per route, model, metric, bucket and look
 * segment (n, Σy); `totals` per route, model, metric and segment (n, Σy, shift, offset, m2);
 * `route` (outcomes, the order of its first outcome and first prediction).
 */
export function reductionSql(config: Config, dialect: DialectName = 'duckdb'): string {
  const d = DIALECTS[dialect]
  const routes = experimentRoutes(config)
  if (routes.length === 0) {
    return 'SELECT CAST(NULL AS VARCHAR) AS kind WHERE 1 = 0'
  }
  const routeRows = routes.map((r) => `(${str(r.name)}, ${r.analysis.buckets}, ${r.analysis.unit === 'user'})`).join(', ')
  const armRows = routes.flatMap((r) => {
    const w = weightsOf(r)
    return r.split.map((s, i) => `(${str(r.name)}, ${i}, ${str(s.model)}, ${w[i] as number})`)
  }).join(', ')
  const metricRows = routes.flatMap((r) => r.metrics.map((m) => `(${str(r.name)}, ${str(m.name)})`)).join(', ')
  const readable = `(${d.kind(['schema'])} IS NULL OR (${d.kind(['schema'])} = 'number' AND ${d.num(['schema'])} = floor(${d.num(['schema'])}) ` +
    `AND ${d.num(['schema'])} BETWEEN 1 AND ${SCHEMA_VERSION}))`
  // The sampling level of a unit hash (see UserSample): the largest L with mix(h) < 2^(32-L).
  const mix = `((${d.xor('h', 'CAST(floor(h / 65536) AS BIGINT)')} * 73244475) % 4294967296)`
  const level = Array.from({ length: 32 }, (_, i) => `CASE WHEN mix < ${2 ** (31 - i)} THEN 1 ELSE 0 END`).join(' + ')
  return `WITH
  ms_routes(route, buckets, by_user) AS (VALUES ${routeRows}),
  ms_arms(route, arm, model, weight) AS (VALUES ${armRows}),
  ms_metrics(route, metric) AS (VALUES ${metricRows}),
  ms_looks(b, seg, lo, hi) AS (VALUES
    ${lookTable(lookSchedule())}),
  parsed AS (SELECT ord, event_id, ${d.parse('line')} AS j FROM ms_lines),
  ranked AS (
    SELECT ord, j, CASE WHEN event_id IS NULL THEN 1 ELSE row_number() OVER (PARTITION BY event_id ORDER BY ord) END AS copy
    FROM parsed WHERE j IS NOT NULL),
  events AS (
    SELECT ord, j, ${d.text(['type'])} AS type, ${d.text(['route'])} AS route, ${d.text(['ts'])} AS ts FROM ranked
    WHERE copy = 1 AND ${d.kind(['route'])} = 'string' AND ${readable}),
  preds AS (
    SELECT e.ord, e.route, e.ts, a.arm,
      CASE WHEN ${d.kind(['user_id'])} = 'string' THEN ${d.text(['user_id'])} END AS user_id,
      CASE WHEN ${d.kind(['shares'])} IS NULL OR ${d.kind(['shares'])} = 'null' THEN 'null' ELSE ${d.raw(['shares'])} END AS shares
    FROM events e JOIN ms_arms a ON a.route = e.route AND a.model = ${d.text(['primary', 'model'])}
    WHERE e.type = 'prediction' AND ${d.kind(['primary', 'model'])} = 'string' AND ${d.text(['assignment'])} = 'hash'),
  pseq AS (
    SELECT p.*, row_number() OVER (PARTITION BY route ORDER BY ord) - 1 AS before,
      lag(shares) OVER (PARTITION BY route ORDER BY ord) AS prev FROM preds p),
  pchg AS (
    SELECT pseq.*, sum(CASE WHEN prev IS NULL OR prev <> shares THEN 1 ELSE 0 END)
      OVER (PARTITION BY route ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - 1 AS period FROM pseq),
  firsts AS (
    SELECT route, h, min(ord) AS first FROM (
      SELECT c.route, c.ord, ms_unit_hash(c.user_id) AS h FROM pchg c JOIN ms_routes r ON r.route = c.route
      WHERE r.by_user AND c.user_id IS NOT NULL) x
    GROUP BY route, h),
  users AS (
    SELECT route, period, arm, ${level} AS lvl FROM (
      SELECT f.route, c.period, c.arm, ${mix} AS mix FROM firsts f JOIN pchg c ON c.route = f.route AND c.ord = f.first) y),
  outs AS (
    SELECT e.ord, e.route, e.ts, r.buckets, ${d.text(['model'])} AS model, m.metric, ${d.num(['value'])} AS v,
      CASE WHEN ${d.kind(['bucket'])} = 'number' THEN CAST(${d.num(['bucket'])} AS BIGINT) END AS rec_bucket,
      CASE WHEN ${d.kind(['user_id'])} = 'string' THEN ${d.text(['user_id'])}
           WHEN ${d.kind(['request_id'])} = 'string' THEN ${d.text(['request_id'])} END AS unit,
      row_number() OVER (PARTITION BY e.route ORDER BY e.ord) AS k
    FROM events e JOIN ms_routes r ON r.route = e.route JOIN ms_metrics m ON m.route = e.route AND m.metric = ${d.text(['metric'])}
    WHERE e.type = 'outcome' AND ${d.kind(['model'])} = 'string' AND ${d.kind(['metric'])} = 'string'
      AND ${d.kind(['value'])} = 'number' AND abs(${d.num(['value'])}) <= ${MAX_OUTCOME_VALUE}
      AND (${d.kind(['attributed_by'])} IS NULL OR ${d.text(['attributed_by'])} IN ('model', 'request_id', 'user_id'))
      AND (${d.kind(['counted'])} IS NULL OR ${d.kind(['counted'])} <> 'bool' OR ${d.text(['counted'])} <> 'false')),
  obucket AS (
    SELECT o.*, CASE WHEN rec_bucket IS NULL AND unit IS NULL
      THEN row_number() OVER (PARTITION BY route, rec_bucket IS NULL AND unit IS NULL ORDER BY ord) - 1 END AS rr FROM outs o),
  oseg AS (
    SELECT o.ord, o.route, o.model, o.metric, o.v, l.seg,
      CASE WHEN o.rec_bucket IS NOT NULL THEN o.rec_bucket % o.buckets
           WHEN o.unit IS NOT NULL THEN ms_unit_hash(o.unit) % o.buckets
           ELSE o.rr % o.buckets END AS bucket,
      first_value(o.v) OVER (PARTITION BY o.route, o.model, o.metric ORDER BY o.ord) AS shift
    FROM obucket o JOIN ms_looks l ON l.b = CAST(floor(${d.ln('o.k')} / ${d.ln('1.05')}) AS BIGINT) AND o.k > l.lo AND o.k <= l.hi)
SELECT 'requests' AS kind, route, CAST(NULL AS VARCHAR) AS model, CAST(NULL AS VARCHAR) AS metric, arm, CAST(NULL AS BIGINT) AS period,
  CAST(NULL AS BIGINT) AS bucket, CAST(NULL AS BIGINT) AS seg, CAST(NULL AS BIGINT) AS lvl, count(*) AS n, CAST(NULL AS DOUBLE) AS sum,
  CAST(NULL AS DOUBLE) AS shift, CAST(NULL AS DOUBLE) AS "offset", CAST(NULL AS DOUBLE) AS m2, CAST(NULL AS VARCHAR) AS ts,
  CAST(NULL AS VARCHAR) AS shares, CAST(NULL AS BIGINT) AS first_prediction, CAST(NULL AS BIGINT) AS first_outcome
FROM preds GROUP BY route, arm
UNION ALL
SELECT 'period', route, NULL, NULL, NULL, period, NULL, NULL, NULL, before, NULL, NULL, NULL, NULL, ts, shares, NULL, NULL
FROM pchg WHERE prev IS NULL OR prev <> shares
UNION ALL
SELECT 'users', route, NULL, NULL, arm, period, NULL, NULL, lvl, count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM users GROUP BY route, period, arm, lvl
UNION ALL
SELECT 'cell', route, model, metric, NULL, NULL, bucket, seg, NULL, count(*), sum(v), NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM oseg GROUP BY route, model, metric, bucket, seg
UNION ALL
SELECT 'totals', route, model, metric, NULL, NULL, NULL, seg, NULL, count(*), sum(v), min(shift), avg(v - shift),
  var_pop(v - shift) * count(*), NULL, NULL, NULL, NULL
FROM oseg GROUP BY route, model, metric, seg
UNION ALL
SELECT 'route', r.route, NULL, NULL, NULL, NULL, NULL, NULL, NULL, coalesce(o.n, 0), NULL, NULL, NULL, NULL, o.ts, NULL, p.first, o.first
FROM ms_routes r
  LEFT JOIN (SELECT route, count(*) AS n, min(ord) AS first, min(ts) AS ts FROM outs GROUP BY route) o ON o.route = r.route
  LEFT JOIN (SELECT route, min(ord) AS first FROM preds GROUP BY route) p ON p.route = r.route
`
}
