"""Automatic suppression from reports that come back later (MAILTRAP_COMPAT §9 item 23): DSNs and
ARF complaints delivered over real SMTP to the inbound listener's VERP return path, turned into
suppressions by the outbox consumer; the next message to the address is accepted and rejected."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from mailtrap_smtp import outbox
from mailtrap_smtp.consumers.auto_suppressions import AutoSuppressions
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.store import messages
from tests.delivery_util import PERIOD, make_raw
from tests.inbound_util import RCPT, Inbound, send
from tests.report_samples import render


@pytest.mark.parametrize(("sample", "expected"), [
    ("arf_abuse_rfc822.eml", ("spam complaint", None)),
    ("arf_original_mail_from_headers.eml", ("spam complaint", None)),
    ("rfc3464_gmail_no_such_account.eml", ("hard bounce", "badrecipient")),
    ("rfc3464_exchange_mailbox_full.eml", ("hard bounce", "overquota")),
    ("rfc3464_spamhaus_block.eml", None),     # the sender's reputation, not the address
    ("rfc3464_postfix_delayed.eml", None),    # a soft bounce
    ("arf_not_spam.eml", None),               # not a complaint
])
async def test_reports_suppress_the_address(inbound: Inbound, sample: str, expected: tuple[str, str | None] | None,
                                            ) -> None:
    assert await send(inbound, render(sample, inbound.verp, RCPT)) == {}
    runner = outbox.OutboxRunner(inbound.pool, [AutoSuppressions()])
    await runner.run_once()
    await runner.run_once()
    row = await inbound.pool.fetchrow("SELECT account_id, domain_id FROM messages WHERE id = $1", inbound.message_id)
    found = await sup.search(inbound.pool, int(row["account_id"]), email=RCPT)
    if expected is None:
        assert found == []
        return
    (obj,) = found
    assert (obj["type"], obj["message_bounce_category"]) == expected
    assert obj["domain_name"] == "src.test" and obj["sending_stream"] == "transactional"
    assert obj["message_subject"] == "hello" and obj["message_sender_email"] == "app@src.test"
    # The next message to that address from that domain is accepted and its recipient rejected.
    nxt = messages.NewMessage(
        id=uuid.uuid4(), account_id=int(row["account_id"]), credential_id=None, domain_id=int(row["domain_id"]),
        stream="transactional", mail_from="app@src.test", header_from="app@src.test", subject="again",
        message_id_header=None, category=None, custom_variables=None, client_ip=None, raw=make_raw(),
        recipients=[RCPT])
    await messages.accept(inbound.pool, nxt, PERIOD)
    details: Any = json.loads(await inbound.pool.fetchval(
        "SELECT details FROM events WHERE message_id = $1 AND type = 'suppressed'", nxt.id))
    assert details["reason"] == f"Recipient in suppression list. Reason: {expected[0]}"
