-- Idempotent pushes: the commit a push made, by the key its client sent (``Idempotency-Key``).
-- A row is inserted in the transaction that adds the commit, so a retried push finds the commit
-- the first attempt made, and a crash can never leave a commit without its key or the reverse.
CREATE TABLE push_keys (
    user_name VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    commit_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_name, dataset, key)
);
