-- Suppressions (MAILTRAP_COMPAT §6): addresses an account's domain never delivers to again, per
-- stream. A suppressed recipient of a later message is stored with state 'rejected' (never claimed
-- by delivery, never charged) and gets a 'suppressed' event in the accepting statement itself.

CREATE TABLE suppressions (
    id                          uuid PRIMARY KEY,
    account_id                  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    domain_id                   bigint NOT NULL REFERENCES sending_domains (id) ON DELETE CASCADE,
    email                       text NOT NULL,
    sending_stream              text NOT NULL CHECK (sending_stream IN ('transactional', 'bulk', 'any')),
    type                        text NOT NULL
                                CHECK (type IN ('hard bounce', 'unsubscription', 'spam complaint', 'manual import')),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    -- A copy of what Mailtrap shows of the message that caused it (kept when the message is erased).
    message_id                  uuid,
    message_bounce_category     text,
    message_category            text,
    message_client_ip           text,
    message_created_at          timestamptz,
    message_esp_response        text,
    message_esp_server_type     text,
    message_outgoing_ip         text,
    message_recipient_mx_name   text,
    message_sender_email        text,
    message_subject             text
);
-- One entry per address, domain and stream; the submission lookup is (domain_id, lower(email)).
CREATE UNIQUE INDEX suppressions_unique ON suppressions (domain_id, lower(email), sending_stream);
CREATE INDEX suppressions_account_created ON suppressions (account_id, created_at, id);
CREATE INDEX suppressions_account_email ON suppressions (account_id, lower(email));  -- search by email

ALTER TABLE recipients DROP CONSTRAINT recipients_state_check;
ALTER TABLE recipients ADD CONSTRAINT recipients_state_check
    CHECK (state IN ('queued', 'delivered', 'bounced', 'expired', 'rejected'));

-- Plans and quota notifications. The plan's values are copied onto the account (`account create
-- --plan`, `account set-plan`), so that the accepting statement decides a threshold crossing from
-- the rows it already locks. `quota_notifications` holds one row per threshold per period: its
-- primary key is what makes "exactly one per threshold per billing period" hold across nodes.
ALTER TABLE accounts ADD COLUMN plan text;
ALTER TABLE accounts ADD COLUMN alert_thresholds smallint[] NOT NULL DEFAULT '{80,90,100}';

CREATE TABLE quota_notifications (
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    period_start        date NOT NULL,
    threshold           smallint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, period_start, threshold)
);

-- Email logs (MAILTRAP_COMPAT §7.1): one entry per recipient, named by the recipient's public UUID
-- (Mailtrap's `message_id`: one per recipient, as the send API returns them). Migration 0006 of the
-- HTTP API adds the same column; whichever runs first creates it.
ALTER TABLE recipients ADD COLUMN IF NOT EXISTS public_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX IF NOT EXISTS recipients_public_id ON recipients (public_id);

-- Retention: when the stored body of a finished message was deleted (`retention.raw_message_days`).
ALTER TABLE messages ADD COLUMN raw_deleted_at timestamptz;

-- The mailbox provider behind an MX host (stats and email logs group and filter by it): the
-- well-known providers by the zone of their MX hosts, else the MX host's last two labels. THE
-- definition, used by the stats rollup and the email-log queries alike.
CREATE FUNCTION mts_mail_provider(mx text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN mx IS NULL OR mx = '' THEN NULL
        WHEN h ~ '(^|\.)(google\.com|googlemail\.com)$' THEN 'Google'
        WHEN h ~ '(^|\.)(outlook\.com|hotmail\.com|office365\.us)$' THEN 'Microsoft'
        WHEN h ~ '(^|\.)(yahoodns\.net|yahoo\.com|aol\.com)$' THEN 'Yahoo'
        WHEN h ~ '(^|\.)(icloud\.com|me\.com|mac\.com)$' THEN 'Apple'
        WHEN h ~ '(^|\.)(protonmail\.ch|proton\.me)$' THEN 'Proton'
        WHEN h ~ '(^|\.)(yandex\.net|yandex\.ru)$' THEN 'Yandex'
        WHEN h ~ '(^|\.)(mail\.ru)$' THEN 'Mail.ru'
        WHEN h ~ '(^|\.)(zoho\.com|zoho\.eu)$' THEN 'Zoho'
        WHEN h ~ '(^|\.)(gmx\.net|web\.de|kundenserver\.de)$' THEN 'United Internet'
        WHEN h ~ '^[0-9.]+$' OR h ~ ':' THEN h
        ELSE substring(h from '([^.]+\.[^.]+)$')
    END
    FROM (SELECT lower(rtrim(mx, '.')) AS h) s
$$;

-- Stats (§7.2) are read from daily rollups that an outbox consumer maintains, so a request reads
-- rows in proportion to the days asked (times the distinct domains, streams, categories and
-- providers of those days), never to the messages sent. 0 / '' stand for "none" in the key.
CREATE TABLE stats_daily (
    account_id          bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    day                 date NOT NULL,
    domain_id           bigint NOT NULL,
    stream              text NOT NULL,
    category            text NOT NULL,
    provider            text NOT NULL,
    delivery_count      bigint NOT NULL DEFAULT 0,
    bounce_count        bigint NOT NULL DEFAULT 0,
    open_count          bigint NOT NULL DEFAULT 0,
    click_count         bigint NOT NULL DEFAULT 0,
    spam_count          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, domain_id, stream, category, provider)
);
