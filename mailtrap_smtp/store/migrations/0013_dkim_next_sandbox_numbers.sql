-- Two additions for Mailtrap's API shapes (issue 11).
--
-- 1. DKIM 'next' keys: `domain add` now creates, beside the signing key on each algorithm's first
--    selector, the next key on its second selector (Mailtrap's dkim1/dkim2 records). A 'next' key is
--    published ahead and never signs, and no DNS check activates it: `dkim rotate` turns it into the
--    rotation's pending key, which signs as soon as DNS serves it (docs/domains.md §7).
ALTER TABLE dkim_keys DROP CONSTRAINT dkim_keys_state_check;
ALTER TABLE dkim_keys ADD CONSTRAINT dkim_keys_state_check
    CHECK (state IN ('next', 'pending', 'active', 'retired'));

-- 2. Sandbox messages get a number: the Python SDK's testing API (`EmailMessage.id: int`,
--    `show_message(inbox_id, message_id: int)`) addresses a message by an integer. The uuid stays the
--    id `POST /api/send/{inbox_id}` answers.
ALTER TABLE sandbox_messages ADD COLUMN number bigserial;
CREATE UNIQUE INDEX sandbox_messages_number ON sandbox_messages (number);
-- What the SDK's EmailMessage shows of a kept message, read once when it is kept (no MIME parsing
-- when listing): the To header, the sizes of the text and HTML bodies, and whether it was read.
-- Messages kept before this migration show 0 for both sizes and no To header.
ALTER TABLE sandbox_messages ADD COLUMN header_to text;
ALTER TABLE sandbox_messages ADD COLUMN text_size integer NOT NULL DEFAULT 0;
ALTER TABLE sandbox_messages ADD COLUMN html_size integer NOT NULL DEFAULT 0;
ALTER TABLE sandbox_messages ADD COLUMN is_read boolean NOT NULL DEFAULT false;
ALTER TABLE sandbox_messages ADD COLUMN updated_at timestamptz;
CREATE INDEX sandbox_messages_inbox_number ON sandbox_messages (inbox_id, number DESC);
