-- modelsplit records in ClickHouse, fed from the Kafka sink's topic (checked on the engine chdb-core 26.9
-- embeds; older servers were not tried).
--
--   clickhouse-client --multiquery < deploy/clickhouse/schema.sql        (after editing the Kafka settings)
--
-- Every statement but the Kafka engine table is checked with the current engine (chdb) by
-- clients/python/tests/test_clickhouse_schema.py, which stands a plain table with the Kafka
-- table's columns in for it. The reduction (`modelsplit report --config CFG --sql clickhouse`)
-- reads `modelsplit.ms_lines`; `modelsplit report --clickhouse URL` is not built yet: run the
-- reduction with clickhouse-client and give its rows to `modelsplit report --totals` (README, At scale).

CREATE DATABASE IF NOT EXISTS modelsplit;

-- Every record as the sink wrote it (the file sink's JSON line), with its CloudEvents headers and
-- where it was in the topic. Duplicates from at-least-once delivery share `event_id` (ce_id).
-- ReplacingMergeTree keeps one row per (route, type, event_id) within each inserted block and when
-- parts merge, which happens in the background at a time ClickHouse chooses (minutes, sometimes
-- never for old parts): until then a copy redelivered in a later block is on disk. Queries that must count once say so: `FINAL`, or the reduction's own
-- dedup (the first copy of each event_id by `ord`), which is exact whatever has merged.
CREATE TABLE IF NOT EXISTS modelsplit.records
(
    event_id        String,
    type            LowCardinality(String),
    source          LowCardinality(String),
    route           LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    line            String CODEC(ZSTD(3)),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    received_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (route, type, event_id);

-- The topic the Kafka sink writes (record_sinks kafka: topic). One message = one record; the
-- headers ce_id, ce_type, ce_source, ce_specversion are CloudEvents' binary mode (Kafka binding).
CREATE TABLE IF NOT EXISTS modelsplit.records_queue
(
    line String
)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'kafka:9092',
         kafka_topic_list = 'modelsplit-records',
         kafka_group_name = 'modelsplit-clickhouse',
         kafka_format = 'LineAsString',
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS modelsplit.records_from_kafka TO modelsplit.records AS
SELECT
    arrayElement(_headers.value, indexOf(_headers.name, 'ce_id'))          AS event_id,
    replaceOne(arrayElement(_headers.value, indexOf(_headers.name, 'ce_type')), 'org.modelsplit.', '') AS type,
    arrayElement(_headers.value, indexOf(_headers.name, 'ce_source'))      AS source,
    JSONExtractString(line, 'route')                                       AS route,
    parseDateTime64BestEffortOrZero(JSONExtractString(line, 'ts'), 3, 'UTC') AS ts,
    line,
    _partition                                                             AS kafka_partition,
    _offset                                                                AS kafka_offset
FROM modelsplit.records_queue
WHERE isValidJSON(line);

-- Predictions with their shadows: one row per prediction record (the primary's columns) with the
-- shadows as parallel arrays, filled from `records` as rows arrive.
CREATE TABLE IF NOT EXISTS modelsplit.predictions
(
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    route           LowCardinality(String),
    request_id      String,
    user_id         Nullable(String),
    assignment      LowCardinality(String),
    model           LowCardinality(String),
    model_version   Nullable(String),
    status          UInt16,
    latency_ms      Float64,
    error           Nullable(String),
    `shadows.model`          Array(String),
    `shadows.status`         Array(UInt16),
    `shadows.latency_ms`     Array(Float64),
    `shadows.dropped`        Array(String),
    `shadows.agree`          Array(Nullable(Bool)),
    `shadows.abs_diff_max`   Array(Nullable(Float64))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (route, ts, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS modelsplit.predictions_from_records TO modelsplit.predictions AS
SELECT
    event_id, ts, route,
    JSONExtractString(line, 'request_id')                                   AS request_id,
    JSONExtract(line, 'user_id', 'Nullable(String)')                        AS user_id,
    JSONExtractString(line, 'assignment')                                   AS assignment,
    JSONExtractString(line, 'primary', 'model')                             AS model,
    JSONExtract(line, 'primary', 'model_version', 'Nullable(String)')       AS model_version,
    JSONExtractUInt(line, 'primary', 'status')                              AS status,
    JSONExtractFloat(line, 'primary', 'latency_ms')                         AS latency_ms,
    JSONExtract(line, 'primary', 'error', 'Nullable(String)')               AS error,
    arrayMap(s -> JSONExtractString(s, 'model'), JSONExtractArrayRaw(line, 'shadows'))              AS `shadows.model`,
    arrayMap(s -> toUInt16(JSONExtractUInt(s, 'status')), JSONExtractArrayRaw(line, 'shadows'))     AS `shadows.status`,
    arrayMap(s -> JSONExtractFloat(s, 'latency_ms'), JSONExtractArrayRaw(line, 'shadows'))          AS `shadows.latency_ms`,
    arrayMap(s -> JSONExtractString(s, 'dropped'), JSONExtractArrayRaw(line, 'shadows'))            AS `shadows.dropped`,
    arrayMap(s -> JSONExtract(s, 'comparison', 'agree', 'Nullable(Bool)'), JSONExtractArrayRaw(line, 'shadows')) AS `shadows.agree`,
    arrayMap(s -> JSONExtract(s, 'comparison', 'abs_diff_max', 'Nullable(Float64)'), JSONExtractArrayRaw(line, 'shadows')) AS `shadows.abs_diff_max`
FROM modelsplit.records
WHERE type = 'prediction';

CREATE TABLE IF NOT EXISTS modelsplit.outcomes
(
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    route           LowCardinality(String),
    request_id      Nullable(String),
    user_id         Nullable(String),
    model           LowCardinality(String),
    model_version   Nullable(String),
    metric          LowCardinality(String),
    value           Float64,
    attributed_by   LowCardinality(String),
    bucket          Nullable(UInt16),
    counted         Bool
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (route, metric, ts, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS modelsplit.outcomes_from_records TO modelsplit.outcomes AS
SELECT
    event_id, ts, route,
    JSONExtract(line, 'request_id', 'Nullable(String)')                     AS request_id,
    JSONExtract(line, 'user_id', 'Nullable(String)')                        AS user_id,
    JSONExtractString(line, 'model')                                        AS model,
    JSONExtract(line, 'model_version', 'Nullable(String)')                  AS model_version,
    JSONExtractString(line, 'metric')                                       AS metric,
    JSONExtractFloat(line, 'value')                                         AS value,
    JSONExtractString(line, 'attributed_by')                                AS attributed_by,
    JSONExtract(line, 'bucket', 'Nullable(UInt16)')                         AS bucket,
    NOT (JSONType(line, 'counted') = 'Bool' AND NOT JSONExtractBool(line, 'counted')) AS counted
FROM modelsplit.records
WHERE type = 'outcome';

-- Decisions (rollout steps, bandit weight changes): their shape is not settled, so the line is kept whole.
CREATE TABLE IF NOT EXISTS modelsplit.decisions
(
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    route           LowCardinality(String),
    line            String
)
ENGINE = ReplacingMergeTree
ORDER BY (route, ts, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS modelsplit.decisions_from_records TO modelsplit.decisions AS
SELECT event_id, ts, route, line FROM modelsplit.records WHERE type = 'decision';

-- What the reduction reads: every record line once per copy, in the order the router applied them
-- (its time, then the topic's order), with its event id for the reduction's own dedup.
CREATE VIEW IF NOT EXISTS modelsplit.ms_lines AS
SELECT line, row_number() OVER (ORDER BY ts, kafka_partition, kafka_offset) AS ord, event_id
FROM modelsplit.records;

-- The assignment source experimentation platforms read (GrowthBook, Statsig, Eppo): one row per
-- unit and experiment, at the unit's first exposure (README, At scale: the field mapping).
CREATE VIEW IF NOT EXISTS modelsplit.assignments AS
SELECT
    user_id                                   AS unit_id,
    min(ts)                                   AS first_exposure,
    route                                     AS experiment_id,
    route,
    argMin(model, (ts, event_id))             AS arm,
    argMin(model_version, (ts, event_id))     AS model_version
FROM modelsplit.predictions FINAL
WHERE assignment = 'hash' AND user_id IS NOT NULL
GROUP BY user_id, route;
