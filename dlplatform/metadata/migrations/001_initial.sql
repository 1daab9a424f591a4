-- dlplatform metadata schema, version 1. No foreign keys: DuckDB cannot update rows that a
-- foreign key references; the store enforces references in its transactions instead.
CREATE SEQUENCE IF NOT EXISTS audit_seq START 1;
CREATE SEQUENCE IF NOT EXISTS alert_seq START 1;

CREATE TABLE users (
    name VARCHAR PRIMARY KEY,
    role VARCHAR NOT NULL,
    groups VARCHAR[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE tokens (
    id VARCHAR PRIMARY KEY,
    user_name VARCHAR NOT NULL,
    token_hash VARCHAR NOT NULL UNIQUE,
    prefix VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    "at" TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    detail VARCHAR NOT NULL
);

CREATE TABLE datasets (
    name VARCHAR PRIMARY KEY,
    description VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    tags VARCHAR[] NOT NULL,
    groups VARCHAR[] NOT NULL,
    arrow_schema VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR NOT NULL,
    deleted_at TIMESTAMPTZ,
    head VARCHAR
);

CREATE TABLE commits (
    id VARCHAR PRIMARY KEY,
    dataset VARCHAR NOT NULL,
    parent VARCHAR,
    mode VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    author VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    version_hash VARCHAR NOT NULL,
    arrow_schema VARCHAR NOT NULL,
    stats_json VARCHAR,
    notes VARCHAR NOT NULL
);
CREATE INDEX commits_dataset ON commits (dataset);

CREATE TABLE commit_parts (
    commit_id VARCHAR NOT NULL,
    idx INTEGER NOT NULL,
    sha256 VARCHAR NOT NULL,
    row_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    PRIMARY KEY (commit_id, idx)
);

CREATE TABLE runs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    parent_id VARCHAR,
    name VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    priority INTEGER NOT NULL,
    spec_json VARCHAR NOT NULL,
    dataset_commit VARCHAR,
    code_version VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    error VARCHAR,
    result_json VARCHAR,
    tags VARCHAR[] NOT NULL
);
CREATE INDEX runs_parent ON runs (parent_id);

CREATE TABLE params (
    run_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE metrics (
    run_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    step BIGINT NOT NULL,
    ts DOUBLE NOT NULL
);

CREATE TABLE artifacts (
    sha256 VARCHAR PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE models (
    name VARCHAR PRIMARY KEY,
    description VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE model_versions (
    model VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    run_id VARCHAR,
    artifact_sha256 VARCHAR NOT NULL,
    signature_json VARCHAR NOT NULL,
    config_json VARCHAR NOT NULL,
    metrics_json VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    dataset_commit VARCHAR,
    dataset_version_hash VARCHAR,
    code_version VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE model_aliases (
    model VARCHAR NOT NULL,
    alias VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model, alias)
);

CREATE TABLE alias_events (
    model VARCHAR NOT NULL,
    alias VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    previous_version INTEGER,
    "by" VARCHAR NOT NULL,
    "at" TIMESTAMPTZ NOT NULL
);

CREATE TABLE deployments (
    name VARCHAR PRIMARY KEY,
    model VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    config_json VARCHAR NOT NULL,
    traffic_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE predictions (
    request_id VARCHAR PRIMARY KEY,
    deployment VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    "at" TIMESTAMPTZ NOT NULL,
    inputs_json VARCHAR NOT NULL,
    outputs_json VARCHAR NOT NULL,
    latency_ms DOUBLE NOT NULL
);

CREATE TABLE feedback (
    request_id VARCHAR NOT NULL,
    label_json VARCHAR NOT NULL,
    "by" VARCHAR NOT NULL,
    "at" TIMESTAMPTZ NOT NULL
);

CREATE TABLE alerts (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_seq'),
    kind VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    "at" TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ
);

CREATE TABLE workflow_runs (
    id VARCHAR PRIMARY KEY,
    workflow VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    error VARCHAR
);

CREATE TABLE workflow_steps (
    run_id VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    output_ref VARCHAR,
    error VARCHAR,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE lineage_edges (
    src VARCHAR NOT NULL,
    dst VARCHAR NOT NULL,
    relation VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (src, dst, relation)
);
CREATE INDEX lineage_src ON lineage_edges (src);
CREATE INDEX lineage_dst ON lineage_edges (dst);
