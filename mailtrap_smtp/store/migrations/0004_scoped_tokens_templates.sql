-- Scoped tokens, email templates and sandbox inboxes (issue 11; MAILTRAP_COMPAT §7.3, §9 item 16).
--
-- A credential now carries its streams (one or both), its level and its domain scope (rules in
-- permissions.py). Existing tokens keep working unchanged: each becomes a send token on the stream
-- it had, for every domain of its account.

ALTER TABLE credentials ADD COLUMN streams text[];
UPDATE credentials SET streams = ARRAY[stream];
ALTER TABLE credentials
    ALTER COLUMN streams SET NOT NULL,
    -- Canonical forms only (permissions.STREAMS order), so equality and display need no sorting.
    ADD CONSTRAINT credentials_streams_valid
        CHECK (streams IN (ARRAY['transactional'], ARRAY['bulk'], ARRAY['transactional', 'bulk'])),
    ADD COLUMN level text NOT NULL DEFAULT 'send' CHECK (level IN ('send', 'read', 'admin')),
    -- true: every sending domain of the account, those added later too; false: only the domains
    -- in credential_domains. A flag rather than "no rows = all", so that deleting the last domain
    -- of a scoped token leaves it with no domain instead of every domain.
    ADD COLUMN all_domains boolean NOT NULL DEFAULT true,
    DROP COLUMN stream;

CREATE TABLE credential_domains (
    credential_id       bigint NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    domain_id           bigint NOT NULL REFERENCES sending_domains (id) ON DELETE CASCADE,
    PRIMARY KEY (credential_id, domain_id)
);
CREATE INDEX credential_domains_domain ON credential_domains (domain_id);

-- Templates rendered for `template_uuid` sends; the fields of Mailtrap's EmailTemplate object.
CREATE TABLE email_templates (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE,
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (name <> ''),
    subject             text NOT NULL,
    category            text NOT NULL,
    body_text           text,
    body_html           text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_templates_account ON email_templates (account_id, id);

-- Sandbox inboxes (Mailtrap's sandbox host, POST /api/send/{inbox_id}): the messages sent to an
-- inbox are kept for people to look at and never delivered, charged or signed.
CREATE TABLE sandbox_inboxes (
    id                  bigserial PRIMARY KEY,
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (name <> ''),
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

CREATE TABLE sandbox_messages (
    id                  uuid PRIMARY KEY,
    inbox_id            bigint NOT NULL REFERENCES sandbox_inboxes (id) ON DELETE CASCADE,
    credential_id       bigint REFERENCES credentials (id) ON DELETE SET NULL,
    mail_from           text NOT NULL,
    recipients          text[] NOT NULL,
    header_from         text,
    subject             text,
    size                integer NOT NULL,
    raw                 bytea NOT NULL,                 -- the message exactly as it was sent
    created_at          timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE sandbox_messages ALTER COLUMN raw SET STORAGE EXTERNAL;  -- as messages.raw (0002)
CREATE INDEX sandbox_messages_inbox ON sandbox_messages (inbox_id, created_at DESC);
