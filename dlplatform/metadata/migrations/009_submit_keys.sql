-- Idempotent training submits: the run a submit made, by the key its caller sent, as push_keys
-- (003) does for pushes. A row is inserted in the transaction that adds the run, so a retried
-- submit (a workflow step run again after a manager crash) finds the run the first one made.
CREATE TABLE submit_keys (
    user_name VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_name, key)
);
