-- Store message bytes without compression (still out of line, in TOAST).
--
-- PostgreSQL tries pglz on every bytea over ~2 KB. Mail is mostly base64 attachments and
-- already-compressed parts that pglz cannot shrink, yet the attempt cost about as much CPU as the
-- rest of the acceptance insert (measured: 0.39 -> 0.21 ms of PostgreSQL CPU per 10 KiB message
-- in a batch of 10), and every delivery attempt would pay to decompress again. Queued mail is
-- transient, so the disk it would save is small and short-lived.
ALTER TABLE messages ALTER COLUMN raw SET STORAGE EXTERNAL;
