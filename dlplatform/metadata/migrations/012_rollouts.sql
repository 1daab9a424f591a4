-- Progressive delivery (dlplatform/serve/rollout.py).
-- predictions.error: the code of a request a replica failed to answer ('' for an answered one),
-- so a version's error rate comes from the same durable log as its latency and accuracy.
ALTER TABLE predictions ADD COLUMN error VARCHAR NOT NULL DEFAULT '';
-- One rollout of a deployment from its serving version to a new one; at most one RUNNING per
-- deployment (checked in the store's transaction). step: index into the spec's steps;
-- step_started_at: when that step's traffic started (NULL: not applied yet).
CREATE TABLE rollouts (
    id VARCHAR PRIMARY KEY,
    deployment VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    from_version INTEGER NOT NULL,
    to_version INTEGER NOT NULL,
    spec_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    step_started_at TIMESTAMPTZ,
    reason VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
-- Every step and decision of a rollout, with its numbers (the deployment's rollout history).
CREATE TABLE rollout_events (
    rollout_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    "at" TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,
    percent INTEGER NOT NULL,
    decision VARCHAR NOT NULL,
    numbers_json VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    PRIMARY KEY (rollout_id, seq)
);
