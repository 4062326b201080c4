-- The events table becomes the outbox (mailtrap_smtp/outbox.py): consumers read it after commit,
-- each through a durable cursor, and webhooks are its first consumers.

-- The transaction that wrote each event. A consumer reads only events whose transaction is older
-- than the oldest one still running (pg_snapshot_xmin), in (xid, id) order: that prefix of the log
-- can no longer grow, so a cursor that moved past a position never skips an event committed later.
-- Existing rows get the migration's own xid (the default is evaluated per row by the rewrite).
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_outbox ON events (xid, id);

-- One row per consumer ("stats") or per instance of a consumer family ("webhook:42").
CREATE TABLE outbox_cursors (
    name                text PRIMARY KEY,
    kind                text NOT NULL,                  -- the consumer family that processes it
    -- Everything up to and including (pos_xid, pos_id), in (xid, id) order, is done.
    pos_xid             xid8 NOT NULL,
    pos_id              bigint NOT NULL,
    lease_owner         text,
    lease_until         timestamptz,
    not_before          timestamptz,                    -- retry or flush time chosen by the consumer
    failures            integer NOT NULL DEFAULT 0,     -- consecutive failed attempts
    last_error          text,
    paused              boolean NOT NULL DEFAULT false, -- not claimed at all (a deactivated webhook)
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_cursors_kind ON outbox_cursors (kind);

CREATE TABLE webhooks (
    id                  bigserial PRIMARY KEY,
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                 text NOT NULL,
    webhook_type        text NOT NULL DEFAULT 'email_sending'
                        CHECK (webhook_type IN ('email_sending', 'campaigns', 'audit_log', 'inbound_receiving')),
    active              boolean NOT NULL DEFAULT true,
    payload_format      text NOT NULL DEFAULT 'json' CHECK (payload_format IN ('json', 'jsonlines')),
    sending_stream      text CHECK (sending_stream IN ('transactional', 'bulk')),  -- NULL: both
    event_types         text[] NOT NULL,                -- Mailtrap's config spelling (core/event_names.py)
    domain_id           bigint REFERENCES sending_domains (id) ON DELETE CASCADE, -- NULL: every domain
    -- Needed in clear to sign each POST (HMAC); never logged, returned only by the create call.
    signing_secret      text NOT NULL,
    deactivated_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_account ON webhooks (account_id);

-- The delivery log: one row per POST attempted.
CREATE TABLE webhook_attempts (
    id                  bigserial PRIMARY KEY,
    webhook_id          bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempted_at        timestamptz NOT NULL,
    events              integer NOT NULL,
    first_event_id      uuid,
    last_event_id       uuid,
    status              integer,                        -- HTTP status; NULL when there was no response
    latency_ms          integer,
    error               text,                           -- NULL on success
    acknowledged        boolean NOT NULL
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, id DESC);
