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
