-- RFC 8689 REQUIRETLS. `accounts.require_tls`: every message of the account is sent as if its client
-- had given `MAIL FROM:<...> REQUIRETLS` (the operator turns it on with `account require-tls NAME on`).
-- `messages.tls_required`: what the sender asked of the TLS of every hop: true = REQUIRETLS (the MAIL
-- parameter or the account option; RFC 8689 §4.2.1), false = the header `TLS-Required: No` (deliver
-- even where the recipient's MTA-STS or DANE policy cannot be met; RFC 8689 §4.2.2), NULL = neither.
ALTER TABLE accounts ADD COLUMN require_tls boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN tls_required boolean;
