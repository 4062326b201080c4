-- The data model for the whole product. Times are timestamptz (UTC); ids of messages are UUIDs
-- because they are shown to clients ("queued as <id>") and must not reveal volumes.

CREATE TABLE accounts (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    monthly_limit       bigint NOT NULL CHECK (monthly_limit >= 0),
    max_message_size    bigint NOT NULL CHECK (max_message_size > 0),
    -- Day of month the billing period starts; days past the end of a short month clamp to its last day.
    billing_anchor_day  smallint NOT NULL DEFAULT 1 CHECK (billing_anchor_day BETWEEN 1 AND 31),
    alert_email         text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sending_domains (
    id                  bigserial PRIMARY KEY,
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL UNIQUE,          -- lower-case A-label
    -- unverified: records not (yet) all passing; verified: may send; failing: was verified, records
    -- broke, still sending inside the grace period; suspended: grace period over, may not send.
    state               text NOT NULL DEFAULT 'unverified'
                        CHECK (state IN ('unverified', 'verified', 'failing', 'suspended')),
    verification_token  text NOT NULL,
    dns_skipped         boolean NOT NULL DEFAULT false, -- added with --skip-dns-verification (development)
    approved_at         timestamptz,
    verified_at         timestamptz,
    failing_since       timestamptz,
    last_checked_at     timestamptz,
    last_check          jsonb,                          -- per-record results of the last DNS check
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sending_domains_account ON sending_domains (account_id);

CREATE TABLE dkim_keys (
    id                  bigserial PRIMARY KEY,
    domain_id           bigint NOT NULL REFERENCES sending_domains (id) ON DELETE CASCADE,
    selector            text NOT NULL,
    algorithm           text NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
    private_key_enc     bytea NOT NULL,                 -- AES-256-GCM under the key-encryption key
    public_key          text NOT NULL,                  -- base64, as in the DNS p= tag
    -- pending: published on the idle selector, not yet signing; active: signing; retired: replaced.
    state               text NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    activated_at        timestamptz,
    retired_at          timestamptz
);
CREATE UNIQUE INDEX dkim_keys_one_active ON dkim_keys (domain_id, algorithm) WHERE state = 'active';
CREATE INDEX dkim_keys_domain ON dkim_keys (domain_id);

CREATE TABLE credentials (
    id                  bigserial PRIMARY KEY,
    public_id           text NOT NULL UNIQUE,           -- the token's prefix, used to find the row
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stream              text NOT NULL CHECK (stream IN ('transactional', 'bulk')),
    digest              bytea NOT NULL,                 -- SHA-256 of the whole token; never the token
    name                text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz,
    revoked_at          timestamptz
);
CREATE INDEX credentials_account ON credentials (account_id);

CREATE TABLE usage (
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    period_start        date NOT NULL,
    used                bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (account_id, period_start)
);

CREATE TABLE messages (
    id                  uuid PRIMARY KEY,
    account_id          bigint NOT NULL REFERENCES accounts (id),
    credential_id       bigint REFERENCES credentials (id),
    domain_id           bigint REFERENCES sending_domains (id),
    stream              text NOT NULL CHECK (stream IN ('transactional', 'bulk')),
    mail_from           text NOT NULL,
    header_from         text,
    subject             text,
    message_id_header   text,
    category            text,
    custom_variables    jsonb,
    client_ip           inet,
    size                integer NOT NULL,
    raw                 bytea NOT NULL,                 -- the signed message exactly as it will be relayed
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_account_created ON messages (account_id, created_at DESC);

CREATE TABLE recipients (
    id                  bigserial PRIMARY KEY,
    message_id          uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    rcpt                text NOT NULL,
    domain              text NOT NULL,                  -- lower-case destination domain, for grouping
    -- queued: waiting for next_attempt_at (or leased while lease_until is in the future);
    -- delivered / bounced / expired: final.
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'delivered', 'bounced', 'expired')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    leased_by           text,
    last_reply          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipients_due ON recipients (next_attempt_at) WHERE state = 'queued';
CREATE INDEX recipients_message ON recipients (message_id);

-- Append-only: rows are inserted in the same transaction as the state change they record.
CREATE TABLE events (
    id                  bigserial PRIMARY KEY,
    event_id            uuid NOT NULL UNIQUE,
    type                text NOT NULL,
    account_id          bigint REFERENCES accounts (id) ON DELETE CASCADE,
    domain_id           bigint REFERENCES sending_domains (id) ON DELETE SET NULL,
    message_id          uuid REFERENCES messages (id) ON DELETE CASCADE,
    recipient_id        bigint REFERENCES recipients (id) ON DELETE CASCADE,
    details             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_message ON events (message_id, id);
CREATE INDEX events_account_created ON events (account_id, created_at);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
