-- What a training or tuning run holds while it runs (all its concurrent trials for a tuning
-- run), recorded at submit so the scheduler reads it without parsing a component's spec:
-- workers, their CPUs, and their GPUs (NULL: one per worker when the cluster has GPUs).
ALTER TABLE runs ADD COLUMN workers INTEGER DEFAULT 0;
ALTER TABLE runs ADD COLUMN cpus DOUBLE DEFAULT 0;
ALTER TABLE runs ADD COLUMN gpus DOUBLE;
