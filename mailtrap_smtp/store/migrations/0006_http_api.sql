-- The HTTPS Email API's schema.
--
-- Per-recipient ids: Mailtrap's send API returns one message id per recipient (To, Cc, Bcc order,
-- MAILTRAP_COMPAT.md §2.6), and those ids are what logs, webhooks and `queue show` use. A
-- recipient row's bigserial id reveals volumes and is not UUID-shaped, so each row gets a public
-- UUID, chosen by the submitter (so the reply can carry it without a second round trip) and
-- defaulted for rows written without one.
ALTER TABLE recipients ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX recipients_public_id ON recipients (public_id);

-- Idempotency keys of the send API (`Idempotency-Key`, at most 256 characters, per token, 24 h): the
-- first request's answer is kept, so a repeat gets it again and sends and charges nothing; a repeat
-- while the first is still in flight is refused (409). In PostgreSQL, so they hold across processes
-- and nodes.
CREATE TABLE idempotency_keys (
    credential_id       bigint NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    key                 text NOT NULL,
    state               text NOT NULL CHECK (state IN ('in_flight', 'done')),
    status              integer,
    response            jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (credential_id, created_at);
