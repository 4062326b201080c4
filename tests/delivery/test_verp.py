"""VERP return paths: the pure tag (table-driven) and delivery using it as MAIL FROM on real SMTP."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery import verp
from mailtrap_smtp.delivery.return_path import load_key
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, states
from tests.inbound_util import enqueue_from_domain, recipient_ids
from tests.mx_sink import MxSink

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MID = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
TAG = verp.Tag(MID, 4242)
GOOD = verp.make(KEY, TAG, "mt1a2b3c.example.com")
GOOD_LOCAL, _, GOOD_HOST = GOOD.partition("@")
GOOD_TEXT = GOOD_LOCAL.partition("+")[2]


def _swap_recipient(address: str, recipient_id: int) -> str:
    """The same tag with another recipient id but the original MAC (a forger's edit)."""
    local, _, host = address.partition("@")
    raw = bytearray(base64.b32decode(local.partition("+")[2].upper() + "===="))
    raw[16:24] = recipient_id.to_bytes(8, "big")
    return f"bounces+{base64.b32encode(bytes(raw)).decode().rstrip('=').lower()}@{host}"


def _flip_char(text: str, i: int) -> str:
    return text[:i] + ("b" if text[i] != "b" else "c") + text[i + 1:]


def test_shape_fits_rfc5321_local_part_limit() -> None:
    assert GOOD_HOST == "mt1a2b3c.example.com"
    assert GOOD_LOCAL.startswith("bounces+") and len(GOOD_LOCAL) <= 64
    assert GOOD_LOCAL == GOOD_LOCAL.lower()


@pytest.mark.parametrize(("address", "expected"), [
    pytest.param(GOOD, TAG, id="round-trip"),
    pytest.param(f"<{GOOD}>", TAG, id="angle-brackets"),
    pytest.param(GOOD.upper(), TAG, id="upper-cased-by-remote-mta"),
    pytest.param(f"BOUNCES+{GOOD_TEXT}@{GOOD_HOST}", TAG, id="prefix-upper-cased"),
    pytest.param(GOOD_LOCAL.capitalize() + "@" + GOOD_HOST.upper(), TAG, id="mixed-case"),
    pytest.param(f'"{GOOD_LOCAL}"@{GOOD_HOST}', TAG, id="needlessly-quoted"),
    pytest.param(f"{GOOD_LOCAL}@rp.other.host", TAG, id="any-host"),
    pytest.param(verp.make(KEY, verp.Tag(MID, 0), "h.test"), verp.Tag(MID, 0), id="recipient-zero"),
    pytest.param(verp.make(KEY, verp.Tag(MID, 2**63 - 1), "h.test"), verp.Tag(MID, 2**63 - 1), id="recipient-max"),
    pytest.param(_swap_recipient(GOOD, 4243), None, id="wrong-recipient"),
    pytest.param(f"bounces+{_flip_char(GOOD_TEXT, 0)}@{GOOD_HOST}", None, id="tampered-message-id"),
    pytest.param(f"bounces+{_flip_char(GOOD_TEXT, 45)}@{GOOD_HOST}", None, id="tampered-mac"),
    pytest.param(verp.make(OTHER_KEY, TAG, GOOD_HOST), None, id="other-key"),
    pytest.param(f"bounces+{GOOD_TEXT[:-1]}{'ab'[GOOD_TEXT[-1] == 'a']}@{GOOD_HOST}", None,
                 id="non-canonical-last-character"),
    pytest.param(f"bounces+{GOOD_TEXT[:-1]}@{GOOD_HOST}", None, id="truncated"),
    pytest.param(f"bounces+{GOOD_TEXT}a@{GOOD_HOST}", None, id="extended"),
    pytest.param(f"bounce+{GOOD_TEXT}@{GOOD_HOST}", None, id="wrong-prefix"),
    pytest.param(f"bounces-{GOOD_TEXT}@{GOOD_HOST}", None, id="no-plus"),
    pytest.param(f"bounces+{GOOD_TEXT}", None, id="no-host"),
    pytest.param(f"bounces+{GOOD_TEXT}@", None, id="empty-host"),
    pytest.param("bounces+" + "1" * 52 + "@h.test", None, id="not-base32"),
    pytest.param("bounces+" + "é" * 52 + "@h.test", None, id="non-ascii"),
    pytest.param("postmaster@h.test", None, id="plain-address"),
    pytest.param("", None, id="empty"),
    pytest.param("<>", None, id="null-path"),
])
def test_check(address: str, expected: verp.Tag | None) -> None:
    assert verp.check(KEY, address) == expected


def test_short_key_and_bad_host_refused() -> None:
    with pytest.raises(ValueError):
        verp.make(b"short", TAG, "h.test")
    with pytest.raises(ValueError):
        verp.make(KEY, TAG, "a@b")


def test_key_file_created_once_with_mode_0600(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config()
    key = load_key(cfg)
    path = cfg.data_dir / "verp.key"
    assert len(key) == verp.KEY_LEN and path.read_bytes() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(cfg) == key


# --- delivery uses the return path as MAIL FROM ---


@pytest.fixture
def sink() -> Any:
    with MxSink() as s:
        yield s


async def test_delivery_sends_one_verp_transaction_per_recipient(make_config: Any, pool: asyncpg.Pool[Any],
                                                                sink: MxSink) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    mid = await enqueue_from_domain(pool, ["a@dest.test", "b@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@dest.test": "delivered"}
    ids = await recipient_ids(pool, mid)
    key = load_key(cfg)
    got = {tuple(r.rcpts): r.mail_from for r in sink.received}
    assert set(got) == {("a@dest.test",), ("b@dest.test",)}
    for rcpt, rid in ids.items():
        sender = got[(rcpt,)]
        assert sender.endswith("@mt7q2x.src.test")
        assert verp.check(key, sender) == verp.Tag(mid, rid)


@pytest.mark.parametrize(("domains_cfg", "dns_skipped"), [
    pytest.param({"ownership": "txt"}, False, id="ownership-txt"),
    pytest.param({"verp": False}, False, id="verp-off"),
    pytest.param({}, True, id="dns-skipped-domain"),
])
async def test_client_sender_kept_without_a_return_path(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink,
                                                        domains_cfg: dict[str, Any], dns_skipped: bool) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}}, domains=domains_cfg)
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    mid = await enqueue_from_domain(pool, ["a@dest.test", "b@dest.test"], dns_skipped=dns_skipped)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@dest.test": "delivered"}
    (item,) = sink.received  # one transaction for both, as before
    assert item.mail_from == "app@src.test" and item.rcpts == ["a@dest.test", "b@dest.test"]
    assert not (cfg.data_dir / "verp.key").exists()


# --- one-click unsubscribe tokens (list_unsubscribe.py): same key and MAC, their own label ---

RECIPIENT = uuid.UUID("11111111-2222-4333-8444-555555555555")
UNSUB = verp.unsubscribe_token(KEY, MID, RECIPIENT)


def test_unsubscribe_token_round_trip() -> None:
    assert len(UNSUB) == 64 and UNSUB == UNSUB.lower()
    assert verp.check_unsubscribe_token(KEY, UNSUB) == (MID, RECIPIENT)
    assert verp.check_unsubscribe_token(KEY, UNSUB.upper()) == (MID, RECIPIENT)  # base32: either case


def _flip_payload(text: str) -> str:
    raw = bytearray(base64.b32decode(text.upper()))
    raw[20] ^= 1  # inside the recipient id, MAC kept
    return base64.b32encode(bytes(raw)).decode().lower()


@pytest.mark.parametrize("text", [
    verp.unsubscribe_token(OTHER_KEY, MID, RECIPIENT),  # another key
    _flip_payload(UNSUB),                               # payload altered, old MAC
    UNSUB[:-1] + ("b" if UNSUB[-1] == "a" else "a"),    # MAC altered
    GOOD_TEXT,                                          # a VERP tag is not an unsubscribe token
    UNSUB[:-1], UNSUB + "a", "", "é" * 64, "0" * 64,
])
def test_unsubscribe_token_refused(text: str) -> None:
    assert verp.check_unsubscribe_token(KEY, text) is None


def test_the_two_labels_never_share_a_mac() -> None:
    # The same 32 bytes as a VERP payload would need the VERP label's MAC: domain separation.
    payload = MID.bytes + RECIPIENT.bytes
    assert verp._mac(KEY, payload) != verp._mac(KEY, payload, verp._UNSUB_DOMAIN)
