"""A client that half-closes (TCP FIN) right after the final dot: the message it sent whole is
stored exactly once (docs/decisions/0001-own-smtp-state-machine.md, point 4)."""

from __future__ import annotations

from tests.smtp_util import SENDER, Env, authed, half_close, message, reply_line


async def test_half_close_after_the_final_dot_stores_the_message_once(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<user@dest.test>") == reply_line("RECIPIENT_OK")
    assert (await c.cmd("DATA")).startswith("354 ")
    await c.send(message() + b".\r\n")
    # Shut down our sending side at the TCP level (no TLS close_notify): the server reads EOF.
    half_close(c)
    # Our side stays open for writing (smtp/halfclose.py): the client learns the message is queued.
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert await c.closed()
    counts = await smtp.counts()
    assert (counts["messages"], counts["recipients"], counts["used"], counts["events"]) == (1, 1, 1, 1)
