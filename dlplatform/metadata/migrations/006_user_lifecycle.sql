-- User lifecycle: when a user was disabled (NULL while enabled). ``disabled`` itself and the
-- tokens' ``expires_at`` and ``last_used_at`` exist already (001, 004).
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
