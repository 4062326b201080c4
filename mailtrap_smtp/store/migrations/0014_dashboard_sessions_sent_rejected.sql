-- Issue 15, the dashboard's leftovers.
--
-- 1. Sent and rejected per day beside delivered and bounced (the overview's chart). Counted by a
--    consumer of its own (`consumers/stats_rollup.SubmissionRollup`) whose cursor starts at the
--    beginning of the events table, so the receptions and rejections already stored are counted
--    too, exactly once; existing rows start at 0 and are filled in by that consumer.
ALTER TABLE stats_daily ADD COLUMN sent_count bigint NOT NULL DEFAULT 0,
                        ADD COLUMN rejected_count bigint NOT NULL DEFAULT 0;

-- 2. Dashboard sessions, kept by the server so that logging out ends a session for every copy of
--    its cookie. The cookie carries a random id; only its SHA-256 is stored (a read of this table
--    opens no session). account_id NULL: the operator's session. A session ends at expires_at
--    (absolute timeout) or when unused for the idle timeout (last_seen_at), whichever is first.
CREATE TABLE dashboard_sessions (
    id_digest    bytea PRIMARY KEY,
    account_id   bigint REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
