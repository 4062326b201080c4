-- RFC 8058 one-click unsubscribe: whether the account's bulk-stream messages get List-Unsubscribe
-- and List-Unsubscribe-Post headers at submission (off by default: the operator turns it on per
-- account with `account list-unsubscribe NAME on`).
ALTER TABLE accounts ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT false;
