-- MTA-STS policies of recipient domains (RFC 8461 §5.1), kept until they expire so that a restarted
-- or another delivery node applies a known policy at once: an attacker who blocks the policy's
-- discovery (the TXT record or the HTTPS fetch) right after a restart must not lift it.
CREATE TABLE mta_sts_policies (
    domain              text PRIMARY KEY,                -- lower-case A-label recipient domain
    policy_id           text NOT NULL,                   -- the id of the _mta-sts TXT record
    mode                text NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
    mx                  text[] NOT NULL,
    max_age             integer NOT NULL CHECK (max_age >= 0),
    fetched_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL
);
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires_at);
