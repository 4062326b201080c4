"""What a message asked of the next hops (`messages.smtputf8`, `messages.tls_required`) where the
operator and the customer read it: the email log export (our own extras) and the dashboard's message
page show it; the API's list and detail keep Mailtrap's Message object exactly (MAILTRAP_COMPAT §7.1)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from typing import Any

import httpx
import pytest

from mailtrap_smtp import quota
from mailtrap_smtp.store import domains as domains_store
from mailtrap_smtp.store import messages
from tests.dashboard_util import csrf, login
from tests.http_util import DOMAIN, SENDER, ApiEnv

# (recipient, smtputf8, tls_required) → what the export says and what the dashboard shows.
CASES = [
    ("plain@dest.test", False, None, None, "none"),
    ("j\u00f6rg@dest.test", True, True, "requiretls", "REQUIRETLS"),
    ("lax@dest.test", False, False, "tls-required-no", "TLS-Required: No"),
]

# Mailtrap's Message object (§7.1) and the detail's additions: nothing of ours in the API's shape.
MESSAGE_KEYS = {"message_id", "status", "subject", "rfc_message_id", "in_reply_to", "references", "thread_id",
                "from", "to", "sent_at", "client_ip", "category", "custom_variables", "sending_stream",
                "sending_domain_id", "domain_id", "template_id", "template_variables", "opens_count",
                "clicks_count"}


@pytest.fixture
async def stored(api: ApiEnv) -> dict[str, str]:
    """One message per case, accepted by the store as submission hands it over; rcpt → entry id."""
    did = int((await domains_store.get_by_name(api.pool, DOMAIN))["id"])
    ids = {}
    for rcpt, utf8, tls, _, _ in CASES:
        public = uuid.uuid4()
        await messages.accept(api.pool, messages.NewMessage(
            id=uuid.uuid4(), account_id=api.account.id, credential_id=None, domain_id=did, stream="transactional",
            mail_from=SENDER, header_from=SENDER, subject="Hello", message_id_header="<1@x>", category=None,
            custom_variables=None, client_ip="192.0.2.1",
            raw=f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: Hello\r\n\r\nbody\r\n".encode(),
            recipients=[rcpt], recipient_ids=[public], smtputf8=utf8, tls_required=tls), quota.current_period(1))
        ids[rcpt] = str(public)
    return ids


async def test_api_shape_unchanged_export_carries_the_requests(api: ApiEnv, stored: dict[str, str]) -> None:
    admin = await api.new_token(level="admin")
    async with api.client() as c:
        listed = (await c.get("/api/email_logs", headers=api.auth(admin))).json()["messages"]
        assert len(listed) == 3 and all(set(m) == MESSAGE_KEYS for m in listed)
        entry = stored["j\u00f6rg@dest.test"]
        one = (await c.get(f"/api/email_logs/{entry}", headers=api.auth(admin))).json()
        assert set(one) == MESSAGE_KEYS | {"events", "raw_message_url"}
        jsonl = await c.get("/api/email_logs/export", params={"format": "jsonl"}, headers=api.auth(admin))
        as_csv = await c.get("/api/email_logs/export", headers=api.auth(admin))
    by_rcpt = {e["to"]: e for e in map(json.loads, jsonl.text.splitlines())}
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0])[-2:] == ["smtputf8", "tls_request"]  # appended: earlier columns where they were
    by_csv = {r["to"]: r for r in rows}
    for rcpt, utf8, _, request, _ in CASES:
        assert (by_rcpt[rcpt]["smtputf8"], by_rcpt[rcpt]["tls_request"]) == (utf8, request)
        assert (by_csv[rcpt]["smtputf8"], by_csv[rcpt]["tls_request"]) == (json.dumps(utf8), request or "")


@pytest.mark.parametrize(("rcpt", "smtputf8", "shown"), [(c[0], c[1], c[4]) for c in CASES])
async def test_dashboard_message_page_shows_the_requests(api: ApiEnv, stored: dict[str, str], rcpt: str,
                                                         smtputf8: bool, shown: str) -> None:
    client: httpx.AsyncClient = await login(api, await api.new_token(level="admin"))
    try:
        await csrf(client)
        page = await client.get(f"/dashboard/logs/{stored[rcpt]}")
    finally:
        await client.aclose()
    assert page.status_code == 200
    facts: Any = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", page.text))
    assert facts["SMTPUTF8"] == ("yes" if smtputf8 else "no")
    assert facts["TLS asked"] == shown
