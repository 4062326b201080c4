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
