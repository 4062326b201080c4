"""The operator's log: the lines a real session and a real delivery write, in text and JSON, and
that no token, password or message content ever reaches any log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest

from mailtrap_smtp import maillog
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, enqueue
from tests.mx_sink import MxSink
from tests.smtp_util import SENDER, Env, message, reply_line

SECRET_BODY = "the-secret-body-text"


@pytest.fixture(autouse=True)
def text_format_afterwards() -> Any:
    yield
    maillog.configure("text")


def maillog_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mailtrap_smtp.maillog"]


async def one_session(env: Env) -> str:
    """AUTH failure, AUTH, a refusal, an accepted message, QUIT; returns the queue id."""
    c = env.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("EHLO client.test")
    wrong = base64.b64encode(f"\0api\0{env.token[:-4]}AAAA".encode()).decode()
    assert await c.cmd(f"AUTH PLAIN {wrong}") == reply_line("AUTH_INVALID")
    assert await c.cmd("AUTH PLAIN " + base64.b64encode(f"\0api\0{env.token}".encode()).decode()) == (
        reply_line("AUTH_OK"))
    assert await c.cmd("MAIL FROM:<x@nope.test>") == reply_line("SENDER_DOMAIN_NOT_ALLOWED")
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "RCPT TO:<b@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(message(subject="Private subject", body=SECRET_BODY) + b".\r\n")
    queued = await c.reply()
    assert queued.startswith("250 2.0.0 Ok: queued as ")
    assert await c.cmd("QUIT") == reply_line("BYE")
    assert await c.closed()
    return queued.rsplit(" ", 1)[1]


async def wait_for_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(100):  # the session writes its last line after the client saw the close
        if any(line.startswith("disconnect ") for line in maillog_lines(caplog)):
            return
        await asyncio.sleep(0.02)


async def test_text_lines_of_a_session(smtp: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queue_id = await one_session(smtp)
    await wait_for_disconnect(caplog)
    lines = maillog_lines(caplog)
    size = await smtp.pool.fetchval("SELECT octet_length(raw) FROM messages")
    assert lines[0] == "auth_failed reply=AUTH_INVALID peer=127.0.0.1"
    assert lines[1] == "refused reply=AUTH_INVALID code=535 peer=127.0.0.1"
    assert lines[2] == "refused reply=SENDER_DOMAIN_NOT_ALLOWED code=550 account=acme peer=127.0.0.1"
    assert lines[3] == (f"accepted queue_id={queue_id} account=acme stream=transactional sender={SENDER} "
                        f"recipients=2 size={size} peer=127.0.0.1")
    assert lines[4].startswith("disconnect peer=127.0.0.1 tls=TLSv1.3 account=acme messages=1 duration=")
    assert lines[4].endswith(" reason=quit")
    assert len(lines) == 5
    # Nothing secret in ANY log record of the service, not only the operator's log.
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert smtp.token not in everything and smtp.token[-32:] not in everything
    assert SECRET_BODY not in everything and "Private subject" not in everything


async def test_json_lines(smtp_factory, capsys: pytest.CaptureFixture[str]) -> None:
    env = await smtp_factory(maillog={"format": "json"})
    queue_id = await one_session(env)
    err = ""
    for _ in range(100):  # the session writes its last line after the client saw the close
        err += capsys.readouterr().err
        if '"disconnect"' in err:
            break
        await asyncio.sleep(0.02)
    records = [json.loads(line) for line in err.splitlines()]  # every line on stderr is one JSON object
    assert [r["event"] for r in records] == ["auth_failed", "refused", "refused", "accepted", "disconnect"]
    accepted = records[3]
    assert accepted["queue_id"] == queue_id and accepted["recipients"] == 2 and accepted["account"] == "acme"
    assert isinstance(accepted["ts"], float)
    assert records[4]["reason"] == "quit" and records[4]["messages"] == 1 and records[4]["tls"] == "TLSv1.3"
    assert env.token not in err and SECRET_BODY not in err


async def test_blocked_client_is_logged(smtp_factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    env = await smtp_factory(limits={"connection_rate_per_ip": 1})
    first = env.raw()
    await first.connect()
    second = env.raw()
    assert await second.connect() == reply_line("CONNECTION_RATE_IP")
    assert "blocked peer=127.0.0.1 why=rate_per_ip" in maillog_lines(caplog)
    first.writer.close()


async def test_delivery_lines(smtp_factory, sink: MxSink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    env = await smtp_factory(delivery={**FAST, "routes": {"dest.test": sink.address}})
    sink.rcpt_replies["b@dest.test"] = "550 5.1.1 No such user"
    queue_id = await one_session(env)
    await DeliveryService(env.cfg, env.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    lines = sorted(line for line in maillog_lines(caplog) if line.startswith("delivery "))
    assert len(lines) == 2
    assert lines[0].startswith(f"delivery queue_id={queue_id} recipient=a@dest.test status=delivered "
                               f"mx=127.0.0.1 tls_policy=none delay=")  # the route's sink has no TLS
    assert lines[0].endswith(' reply="250 2.0.0 OK queued"')
    assert lines[1].startswith(f"delivery queue_id={queue_id} recipient=b@dest.test status=bounced mx=127.0.0.1 ")
    assert lines[1].endswith(' reply="550 5.1.1 No such user"')
    assert SECRET_BODY not in "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("value", "shown"), [
    ("plain", "plain"), ("two words", '"two words"'), ("a\r\nforged=line", '"a\\r\\nforged=line"'), ("", '""'),
])
def test_text_values_cannot_shape_a_line(caplog: pytest.LogCaptureFixture, value: str, shown: str) -> None:
    caplog.set_level(logging.INFO)
    maillog.emit("refused", reply=value)
    assert maillog_lines(caplog) == [f"refused reply={shown}"]


async def test_expiry_is_logged(make_config: Any, pool: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    import datetime as dt

    cfg = make_config(delivery={**FAST, "max_queue_lifetime_seconds": 60})
    mid = await enqueue(pool, ["late@dest.test"])
    later = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # noqa: E731 - claimed an hour on
    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), clock=later).run_once()
    (line,) = [x for x in maillog_lines(caplog) if x.startswith("delivery ")]
    assert line.startswith(f"delivery queue_id={mid} recipient=late@dest.test status=expired delay=")
    assert line.endswith(' reply=""')
