-- Workflow registry (dlplatform.workflows.registry): the factories an admin registered under a
-- name. A run names a registered workflow; nothing named in a request is imported. Built-in
-- pipelines and packages' entry points are not stored here (they come with the code).
CREATE TABLE workflow_registry (
    name VARCHAR PRIMARY KEY,
    target VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    registered_by VARCHAR,
    registered_at TIMESTAMPTZ
);
