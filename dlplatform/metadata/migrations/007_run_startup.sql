-- A run's startup breakdown: when each stage between submit and the first training step ended
-- (JSON object of unix seconds by stage name; see dlplatform/train/_startup.py).
ALTER TABLE runs ADD COLUMN startup_json VARCHAR;
