"""`mailtrap-smtp webhook ...`: the CLI gets what the API gets (create, list, show, update, delete,
the delivery log, replay), errors as one line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

URL = "https://93.184.215.14/hooks/mailtrap"


@pytest.fixture
def run(cli_run: Any) -> Any:
    go = cli_run
    assert go("account", "create", "acme")[0] == 0
    assert go("domain", "add", "acme", "acme.test", "--skip-dns-verification")[0] == 0
    return go


def test_create_prints_the_secret_once_then_list_show_update_delete(run: Any) -> None:
    code, out, err = run("webhook", "create", "acme", URL, "--event-type", "delivery", "--event-type", "bounce",
                         "--stream", "transactional", "--domain", "acme.test", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert re.fullmatch(r"[0-9a-f]{32}", created["signing_secret"])
    assert (created["url"], created["event_types"], created["sending_stream"], created["active"]) == \
           (URL, ["delivery", "bounce"], "transactional", True)
    wid = str(created["id"])
    code, out, _ = run("webhook", "list", "acme", "--json")
    assert [w["id"] for w in json.loads(out)] == [created["id"]]
    assert created["signing_secret"] not in out
    code, out, _ = run("webhook", "list")
    assert out.splitlines()[0].split() == ["ID", "URL", "ACTIVE", "PAYLOAD_FORMAT", "SENDING_STREAM", "EVENT_TYPES",
                                           "DOMAIN_ID"]
    code, out, _ = run("webhook", "show", wid)
    assert "url:" in out and URL in out and created["signing_secret"] not in out
    code, out, err = run("webhook", "update", wid, "--deactivate", "--format", "jsonlines", "--json")
    assert code == 0, err
    assert (json.loads(out)["active"], json.loads(out)["payload_format"]) == (False, "jsonlines")
    code, out, _ = run("webhook", "log", wid, "--json")
    assert json.loads(out) == {"attempts": [], "failures": 0, "next_attempt_at": None, "last_error": None}
    code, out, _ = run("webhook", "delete", wid)
    assert (code, out) == (0, f"deleted webhook {wid} ({URL})\n")
    assert run("webhook", "list", "--json")[1].strip() == "[]"


def test_create_without_json_says_the_secret_is_shown_once(run: Any) -> None:
    code, out, _ = run("webhook", "create", "acme", URL)
    assert code == 0
    assert re.search(r"^signing_secret: +[0-9a-f]{32}$", out, re.M)
    assert out.endswith("The signing secret is shown once; check each POST's Mailtrap-Signature with it.\n")


@pytest.mark.parametrize(("args", "err"), [
    (("webhook", "create", "acme", "http://127.0.0.1/h"), "mailtrap-smtp: url: the host is not a public address\n"),
    (("webhook", "create", "acme", "https://93.184.215.14:8443/h"),
     "mailtrap-smtp: url: only ports 80 and 443 may be used\n"),
    (("webhook", "create", "acme", URL, "--domain", "nope.test"),
     "mailtrap-smtp: domain: 'nope.test' is not a sending domain of this account\n"),
    (("webhook", "create", "nobody", URL), "mailtrap-smtp: no account named 'nobody'\n"),
    (("webhook", "show", "99"), "mailtrap-smtp: no webhook with id 99\n"),
    (("webhook", "delete", "99"), "mailtrap-smtp: no webhook with id 99\n"),
    (("webhook", "log", "99"), "mailtrap-smtp: no webhook with id 99\n"),
    (("webhook", "update", "99", "--activate"), "mailtrap-smtp: no webhook with id 99\n"),
    (("webhook", "replay", "99", "--since", "2026-01-01T00:00:00"), "mailtrap-smtp: no webhook with id 99\n"),
])
def test_refusals_are_one_line_and_store_nothing(run: Any, args: tuple[str, ...], err: str) -> None:
    code, out, got = run(*args)
    assert (code, out, got) == (1, "", err)
    assert run("webhook", "list", "--json")[1].strip() == "[]"


def test_update_with_nothing_to_change_and_replay_of_an_unknown_event(run: Any) -> None:
    wid = str(json.loads(run("webhook", "create", "acme", URL, "--json")[1])["id"])
    assert run("webhook", "update", wid) == (
        1, "", "mailtrap-smtp: nothing to change: give --url, --activate, --deactivate, --format or --event-type\n")
    assert run("webhook", "replay", wid, "--from-event", "00000000-0000-0000-0000-000000000000") == (
        1, "", "mailtrap-smtp: replay: no such event\n")
