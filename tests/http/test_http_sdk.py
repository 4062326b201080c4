"""Real clients against the API over real TLS: the official `mailtrap` SDK 2.11.0 (MAILTRAP_COMPAT.md
§2.3: `api_host="127.0.0.1:PORT"`, `REQUESTS_CA_BUNDLE` = the test CA), django-anymail's Mailtrap
backend (`MAILTRAP_API_URL` pointed at us) and curl with the JSON of §2.5 and `Api-Token`."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import subprocess
from typing import Any

import mailtrap as mt
import pytest

from tests.http_util import SENDER, ApiEnv


@pytest.fixture
def trusted(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> ApiEnv:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    return api


def _client(env: ApiEnv, token: str | None = None) -> mt.MailtrapClient:
    return mt.MailtrapClient(token=token or env.token, api_host=f"127.0.0.1:{env.port}")


async def test_sdk_send_everything(trusted: ApiEnv) -> None:  # §9 items 11, 12, 17
    mail = mt.Mail(
        sender=mt.Address(email=SENDER, name="Sender"),
        to=[mt.Address(email="to@x.test", name="To")], cc=[mt.Address(email="cc@x.test")],
        bcc=[mt.Address(email="bcc@x.test")], subject="Hi", text="plain", html="<p>html</p>",
        attachments=[mt.Attachment(content=base64.b64encode(b"hello"), filename="a.txt",
                                   disposition=mt.Disposition.INLINE, mimetype="text/plain", content_id="cid1")],
        headers={"X-Message-Source": "dev.mydomain.com"},
        custom_variables={"user_id": "45982"}, category="Integration Test",
    )
    result = await asyncio.to_thread(_client(trusted).send, mail)
    assert result["success"] is True and len(result["message_ids"]) == 3
    raw = await trusted.raw_of(result["message_ids"][0])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["X-Message-Source"] == "dev.mydomain.com"
    assert [p["Content-ID"] for p in msg.walk() if p.get_filename() == "a.txt"] == ["<cid1>"]
    async with trusted.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT category, custom_variables FROM messages")
    assert row["category"] == "Integration Test" and json.loads(row["custom_variables"]) == {"user_id": "45982"}


async def test_sdk_batch_send_with_a_failing_entry(trusted: ApiEnv) -> None:  # §9 items 13, 17
    params = mt.BatchSendEmailParams(
        base=mt.BatchMail(sender=mt.Address(email=SENDER), subject="S", text="T"),
        requests=[mt.BatchEmailRequest(to=[mt.Address(email="a@x.test")]),
                  mt.BatchEmailRequest(to=[mt.Address(email="b@x.test")], sender=mt.Address(email="n@other.test"))],
    )
    result = await asyncio.to_thread(_client(trusted).batch_send, params)
    assert result["success"] is True
    first, second = result["responses"]
    assert first["success"] is True and len(first["message_ids"]) == 1
    assert second["success"] is False and second["errors"] == ["Unauthorized"]
    assert await trusted.counts() == {"messages": 1, "recipients": 1, "used": 1}


async def test_sdk_raises_authorization_error_on_a_bad_token(trusted: ApiEnv) -> None:  # §9 item 6
    mail = mt.Mail(sender=mt.Address(email=SENDER), to=[mt.Address(email="a@x.test")], subject="S", text="T")
    with pytest.raises(mt.AuthorizationError):
        await asyncio.to_thread(_client(trusted, "mts_00000000_" + "a" * 32).send, mail)
    await trusted.assert_nothing_stored()


async def test_sdk_raises_api_error_403_on_an_unverified_domain(trusted: ApiEnv) -> None:  # §9 item 7
    from mailtrap_smtp.store import domains

    await domains.create(trusted.pool, trusted.account.id, "pending.test", verification_token="t")
    mail = mt.Mail(sender=mt.Address(email="a@pending.test"), to=[mt.Address(email="a@x.test")], subject="S",
                   text="T")
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(_client(trusted).send, mail)
    assert info.value.status == 403 and info.value.errors == ["Domain is not verified"]
    await trusted.assert_nothing_stored()


def _django_send(env: ApiEnv, action: str) -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(EMAIL_BACKEND="anymail.backends.mailtrap.EmailBackend", ANYMAIL={})
        django.setup()
    # Another test module (the webhook tests' Django view) may have configured Django first.
    settings.EMAIL_BACKEND = "anymail.backends.mailtrap.EmailBackend"
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": env.token, "MAILTRAP_API_URL": f"{env.base}/api/"}
    from django.core.mail import EmailMultiAlternatives, send_mail

    if action == "send_mail":
        return send_mail("Subject", "Body", SENDER, ["one@x.test"])
    if action == "alternatives":
        msg = EmailMultiAlternatives("Alt", "text", SENDER, ["two@x.test"], cc=["three@x.test"])
        msg.attach_alternative("<p>html</p>", "text/html")
        msg.attach("report.csv", b"a,b\n1,2\n", "text/csv")
        msg.send()
        return msg.anymail_status
    msg = EmailMultiAlternatives("Hi {{name}}", "Hello", SENDER, ["a@x.test", "b@x.test"])
    msg.merge_data = {"a@x.test": {"name": "A"}, "b@x.test": {"name": "B"}}
    msg.send()
    return msg.anymail_status


async def test_anymail_send_mail(trusted: ApiEnv) -> None:
    assert await asyncio.to_thread(_django_send, trusted, "send_mail") == 1
    assert await trusted.counts() == {"messages": 1, "recipients": 1, "used": 1}


async def test_anymail_alternatives_with_attachment(trusted: ApiEnv) -> None:
    status = await asyncio.to_thread(_django_send, trusted, "alternatives")
    assert status.status == {"queued"} and set(status.recipients) == {"two@x.test", "three@x.test"}
    raw = await trusted.raw_of(status.recipients["two@x.test"].message_id)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_body(("html",)).get_content().strip() == "<p>html</p>"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["report.csv"]


async def test_anymail_batch_with_merge_data(trusted: ApiEnv) -> None:
    status = await asyncio.to_thread(_django_send, trusted, "batch")
    assert status.status == {"queued"} and set(status.recipients) == {"a@x.test", "b@x.test"}
    assert await trusted.counts() == {"messages": 2, "recipients": 2, "used": 2}


async def test_curl_with_the_documented_json(trusted: ApiEnv) -> None:  # §9 item 2
    body = {
        "to": [{"email": "to@example.com", "name": "To"}], "from": {"email": SENDER, "name": "Sender"},
        "cc": [{"email": "cc@example.com"}], "bcc": [{"email": "bcc@example.com"}],
        "attachments": [{"content": "aGVsbG8=", "filename": "a.txt", "disposition": "inline",
                         "type": "text/plain", "content_id": "cid1"}],
        "headers": {"X-Message-Source": "dev.mydomain.com"},
        "custom_variables": {"user_id": "45982", "batch_id": "PSJ-12"}, "reply_to": {"email": "reply@example.com"},
        "subject": "Hi", "text": "plain", "html": "<p>html</p>", "category": "Integration Test",
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "--cacert", trusted.ca_path, "-w", "\n%{http_code}", "-X", "POST", f"{trusted.base}/api/send",
         "-H", f"Api-Token: {trusted.token}", "-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, timeout=30, check=True,
    )
    text, _, status = proc.stdout.decode().rpartition("\n")
    assert status == "200", text
    data = json.loads(text)
    assert data["success"] is True and len(data["message_ids"]) == 3
