-- Whether a message needs SMTPUTF8 at delivery (RFC 6531): a sender whose local part is not ASCII,
-- or UTF-8 header fields (RFC 6532) in a message submitted as internationalised mail (MAIL ...
-- SMTPUTF8, or the API). Decided once at acceptance (submission.needs_smtputf8): whether the
-- client declared SMTPUTF8 is not in the stored bytes. A recipient's own non-ASCII local part is
-- judged at delivery from `recipients.rcpt`. Rows from before this migration were all accepted
-- without SMTPUTF8 (it was not offered), so false is their truth.
ALTER TABLE messages ADD COLUMN smtputf8 boolean NOT NULL DEFAULT false;
