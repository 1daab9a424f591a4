-- Workflow trigger registrations (dlplatform.workflows.triggers): on dataset commit or on a cron
-- schedule. They persist so that they survive a platform restart.
CREATE TABLE workflow_triggers (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    workflow VARCHAR NOT NULL,
    params_json VARCHAR NOT NULL,
    cron VARCHAR,
    dataset VARCHAR,
    owner VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    enabled BOOLEAN NOT NULL,
    last_fired_at TIMESTAMPTZ,
    last_commit VARCHAR
);
