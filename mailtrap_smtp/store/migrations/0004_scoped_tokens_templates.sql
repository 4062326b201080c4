-- Scoped tokens and email templates (issue 11; MAILTRAP_COMPAT §7.3).
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
