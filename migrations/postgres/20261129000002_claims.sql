-- Claims on in-flight sends, so several daemons can share one database.
-- A stage in 'sending' belongs to claim_owner until lease_until (Unix
-- seconds, wall clock); the owner renews the lease while it works. Every
-- claim increments claim_token, and an owner may only record the outcome of
-- the claim it holds: a paused owner that wakes up after another instance
-- took over cannot overwrite what that instance recorded.
ALTER TABLE stages ADD COLUMN claim_owner TEXT;
ALTER TABLE stages ADD COLUMN claim_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE stages ADD COLUMN lease_until BIGINT;
CREATE INDEX stages_sending ON stages (lease_until) WHERE state = 'sending';
