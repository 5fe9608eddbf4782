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
export type DialectName = 'duckdb' | 'clickhouse' | 'spark'

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
  /** murmur3_x86_32("modelsplit-unit:" + x, seed 0) as a BIGINT. */
  unitHash(x: string): string
  /** A string literal. */
  str(s: string): string
  /** `x` as a nullable column of a portable type. */
  cast(x: string, type: SqlType): string
  /** A constant table as a FROM item's subquery. */
  table(columns: readonly (readonly [string, SqlType])[], rows: readonly string[]): string
  /** The previous row's `x` in the window (NULL on the first row). */
  previous(x: string, window: string): string
  /** A column alias as a quoted identifier. */
  ident(name: string): string
  /** Appended to the query (settings). */
  readonly suffix: string
}

type SqlType = 'VARCHAR' | 'BIGINT' | 'DOUBLE' | 'BOOLEAN'

function jsonPath(path: readonly string[]): string {
  return '$' + path.map((p) => `."${p.replace(/["\\]/g, '')}"`).join('')
}

/** Every field the reduction reads: DuckDB extracts them all in one parse of the line. */
const FIELDS = [
  'type', 'route', 'ts', 'schema', 'primary.model', 'metric', 'assignment', 'user_id', 'shares',
  'model', 'value', 'bucket', 'request_id', 'attributed_by', 'counted',
] as const

/** DuckDB: `j` is the list of the FIELDS' JSON fragments (NULL where absent), so each line is parsed once. */
function field(path: readonly string[]): string {
  const i = (FIELDS as readonly string[]).indexOf(path.join('.'))
  if (i < 0) throw new RangeError(`reduction: field ${path.join('.')} is not in FIELDS; add it there`)
  return `j[${i + 1}]`
}

const DUCKDB: Dialect = {
  parse: (line) => `CASE WHEN json_valid(${line}) THEN json_extract(${line}, [${FIELDS.map((f) => `'${jsonPath(f.split('.'))}'`).join(', ')}]) END`,
  text: (p) => `json_extract_string(${field(p)}, '$')`,
  num: (p) => `TRY_CAST(${field(p)} AS DOUBLE)`,
  // Not `CASE json_type(...) WHEN ...`: an absent field's NULL type must stay NULL, and NULL matches no WHEN.
  kind: (p) => {
    const t = `json_type(${field(p)})`
    return `CASE WHEN ${t} IS NULL THEN NULL WHEN ${t} = 'VARCHAR' THEN 'string' WHEN ${t} IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT') ` +
      `THEN 'number' WHEN ${t} = 'BOOLEAN' THEN 'bool' WHEN ${t} = 'NULL' THEN 'null' ELSE 'other' END`
  },
  raw: (p) => `CAST(${field(p)} AS VARCHAR)`,
  xor: (a, b) => `xor(${a}, ${b})`,
  ln: (x) => `ln(${x})`,
  unitHash: (x) => `ms_unit_hash(${x})`,
  str: (v) => `'${v.replace(/'/g, "''")}'`,
  cast: (x, type) => `CAST(${x} AS ${type})`,
  table: (columns, rows) => `SELECT * FROM (VALUES ${rows.join(', ')}) AS t(${columns.map(([c]) => c).join(', ')})`,
  previous: (x, window) => `lag(${x}) OVER (${window})`,
  ident: (name) => `"${name}"`,
  suffix: '',
}

const CLICKHOUSE_TYPES: Record<SqlType, string> = { VARCHAR: 'String', BIGINT: 'Int64', DOUBLE: 'Float64', BOOLEAN: 'Bool' }

/** ClickHouse (checked on the engine chdb-core 26.9 embeds): JSON read from the line's text, murmurHash3_32 built in. */
const CLICKHOUSE: Dialect = {
  parse: (line) => `if(isValidJSON(${line}), ${line}, NULL)`,
  text: (p) => `if(JSONType(j, ${chPath(p)}) = 'String', JSONExtractString(j, ${chPath(p)}), ` +
    `if(JSONHas(j, ${chPath(p)}) AND JSONType(j, ${chPath(p)}) != 'Null', JSONExtractRaw(j, ${chPath(p)}), NULL))`,
  num: (p) => `JSONExtractFloat(j, ${chPath(p)})`,
  kind: (p) => `multiIf(NOT JSONHas(j, ${chPath(p)}), NULL, JSONType(j, ${chPath(p)}) = 'String', 'string', ` +
    `JSONType(j, ${chPath(p)}) IN ('Int64', 'UInt64', 'Double'), 'number', JSONType(j, ${chPath(p)}) = 'Bool', 'bool', ` +
    `JSONType(j, ${chPath(p)}) = 'Null', 'null', 'other')`,
  raw: (p) => `JSONExtractRaw(j, ${chPath(p)})`,
  xor: (a, b) => `bitXor(${a}, ${b})`,
  ln: (x) => `log(${x})`,
  unitHash: (x) => `toInt64(murmurHash3_32(concat('modelsplit-unit:', ${x})))`,
  str: (v) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`,
  cast: (x, type) => `CAST(${x} AS Nullable(${CLICKHOUSE_TYPES[type]}))`,
  table: (columns, rows) => `SELECT * FROM values('${columns.map(([c, t]) => `${c} ${CLICKHOUSE_TYPES[t]}`).join(', ')}', ${rows.join(', ')})`,
  previous: (x, window) => `lagInFrame(toNullable(${x})) OVER (${window} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)`,
  ident: (name) => `"${name}"`,
  // LEFT JOIN's missing side as NULL (ClickHouse's default fills in the type's default value).
  suffix: '\nSETTINGS join_use_nulls = 1',
}

function chPath(path: readonly string[]): string {
  return path.map((p) => `'${p.replace(/[\\']/g, '')}'`).join(', ')
}

const SPARK_TYPES: Record<SqlType, string> = { VARCHAR: 'STRING', BIGINT: 'BIGINT', DOUBLE: 'DOUBLE', BOOLEAN: 'BOOLEAN' }

/**
 * Spark SQL (checked on Spark 4.1, whose VARIANT type parses a line once): `j` is the line as a
 * VARIANT (NULL when it is not JSON; a duplicated key counts as not JSON unless the session sets
 * spark.sql.variant.allowDuplicateKeys, as modelsplit.spark does). Objects come back by `raw` with
 * their keys sorted, which changes no comparison the reduction makes (the recorded shares of a
 * router keep one key order). Checked with ANSI mode on, Spark 4's default.
 */
const SPARK: Dialect = {
  parse: (line) => `try_parse_json(${line})`,
  text: (p) => `try_variant_get(j, ${sparkPath(p)}, 'string')`,
  num: (p) => `try_variant_get(j, ${sparkPath(p)}, 'double')`,
  kind: (p) => {
    const t = `schema_of_variant(try_variant_get(j, ${sparkPath(p)}, 'variant'))`
    return `CASE WHEN ${t} IS NULL THEN NULL WHEN ${t} = 'STRING' THEN 'string' ` +
      `WHEN ${t} IN ('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT') OR ${t} LIKE 'DECIMAL(%' THEN 'number' ` +
      `WHEN ${t} = 'BOOLEAN' THEN 'bool' WHEN ${t} = 'VOID' THEN 'null' ELSE 'other' END`
  },
  raw: (p) => `to_json(try_variant_get(j, ${sparkPath(p)}, 'variant'))`,
  xor: (a, b) => `(${a} ^ ${b})`,
  ln: (x) => `ln(${x})`,
  unitHash: (x) => `ms_unit_hash(${x})`,
  // Spark reads backslash escapes in string literals (spark.sql.parser.escapedStringLiterals off, its default).
  str: (v) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`,
  cast: (x, type) => `CAST(${x} AS ${SPARK_TYPES[type]})`,
  // An inline table types each column as its rows' common type (a weight of 1 beside 0.5: DECIMAL): cast to the declared one.
  table: (columns, rows) => `SELECT ${columns.map(([c, t], i) => `CAST(col${i + 1} AS ${SPARK_TYPES[t]}) AS ${c}`).join(', ')} ` +
    `FROM VALUES ${rows.join(', ')}`,
  previous: (x, window) => `lag(${x}) OVER (${window})`,
  ident: (name) => `\`${name}\``,
  suffix: '',
}

function sparkPath(path: readonly string[]): string {
  return `'$${path.map((p) => `.${p.replace(/[^A-Za-z0-9_]/g, '')}`).join('')}'`
}

const DIALECTS: Record<DialectName, Dialect> = { duckdb: DUCKDB, clickhouse: CLICKHOUSE, spark: SPARK }

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
function lookRows(looks: readonly number[]): string[] {
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
  return rows
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
  const str = d.str
  const routeRows = routes.map((r) => `(${str(r.name)}, ${r.analysis.buckets}, ${r.analysis.unit === 'user'})`)
  const armRows = routes.flatMap((r) => {
    const w = weightsOf(r)
    return r.split.map((s, i) => `(${str(r.name)}, ${i}, ${str(s.model)}, ${w[i] as number})`)
  })
  const metricRows = routes.flatMap((r) => r.metrics.map((m) => `(${str(r.name)}, ${str(m.name)})`))
  if (routes.length === 0) {
    // No route with metrics: the same columns, no row.
    routeRows.push(`(${str('')}, 64, false)`)
    armRows.push(`(${str('')}, 0, ${str('')}, 0)`)
    metricRows.push(`(${str('')}, ${str('')})`)
  }
  const readable = `(${d.kind(['schema'])} IS NULL OR (${d.kind(['schema'])} = 'number' AND ${d.num(['schema'])} = floor(${d.num(['schema'])}) ` +
    `AND ${d.num(['schema'])} BETWEEN 1 AND ${SCHEMA_VERSION}))`
  // The sampling level of a unit hash (see UserSample): the largest L with mix(h) < 2^(32-L).
  const mix = `((${d.xor('h', 'CAST(floor(h / 65536) AS BIGINT)')} * 73244475) % 4294967296)`
  const level = Array.from({ length: 32 }, (_, i) => `CASE WHEN mix < ${2 ** (31 - i)} THEN 1 ELSE 0 END`).join(' + ')
  const out = (kind: string, values: Partial<Record<OutputColumn, string>>): string =>
    `SELECT ${str(kind)} AS kind, ` + OUTPUT.map(([c, t]) => `${d.cast(values[c] ?? 'NULL', t)} AS ${d.ident(c)}`).join(', ')
  return `WITH
  ms_routes AS (${d.table([['route', 'VARCHAR'], ['buckets', 'BIGINT'], ['by_user', 'BOOLEAN']], routeRows)}),
  ms_arms AS (${d.table([['route', 'VARCHAR'], ['arm', 'BIGINT'], ['model', 'VARCHAR'], ['weight', 'DOUBLE']], armRows)}),
  ms_metrics AS (${d.table([['route', 'VARCHAR'], ['metric', 'VARCHAR']], metricRows)}),
  ms_looks AS (${d.table([['b', 'BIGINT'], ['seg', 'BIGINT'], ['lo', 'BIGINT'], ['hi', 'BIGINT']], lookRows(lookSchedule()))}),
  parsed AS (SELECT ord, event_id, ${d.parse('line')} AS j FROM ms_lines),
  ranked AS (
    SELECT ord, j, CASE WHEN event_id IS NULL THEN 1 ELSE row_number() OVER (PARTITION BY event_id ORDER BY ord) END AS copy
    FROM parsed WHERE j IS NOT NULL),
  events AS (
    SELECT ord, j, ${d.text(['type'])} AS type, ${d.text(['route'])} AS route, ${d.text(['ts'])} AS ts,
      CASE WHEN ${d.kind(['primary', 'model'])} = 'string' THEN ${d.text(['primary', 'model'])} END AS primary_model,
      CASE WHEN ${d.kind(['metric'])} = 'string' THEN ${d.text(['metric'])} END AS metric
    FROM ranked
    WHERE copy = 1 AND ${d.kind(['route'])} = 'string' AND ${readable}),
  preds AS (
    SELECT e.ord AS ord, e.route AS route, e.ts AS ts, a.arm AS arm,
      CASE WHEN ${d.kind(['user_id'])} = 'string' THEN ${d.text(['user_id'])} END AS user_id,
      CASE WHEN ${d.kind(['shares'])} IS NULL OR ${d.kind(['shares'])} = 'null' THEN 'null' ELSE ${d.raw(['shares'])} END AS shares
    FROM events e JOIN ms_arms a ON a.route = e.route AND a.model = e.primary_model
    WHERE e.type = 'prediction' AND ${d.text(['assignment'])} = 'hash'),
  pseq AS (
    SELECT ord, route, ts, arm, user_id, shares, row_number() OVER (PARTITION BY route ORDER BY ord) - 1 AS before,
      ${d.previous('shares', 'PARTITION BY route ORDER BY ord')} AS prev FROM preds),
  pchg AS (
    SELECT ord, route, ts, arm, user_id, shares, before, prev, sum(CASE WHEN prev IS NULL OR prev <> shares THEN 1 ELSE 0 END)
      OVER (PARTITION BY route ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - 1 AS period FROM pseq),
  firsts AS (
    SELECT route, h, min(ord) AS first FROM (
      SELECT c.route AS route, c.ord AS ord, ${d.unitHash('c.user_id')} AS h FROM pchg c JOIN ms_routes r ON r.route = c.route
      WHERE r.by_user AND c.user_id IS NOT NULL) x
    GROUP BY route, h),
  users AS (
    SELECT route, period, arm, ${level} AS lvl FROM (
      SELECT f.route AS route, c.period AS period, c.arm AS arm, ${mix} AS mix
      FROM firsts f JOIN pchg c ON c.route = f.route AND c.ord = f.first) y),
  outs AS (
    SELECT e.ord AS ord, e.route AS route, e.ts AS ts, r.buckets AS buckets, ${d.text(['model'])} AS model, m.metric AS metric,
      ${d.num(['value'])} AS v,
      CASE WHEN ${d.kind(['bucket'])} = 'number' THEN CAST(${d.num(['bucket'])} AS BIGINT) END AS rec_bucket,
      CASE WHEN ${d.kind(['user_id'])} = 'string' THEN ${d.text(['user_id'])}
           WHEN ${d.kind(['request_id'])} = 'string' THEN ${d.text(['request_id'])} END AS unit,
      row_number() OVER (PARTITION BY e.route ORDER BY e.ord) AS k
    FROM events e JOIN ms_routes r ON r.route = e.route JOIN ms_metrics m ON m.route = e.route AND m.metric = e.metric
    WHERE e.type = 'outcome' AND ${d.kind(['model'])} = 'string'
      AND ${d.kind(['value'])} = 'number' AND abs(${d.num(['value'])}) <= ${MAX_OUTCOME_VALUE}
      AND (${d.kind(['attributed_by'])} IS NULL OR ${d.text(['attributed_by'])} IN ('model', 'request_id', 'user_id'))
      AND (${d.kind(['counted'])} IS NULL OR ${d.kind(['counted'])} <> 'bool' OR ${d.text(['counted'])} <> 'false')),
  obucket AS (
    SELECT ord, route, model, metric, v, k, buckets, rec_bucket, unit, CASE WHEN rec_bucket IS NULL AND unit IS NULL
      THEN row_number() OVER (PARTITION BY route, rec_bucket IS NULL AND unit IS NULL ORDER BY ord) - 1 END AS rr,
      CAST(floor(${d.ln('k')} / ${d.ln('1.05')}) AS BIGINT) AS b FROM outs),
  oseg AS (
    SELECT o.ord AS ord, o.route AS route, o.model AS model, o.metric AS metric, o.v AS v, l.seg AS seg,
      CASE WHEN o.rec_bucket IS NOT NULL THEN o.rec_bucket % o.buckets
           WHEN o.unit IS NOT NULL THEN ${d.unitHash('o.unit')} % o.buckets
           ELSE o.rr % o.buckets END AS bucket,
      first_value(o.v) OVER (PARTITION BY o.route, o.model, o.metric ORDER BY o.ord) AS first_v
    FROM obucket o JOIN ms_looks l ON l.b = o.b
    WHERE o.k > l.lo AND o.k <= l.hi),
  out_routes AS (SELECT route, count(*) AS n, min(ord) AS first, min(ts) AS ts FROM outs GROUP BY route),
  pred_routes AS (SELECT route, min(ord) AS first FROM preds GROUP BY route)
${out('requests', { route: 'route', arm: 'arm', n: 'count(*)' })}
FROM preds GROUP BY route, arm
UNION ALL
${out('period', { route: 'route', period: 'period', n: 'before', ts: 'ts', shares: 'shares' })}
FROM pchg WHERE prev IS NULL OR prev <> shares
UNION ALL
${out('users', { route: 'route', arm: 'arm', period: 'period', lvl: 'lvl', n: 'count(*)' })}
FROM users GROUP BY route, period, arm, lvl
UNION ALL
${out('cell', { route: 'route', model: 'model', metric: 'metric', bucket: 'bucket', seg: 'seg', n: 'count(*)', sum: 'sum(v)' })}
FROM oseg GROUP BY route, model, metric, bucket, seg
UNION ALL
${out('totals', { route: 'route', model: 'model', metric: 'metric', seg: 'seg', n: 'count(*)', sum: 'sum(v)', shift: 'min(first_v)',
    offset: 'avg(v - first_v)', m2: 'var_pop(v - first_v) * count(*)' })}
FROM oseg GROUP BY route, model, metric, seg
UNION ALL
${out('route', { route: 'r.route', n: 'coalesce(o.n, 0)', ts: 'o.ts', first_prediction: 'p.first', first_outcome: 'o.first' })}
FROM ms_routes r LEFT JOIN out_routes o ON o.route = r.route LEFT JOIN pred_routes p ON p.route = r.route
WHERE r.route <> ''${d.suffix}
`
}

/** The reduction's columns after `kind`, in order, with their types. */
const OUTPUT = [
  ['route', 'VARCHAR'], ['model', 'VARCHAR'], ['metric', 'VARCHAR'], ['arm', 'BIGINT'], ['period', 'BIGINT'], ['bucket', 'BIGINT'],
  ['seg', 'BIGINT'], ['lvl', 'BIGINT'], ['n', 'BIGINT'], ['sum', 'DOUBLE'], ['shift', 'DOUBLE'], ['offset', 'DOUBLE'], ['m2', 'DOUBLE'],
  ['ts', 'VARCHAR'], ['shares', 'VARCHAR'], ['first_prediction', 'BIGINT'], ['first_outcome', 'BIGINT'],
] as const satisfies readonly (readonly [string, SqlType])[]

type OutputColumn = (typeof OUTPUT)[number][0]
