"""A real Postfix (Debian's) as the recipient's MTA: it accepts, then bounces, and its DSN travels
over SMTP (STARTTLS) to our inbound listener and becomes a `bounce` event; a bounce to a forged
return path is refused at RCPT and changes nothing.

Postfix runs as a private instance on loopback (`tests/postfix_util.py`): `relay_domains =
dest.test` so it accepts the message, the `error` transport for dest.test so it then bounces it
(RFC 3464 DSN, as for any recipient it cannot deliver), and a transport map entry sending mail for
the return-path host to our listener.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, event_list, states, wait_for
from tests.inbound_util import Inbound, enqueue_from_domain
from tests.postfix_util import NEEDS_POSTFIX, Postfix

pytestmark = NEEDS_POSTFIX


def bouncing(inbound_port: int) -> dict[str, str]:
    """Accept for dest.test, then bounce (the `error` transport); the return-path host is our listener."""
    return {"dest.test": "error:5.1.1 User unknown in virtual mailbox table",
            "mt7q2x.src.test": f"smtp:[127.0.0.1]:{inbound_port}"}


async def test_postfix_bounce_becomes_a_bounce_event(make_config: Any, pool: asyncpg.Pool[Any],
                                                     inbound: Inbound, postfix: Postfix) -> None:
    postfix.start(bouncing(inbound.port))
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": f"127.0.0.1:{postfix.port}"}},
                      inbound={"listeners": [f"127.0.0.1:{inbound.port}"]})
    mid = await enqueue_from_domain(pool, ["nobody@dest.test"])
    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    assert await states(pool, mid) == {"nobody@dest.test": "delivered"}  # Postfix said 250, then bounced

    async def bounce() -> Any:
        return [e for e in await event_list(pool, mid) if e[0] == "bounce"]

    ((_, rcpt, details),) = await wait_for(bounce, timeout=60, interval=0.2)
    assert rcpt == "nobody@dest.test"
    assert details["source"] == "inbound" and details["format"] == "rfc3464"
    assert details["status"] == "5.1.1" and details["category"] == "bad_recipient"
    assert details["final_recipient"] == "nobody@dest.test" and details["remote_mta"] == "postfix.test"
    assert "User unknown in virtual mailbox table" in details["diagnostic"]
    assert postfix.logged(f"TLS connection established to 127.0.0.1[127.0.0.1]:{inbound.port}")


async def test_postfix_bounce_to_forged_return_path_changes_nothing(make_config: Any, pool: asyncpg.Pool[Any],
                                                                    inbound: Inbound,
                                                                    postfix: Postfix) -> None:
    import smtplib

    postfix.start(bouncing(inbound.port))
    forged = inbound.verp[:-len("@mt7q2x.src.test") - 1] + "q@mt7q2x.src.test"
    if forged == inbound.verp:
        forged = inbound.verp[:-len("@mt7q2x.src.test") - 1] + "a@mt7q2x.src.test"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as s:
        s.sendmail(forged, ["nobody@dest.test"], b"Subject: x\r\n\r\nforged\r\n")
    await wait_for(lambda: postfix.logged("550 5.1.1 No such user here"), timeout=60, interval=0.2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type <> 'reception'") == 0
