-- Run tokens: the token a training or tuning job gets for its run. It acts as the run's owner,
-- and authentication refuses it once the run is final or after expires_at.
ALTER TABLE tokens ADD COLUMN run_id VARCHAR;
ALTER TABLE tokens ADD COLUMN expires_at TIMESTAMPTZ;
