-- Resource accounting (dlplatform/usage.py). usage_intervals: what a training/tuning run or a
-- deployment held from start_at to end_at (NULL: still holding): the CPUs and GPUs the scheduler
-- or Serve allocated, and the peak resident memory sampled while it ran (NULL: not measured).
-- Usage over any window is a sum of intervals clipped to it.
CREATE TABLE usage_intervals (
    kind VARCHAR NOT NULL,          -- 'run' or 'deployment'
    subject VARCHAR NOT NULL,       -- run id or deployment name
    owner VARCHAR NOT NULL,
    dataset VARCHAR,                -- the run's dataset (NULL for deployments)
    start_at TIMESTAMPTZ NOT NULL,
    end_at TIMESTAMPTZ,
    cpus DOUBLE NOT NULL,
    gpus DOUBLE NOT NULL,
    peak_mem_bytes BIGINT,
    PRIMARY KEY (kind, subject, start_at)
);
CREATE INDEX usage_intervals_window ON usage_intervals (start_at);
-- Optional limits the training scheduler enforces per user or per group (NULL: no limit).
CREATE TABLE quotas (
    scope VARCHAR NOT NULL,         -- 'user' or 'group'
    name VARCHAR NOT NULL,
    max_cpus DOUBLE,
    max_gpus DOUBLE,
    gpu_hours_per_day DOUBLE,
    updated_by VARCHAR NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, name)
);
