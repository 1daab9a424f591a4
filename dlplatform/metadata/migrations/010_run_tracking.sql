-- Runs tracked from any code (kind 'tracked') and run search (dlplatform/metadata/_run_search.py).
-- run_latest_metrics: the final point of each metric key of a run (the highest step; at equal
-- steps the one logged last), kept by log_metric_batch in the transaction that adds the points,
-- so a search filters and sorts on one row per (run, key) instead of aggregating every point.
CREATE TABLE run_latest_metrics (
    run_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    step BIGINT NOT NULL,
    ts DOUBLE NOT NULL,
    PRIMARY KEY (run_id, key)
);
INSERT INTO run_latest_metrics
SELECT run_id, key, arg_max(value, (step, ts)), max(step), arg_max(ts, (step, ts))
FROM metrics GROUP BY run_id, key;
-- Files a tracked run logged (run.log_artifact): its path under the run, checked by the service
-- (no '..', not absolute), and the content-addressed object that holds the bytes.
CREATE TABLE run_artifacts (
    run_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, path)
);
