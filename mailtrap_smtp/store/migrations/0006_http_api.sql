-- The HTTPS Email API's schema.
--
-- Per-recipient ids: Mailtrap's send API returns one message id per recipient (To, Cc, Bcc order,
-- MAILTRAP_COMPAT.md §2.6), and those ids are what logs, webhooks and `queue show` use. A
-- recipient row's bigserial id reveals volumes and is not UUID-shaped, so each row gets a public
-- UUID, chosen by the submitter (so the reply can carry it without a second round trip) and
-- defaulted for rows written without one.
ALTER TABLE recipients ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX recipients_public_id ON recipients (public_id);
