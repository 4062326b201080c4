"""Tests for mailtrap_smtp.dkim: keys, KEK storage, canonicalisation and signing.

Signatures are checked with dkimpy's verifier (an independent implementation)
using a dnsfunc that serves the TXT record built by ``dns_txt_value``.
dkimpy needs PyNaCl for Ed25519; those cases are skipped without it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed as DkimpyRelaxed
from dkim.util import parse_tag_value

import mailtrap_smtp.dkim as mdkim
from mailtrap_smtp.dkim import (
    DkimError,
    SigningKey,
    canonicalize_body_relaxed,
    decrypt_private_key,
    dns_txt_value,
    encrypt_private_key,
    generate_key,
    load_or_create_kek,
    sign,
)

RSA = "rsa-sha256"
ED = "ed25519-sha256"
DOMAIN = "example.com"

try:
    import nacl.signing  # noqa: F401  (dkimpy's Ed25519 backend)

    HAVE_NACL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_NACL = False

needs_nacl = pytest.mark.skipif(not HAVE_NACL, reason="dkimpy needs PyNaCl to verify/sign ed25519")

# Key generation (RSA-2048 especially) is slow-ish: make each kind once.
_PEMS: dict[str, tuple[bytes, str]] = {}


def _keypair(alg: str) -> tuple[bytes, str]:
    if alg not in _PEMS:
        _PEMS[alg] = generate_key(alg)
    return _PEMS[alg]


def make_key(alg: str, selector: str | None = None, domain: str = DOMAIN) -> tuple[SigningKey, str]:
    """A SigningKey and its TXT record value."""
    pem, pub = _keypair(alg)
    sel = selector or ("rsa1" if alg == RSA else "ed1")
    return SigningKey.from_pem(domain, sel, alg, pem), dns_txt_value(alg, pub)


def dnsfunc_for(*pairs: tuple[SigningKey, str]) -> Callable[..., bytes | None]:
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): txt.encode() for k, txt in pairs}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


MSG = (
    b"Received: from client.example.net by mx.example.com; Thu, 26 Nov 2026 06:00:00 +0000\r\n"
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>,\r\n"
    b"\tCarol <carol@example.org>\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject:   Quarterly   report\t \r\n"
    b"  continued\r\n"
    b"Date: Thu, 26 Nov 2026 06:00:00 +0000\r\n"
    b"Message-ID: <1234@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: 1:campaign:mailtrap\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n"
    b"\r\n"
    b"The\tnumbers   are in.\t\r\n"
    b"\r\n"
    b"\r\n"
)


def sig_tags(header_block: bytes) -> list[dict[bytes, bytes]]:
    """Parse the tag lists of the DKIM-Signature fields returned by sign()."""
    out = []
    for field in header_block.split(b"\r\nDKIM-Signature:"):
        value = field.split(b":", 1)[1] if field.startswith(b"DKIM-Signature:") else field
        out.append(parse_tag_value(value.replace(b"\r\n", b"")))
    return out


def h_list(tags: dict[bytes, bytes]) -> list[bytes]:
    return [x.strip() for x in tags[b"h"].split(b":")]


# ---------------------------------------------------------------------------
# Keys and DNS
# ---------------------------------------------------------------------------


def test_generate_rsa_key() -> None:
    pem, pub = generate_key(RSA)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64decode(pub) == spki


def test_generate_ed25519_key() -> None:
    pem, pub = generate_key(ED)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = base64.b64decode(pub)
    assert len(raw) == 32  # RFC 8463 §4.2: raw key, not SPKI
    assert raw == key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_generate_key_is_random() -> None:
    assert generate_key(ED)[1] != generate_key(ED)[1]


@pytest.mark.parametrize("alg", ["rsa-sha1", "RSA-SHA256", "", "ed25519"])
def test_generate_key_rejects_unknown_algorithm(alg: str) -> None:
    with pytest.raises(DkimError, match="unsupported DKIM algorithm"):
        generate_key(alg)


def test_dns_txt_value() -> None:
    assert dns_txt_value(RSA, "QUJD") == "v=DKIM1; k=rsa; p=QUJD"
    assert dns_txt_value(ED, "QUJD+/==") == "v=DKIM1; k=ed25519; p=QUJD+/=="
    with pytest.raises(DkimError):
        dns_txt_value("rsa-sha1", "QUJD")
    with pytest.raises(DkimError):
        dns_txt_value(RSA, "QUJD; t=y")


def test_signing_key_public_b64_matches_generated() -> None:
    for alg in (RSA, ED):
        pem, pub = _keypair(alg)
        assert SigningKey.from_pem(DOMAIN, "s", alg, pem).public_b64() == pub


# d=/s= values that could inject tags or whitespace are refused.
@pytest.mark.parametrize("domain", ["exa mple.com", "example.com; x=1", "", "-bad.com", "bad-.com", "ex\u00e4mple.com"])
def test_signing_key_refuses_domain(domain: str) -> None:
    with pytest.raises(DkimError, match="invalid DKIM signing domain"):
        SigningKey.from_pem(domain, "s", RSA, _keypair(RSA)[0])


@pytest.mark.parametrize("selector", ["s;1", "s 1", "", "s=1"])
def test_signing_key_refuses_selector(selector: str) -> None:
    with pytest.raises(DkimError, match="invalid DKIM selector"):
        SigningKey.from_pem(DOMAIN, selector, RSA, _keypair(RSA)[0])


def test_signing_key_validation() -> None:
    rsa_pem, _ = _keypair(RSA)
    ed_pem, _ = _keypair(ED)
    with pytest.raises(DkimError, match="RSA"):
        SigningKey.from_pem(DOMAIN, "s", RSA, ed_pem)
    with pytest.raises(DkimError, match="Ed25519"):
        SigningKey.from_pem(DOMAIN, "s", ED, rsa_pem)
    with pytest.raises(DkimError, match="parse"):
        SigningKey.from_pem(DOMAIN, "s", RSA, b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DkimError):
        SigningKey.from_pem(DOMAIN, "s", "rsa-sha1", rsa_pem)
    # 1024 bits is the RFC 8301 §3.2 floor: accepted (smaller keys are refused by the same check).
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert SigningKey(DOMAIN, "s", RSA, small).private_key is small


def test_signing_key_repr_hides_key() -> None:
    key, _ = make_key(RSA)
    r = repr(key)
    assert "private_key" not in r
    assert "example.com" in r


def test_signing_key_accepts_pkcs1_rsa_pem() -> None:
    pem, _ = _keypair(RSA)
    k = serialization.load_pem_private_key(pem, password=None)
    pkcs1 = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert SigningKey.from_pem(DOMAIN, "s", RSA, pkcs1).algorithm == RSA


# ---------------------------------------------------------------------------
# Signing and verification with dkimpy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [RSA, pytest.param(ED, marks=needs_nacl)])
def test_sign_verifies_with_dkimpy(alg: str) -> None:
    key, txt = make_key(alg)
    sig = sign(MSG, [key], timestamp=int(time.time()))
    signed = sig + MSG
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for((key, txt)))
    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=dnsfunc_for((key, txt)))
    assert d.signature_fields[b"a"] == alg.encode()


@needs_nacl
def test_sign_with_two_keys_gives_two_valid_signatures() -> None:
    rkey, rtxt = make_key(RSA)
    ekey, etxt = make_key(ED)
    dnsfunc = dnsfunc_for((rkey, rtxt), (ekey, etxt))
    sig = sign(MSG, [rkey, ekey], timestamp=1_764_136_800)
    assert sig.count(b"DKIM-Signature:") == 2
    signed = sig + MSG
    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=dnsfunc)
    assert d.signature_fields[b"a"] == b"rsa-sha256"
    assert d.signature_fields[b"s"] == b"rsa1"
    assert d.verify(idx=1, dnsfunc=dnsfunc)
    assert d.signature_fields[b"a"] == b"ed25519-sha256"
    assert d.signature_fields[b"s"] == b"ed1"
    tags = sig_tags(sig)
    assert tags[0][b"bh"] == tags[1][b"bh"]


def test_sign_two_rsa_keys_different_domains() -> None:
    # Runs without PyNaCl too: multi-signature support does not depend on Ed25519.
    k1, t1 = make_key(RSA, "a", "example.com")
    k2, t2 = make_key(RSA, "b", "esp.example.net")
    dnsfunc = dnsfunc_for((k1, t1), (k2, t2))
    signed = sign(MSG, [k1, k2]) + MSG
    d = dkimpy.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=dnsfunc)
    assert d.domain == b"example.com"
    assert d.verify(idx=1, dnsfunc=dnsfunc)
    assert d.domain == b"esp.example.net"


def test_ed25519_signature_is_deterministic() -> None:
    key, _ = make_key(ED)
    assert sign(MSG, [key], timestamp=5) == sign(MSG, [key], timestamp=5)


# RFC 8463 Appendix A: the Ed25519 example key, message and signature.
RFC8463_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_PUB = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_MSG = (
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)
RFC8463_SIG_NO_B = (
    b" v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b="
)
RFC8463_B = "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="


def rfc8463_key() -> SigningKey:
    seed = base64.b64decode(RFC8463_SEED)
    return SigningKey("football.example.com", "brisbane", ED, ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def test_rfc8463_known_answer() -> None:
    # Reproduces the RFC's published Ed25519 signature byte for byte with our
    # canonicalisation and signing primitives (Ed25519 is deterministic), so
    # the Ed25519-SHA256 construction (sign the SHA-256 digest, RFC 8463 §3)
    # and the raw p= key format (§4.2) are checked against the standard, not
    # just against dkimpy.
    key = rfc8463_key()
    assert key.public_b64() == RFC8463_PUB
    fields, body = mdkim.signer.split_message(RFC8463_MSG)
    bh = base64.b64encode(hashlib.sha256(canonicalize_body_relaxed(body)).digest())
    assert bh == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        by_name.setdefault(name.lower(), []).append(mdkim.signer.canonicalize_header(name, value))
    data = b""
    for h in b"from to subject date message-id from subject date".split():
        if by_name.get(h):
            data += by_name[h].pop()
    data += mdkim.signer.canonicalize_header(b"DKIM-Signature", RFC8463_SIG_NO_B)[:-2]
    assert base64.b64encode(key._sign_header_data(data)).decode() == RFC8463_B


@needs_nacl
def test_rfc8463_message_signed_by_us_verifies() -> None:
    key = rfc8463_key()
    signed = sign(RFC8463_MSG, [key], timestamp=1528637909) + RFC8463_MSG
    (tags,) = sig_tags(signed.split(b"\r\nFrom:", 1)[0] + b"\r\n")
    assert tags[b"bh"] == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for((key, dns_txt_value(ED, RFC8463_PUB))))


def test_signature_tags() -> None:
    key, _ = make_key(RSA)
    sig = sign(MSG, [key], timestamp=1_700_000_000)
    (tags,) = sig_tags(sig)
    assert tags[b"v"] == b"1"
    assert tags[b"a"] == b"rsa-sha256"
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.com"
    assert tags[b"s"] == b"rsa1"
    assert tags[b"t"] == b"1700000000"
    assert b"l" not in tags  # never l=: it lets anyone append to the body
    assert b"x" not in tags
    expected_bh = base64.b64encode(
        hashlib.sha256(DkimpyRelaxed.canonicalize_body(MSG.split(b"\r\n\r\n", 1)[1])).digest()
    )
    assert tags[b"bh"] == expected_bh
    assert len(base64.b64decode(tags[b"b"].replace(b" ", b""))) == 256  # RSA-2048


def test_h_tag_lists_signed_headers_and_oversigns_from() -> None:
    key, _ = make_key(RSA)
    (tags,) = sig_tags(sign(MSG, [key]))
    h = h_list(tags)
    assert h.count(b"from") == 2  # one From, signed one extra time (RFC 6376 §8.15)
    for name in (
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"feedback-id",
    ):
        assert h.count(name) == 1, name
    # Absent or unsigned fields are not listed.
    for name in (b"received", b"x-mailer", b"reply-to", b"sender", b"dkim-signature", b"references"):
        assert name not in h


def test_h_tag_counts_repeated_headers() -> None:
    msg = (
        b"From: a@example.com\r\n"
        b"From: b@example.com\r\n"
        b"Sender: a@example.com\r\n"
        b"References: <1@x>\r\n"
        b"References: <2@x>\r\n"
        b"Subject: s\r\n"
        b"\r\n"
        b"body\r\n"
    )
    key, txt = make_key(RSA)
    sig = sign(msg, [key])
    (tags,) = sig_tags(sig)
    h = h_list(tags)
    assert h.count(b"from") == 3
    assert h.count(b"references") == 2
    assert h.count(b"sender") == 1
    assert h.count(b"subject") == 1
    assert dkimpy.verify(sig + msg, dnsfunc=dnsfunc_for((key, txt)))


def test_header_names_are_matched_case_insensitively() -> None:
    msg = b"FROM: a@example.com\r\nsubject: Hi\r\nmessage-ID: <x@y>\r\n\r\nbody\r\n"
    key, txt = make_key(RSA)
    sig = sign(msg, [key])
    assert h_list(sig_tags(sig)[0]) == [b"from", b"subject", b"message-id", b"from"]
    assert dkimpy.verify(sig + msg, dnsfunc=dnsfunc_for((key, txt)))


def test_relaxed_header_canonicalisation() -> None:
    # Ed25519 signatures are deterministic, so equal canonical headers give
    # byte-identical signatures (RFC 6376 §3.4.2: case of names, WSP around
    # the colon, folding and WSP runs do not matter).
    key, _ = make_key(ED)
    a = b"From: a@example.com\r\nSubject: Hello World\r\n\r\nbody\r\n"
    b = b"from :a@example.com  \r\nSUBJECT\t:  Hello \r\n\t World \r\n\r\nbody\r\n"
    c = b"From: a@example.com\r\nSubject: Hello  World!\r\n\r\nbody\r\n"
    assert sign(a, [key], timestamp=1) == sign(b, [key], timestamp=1)
    assert sign(a, [key], timestamp=1) != sign(c, [key], timestamp=1)


@pytest.mark.parametrize("alg", [RSA, pytest.param(ED, marks=needs_nacl)])
def test_tampering_breaks_signature(alg: str) -> None:
    key, txt = make_key(alg)
    dnsfunc = dnsfunc_for((key, txt))
    sig = sign(MSG, [key])
    signed = sig + MSG
    assert dkimpy.verify(signed, dnsfunc=dnsfunc)

    headers, body = MSG.split(b"\r\n\r\n", 1)
    tampered = {
        "body": sig + headers + b"\r\n\r\n" + body.replace(b"Hello Bob", b"Hello Eve"),
        "body appended": signed + b"P.S. click here\r\n",
        "subject": signed.replace(b"Quarterly", b"Annual"),
        "to": signed.replace(b"bob@example.org", b"eve@example.org"),
        "from display name": signed.replace(b"Alice Example", b"Alice Examp1e"),
        "second From at top": sig + b"From: ceo@example.com\r\n" + MSG,
        "second From after signed headers": sig + headers + b"\r\nFrom: ceo@example.com\r\n\r\n" + body,
        "List-Unsubscribe": signed.replace(b"https://example.com/u/1", b"https://evil.example/u/1"),
    }
    for what, msg in tampered.items():
        assert msg != signed, what
        assert not dkimpy.verify(msg, dnsfunc=dnsfunc), what

    # Changes relaxed canonicalisation tolerates, and unsigned fields, keep it valid.
    benign = {
        "unsigned header added": sig + b"X-Spam-Score: 0\r\n" + MSG,
        "header whitespace": signed.replace(b"Subject:   Quarterly", b"Subject: Quarterly"),
        "header refolded": signed.replace(b"To: Bob <bob@example.org>,\r\n\t", b"To: Bob <bob@example.org>, "),
        "trailing empty lines": signed + b"\r\n\r\n",
        "trailing space in body": signed.replace(b"Hello Bob,  \r\n", b"Hello Bob,\r\n"),
    }
    for what, msg in benign.items():
        assert dkimpy.verify(msg, dnsfunc=dnsfunc), what


def test_wrong_public_key_fails() -> None:
    key, _ = make_key(RSA)
    _, other_pub = generate_key(RSA)
    signed = sign(MSG, [key]) + MSG
    assert not dkimpy.verify(signed, dnsfunc=dnsfunc_for((key, dns_txt_value(RSA, other_pub))))


def test_signature_header_format() -> None:
    rkey, _ = make_key(RSA)
    keys = [rkey]
    if HAVE_NACL:
        keys.append(make_key(ED)[0])
    many_headers = (
        b"From: a@example.com\r\n"
        + b"".join(b"References: <%d@example.com>\r\n" % i for i in range(30))
        + b"\r\nbody\r\n"
    )
    for msg in (MSG, many_headers):
        sig = sign(msg, keys)
        assert sig.endswith(b"\r\n")
        assert b"\n" not in sig.replace(b"\r\n", b"")
        assert b"\r" not in sig.replace(b"\r\n", b"")
        lines = sig[:-2].split(b"\r\n")
        assert all(len(line) <= 78 for line in lines), [len(x) for x in lines]
        # Every line but the first of each field is a continuation (folded).
        for line in lines:
            assert line.startswith((b"DKIM-Signature: ", b" "))
        assert sig.count(b"DKIM-Signature: ") == len(keys)
        sig.decode("ascii")


def test_many_headers_folded_h_tag_verifies() -> None:
    key, txt = make_key(RSA)
    msg = (
        b"From: a@example.com\r\n"
        + b"".join(b"References: <%d@example.com>\r\n" % i for i in range(40))
        + b"\r\nbody\r\n"
    )
    sig = sign(msg, [key])
    assert h_list(sig_tags(sig)[0]).count(b"references") == 40
    assert dkimpy.verify(sig + msg, dnsfunc=dnsfunc_for((key, txt)))


@pytest.mark.parametrize(
    "msg",
    [
        b"From: a@example.com\r\n\r\n",  # empty body
        b"From: a@example.com\r\n",  # no body at all
        b"From: a@example.com",  # no final CRLF
        b"From: a@example.com\r\n\r\n\r\n\r\n\r\n",  # body of only CRLFs
        b"From: a@example.com\r\n\r\nno final newline",
        b"From: a@example.com\r\n\r\ntrailing tab\t",
        b"From: a@example.com\r\nSubject:\r\n\r\nempty subject\r\n",
        b"From:a@example.com\r\nSubject:x\r\n\r\n" + b"x" * 5000 + b"\r\n",
    ],
)
def test_edge_case_messages_verify(msg: bytes) -> None:
    key, txt = make_key(RSA)
    assert dkimpy.verify(sign(msg, [key]) + msg, dnsfunc=dnsfunc_for((key, txt)))


def test_body_hash_matches_dkimpy_signer() -> None:
    # dkimpy computes bh itself when it signs: ours must be identical.
    pem, _ = _keypair(RSA)
    key, _ = make_key(RSA)
    for msg in (MSG, b"From: a@example.com\r\n\r\n", b"From: a@example.com\r\n\r\n \t \r\n\r\nx  \t y\r\n"):
        theirs = dkimpy.sign(msg, b"rsa1", b"example.com", pem, canonicalize=(b"relaxed", b"relaxed"))
        assert sig_tags(sign(msg, [key]))[0][b"bh"] == sig_tags(theirs)[0][b"bh"]


def test_large_message_signs_and_verifies() -> None:
    key, txt = make_key(RSA)
    rng = random.Random(5)
    body = b"".join(
        base64.b64encode(rng.randbytes(57)) + (b"  \t\r\n" if i % 97 == 0 else b"\r\n") for i in range(70_000)
    )
    assert len(body) > 5_000_000
    msg = b"From: a@example.com\r\nSubject: big\r\n\r\n" + body
    sig = sign(msg, [key])
    assert dkimpy.verify(sig + msg, dnsfunc=dnsfunc_for((key, txt)))


@pytest.fixture
def canonicalised(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each body the signer canonicalises from now on."""
    calls: list[int] = []
    real = mdkim.canonicalize_body_relaxed

    def counting(body: bytes) -> bytes:
        calls.append(len(body))
        return real(body)

    monkeypatch.setattr(mdkim.signer, "canonicalize_body_relaxed", counting)
    return calls


def test_body_canonicalised_once_for_several_keys(canonicalised: list[int]) -> None:
    keys = [make_key(RSA, "a")[0], make_key(RSA, "b")[0], make_key(ED, "c")[0]]
    msg = MSG + os.urandom(8).hex().encode() + b"\r\n"  # a body no earlier test signed
    assert sign(msg, keys).count(b"DKIM-Signature:") == 3
    assert len(canonicalised) == 1


@pytest.mark.parametrize("body_size", [1_000, 200_000], ids=["remembered", "too-large-to-remember"])
def test_same_body_under_other_headers(canonicalised: list[int], body_size: int) -> None:
    """A batch's messages share a body: small bodies are canonicalised once (bh= remembered by
    value), large ones every time; either way each signature verifies and bh= is the body's."""
    key, txt = make_key(RSA)
    body = (os.urandom(8).hex().encode() + b" line \t \r\n") * (body_size // 24)
    msgs = [f"From: a@example.com\r\nTo: r{i}@example.org\r\nSubject: n{i}\r\n\r\n".encode() + body
            for i in range(3)]
    sigs = [sign(m, [key]) for m in msgs]
    assert len(canonicalised) == (1 if body_size <= 64 * 1024 else 3)
    want = base64.b64encode(hashlib.sha256(DkimpyRelaxed.canonicalize_body(body)).digest())
    for m, s in zip(msgs, sigs, strict=True):
        assert dkimpy.verify(s + m, dnsfunc=dnsfunc_for((key, txt)))
        assert parse_tag_value(s.split(b":", 1)[1].replace(b"\r\n", b""))[b"bh"] == want


def test_default_timestamp_is_now() -> None:
    key, _ = make_key(ED)
    before = int(time.time())
    t = int(sig_tags(sign(MSG, [key]))[0][b"t"])
    assert before <= t <= int(time.time())


def test_sign_errors() -> None:
    key, _ = make_key(RSA)
    assert sign(MSG, []) == b""
    with pytest.raises(DkimError, match="From"):
        sign(b"To: b@example.org\r\nSubject: x\r\n\r\nbody\r\n", [key])
    with pytest.raises(DkimError):
        sign(b"From: a@example.com\r\nnot a header line\r\n\r\nbody\r\n", [key])
    with pytest.raises(DkimError):
        sign(b" continuation first\r\nFrom: a@example.com\r\n\r\n", [key])
    with pytest.raises(DkimError):
        sign(MSG, [key], timestamp=-1)


# ---------------------------------------------------------------------------
# Relaxed body canonicalisation vs dkimpy
# ---------------------------------------------------------------------------

EDGE_BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"\r\n" * 50,
    b" ",
    b"\t",
    b" \r\n",
    b"\t\r\n\r\n",
    b"a",
    b"a ",
    b"a\t",
    b"a \t ",
    b"a\r\n",
    b"a\r\n\r\n\r\n",
    b"a  b\t\tc \t d\r\n",
    b"  leading spaces\r\n\tleading tab\r\n",
    b"trailing spaces   \r\ntrailing tabs\t\t\r\nmixed \t \t\r\n",
    b"line\r\n \r\n\t\r\n  \t \r\n",  # whitespace-only lines at the end are empty lines after stripping
    b"line\r\n \r\nmore\r\n",
    b"no trailing crlf",
    b"no trailing crlf after ws  \t",
    b"x" * 100_000 + b"\r\n",
    (b"y" * 998 + b"\r\n") * 50,
    b" " * 100_000 + b"\r\n",
    b"\t" * 4097 + b"z" + b" " * 3 + b"\r\n",
    b"a\rb\nc\r\r\n\n\r\n",  # bare CR/LF (not produced by our callers, still identical)
    b"\r\n\r\nbody after empty lines\r\n",
    b"\x00\x0b\x0c\xff  \xfe\r\n",  # VT/FF are not WSP
]


def test_relaxed_body_canonicalisation_edge_cases() -> None:
    for body in EDGE_BODIES:
        assert canonicalize_body_relaxed(body) == DkimpyRelaxed.canonicalize_body(body), body[:60]


def test_relaxed_body_canonicalisation_known_values() -> None:
    assert canonicalize_body_relaxed(b"") == b""
    assert canonicalize_body_relaxed(b"\r\n\r\n") == b""
    assert canonicalize_body_relaxed(b"a \t b  \r\n\r\n") == b"a b\r\n"
    assert canonicalize_body_relaxed(b"a") == b"a\r\n"
    # RFC 6376 §3.4.6 example body.
    assert canonicalize_body_relaxed(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"


def test_relaxed_body_canonicalisation_fuzz() -> None:
    rng = random.Random(20261126)
    atoms = [b" ", b"  ", b"\t", b" \t", b"\r\n", b"\r\n\r\n", b"a", b"bc", b"xyz ", b"\r", b"\n", b"."]
    for _ in range(3000):
        body = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 60)))
        assert canonicalize_body_relaxed(body) == DkimpyRelaxed.canonicalize_body(body), body


def test_relaxed_body_canonicalisation_crlf_only_fuzz() -> None:
    # Inputs shaped like real messages: CRLF-only, long-ish lines.
    rng = random.Random(7)
    words = [b"lorem", b"ipsum", b"dolor", b"\t", b"  ", b"   \t ", b"=20", b""]
    for _ in range(300):
        lines = [b" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(0, 40))]
        body = b"\r\n".join(lines) + rng.choice([b"", b"\r\n", b"\r\n\r\n\r\n", b" \r\n \r\n"])
        assert canonicalize_body_relaxed(body) == DkimpyRelaxed.canonicalize_body(body)


def test_relaxed_body_canonicalisation_5mb() -> None:
    rng = random.Random(42)
    words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet,", b"\tx", b"y  ", b"z \t"]
    lines = []
    size = 0
    while size < 5 * 1024 * 1024:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(0, 14)))
        lines.append(line)
        size += len(line) + 2
    text = b"\r\n".join(lines) + b"\r\n\r\n"
    attachment = b"\r\n".join(base64.b64encode(rng.randbytes(57)) for _ in range(70_000)) + b"\r\n"
    for body in (text, attachment):
        assert len(body) >= 5 * 1024 * 1024
        assert canonicalize_body_relaxed(body) == DkimpyRelaxed.canonicalize_body(body)


def test_relaxed_body_canonicalisation_runs_no_python_per_line() -> None:
    # Counted, not timed: the Python lines the canonicaliser runs on a 5 MB body of 110 000 lines.
    # A per-line (or per-match) Python loop would run hundreds of thousands; the C-level version
    # runs a few dozen (one pass per halving of the longest WSP run). bench/dkim_sign.py times it.
    body = (b"The quick brown fox jumps over the lazy dog. \t\r\n" * 110_000)[: 5 * 1024 * 1024]
    code = canonicalize_body_relaxed.__code__
    executed = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal executed
        if frame.f_code is not code:
            return None
        if event == "line":
            executed += 1
        return trace

    sys.settrace(trace)
    try:
        canonical = canonicalize_body_relaxed(body)
    finally:
        sys.settrace(None)
    assert canonical == DkimpyRelaxed.canonicalize_body(body)
    assert 0 < executed < 100


# ---------------------------------------------------------------------------
# Key-encryption key file and encryption at rest
# ---------------------------------------------------------------------------


def test_kek_created_0600_with_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "dkim.kek"
    kek = load_or_create_kek(path)
    assert len(kek) == 32
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert path.read_bytes() == kek
    assert load_or_create_kek(path) == kek  # stable across calls
    assert [p.name for p in path.parent.iterdir()] == ["dkim.kek"]  # no temp file left behind


def test_kek_created_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k"
        load_or_create_kek(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_kek_two_files_differ(tmp_path: Path) -> None:
    assert load_or_create_kek(tmp_path / "1") != load_or_create_kek(tmp_path / "2")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o700 | 0o010])
def test_kek_with_loose_permissions_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "dkim.kek"
    load_or_create_kek(path)
    os.chmod(path, mode)
    with pytest.raises(DkimError, match="chmod 600"):
        load_or_create_kek(path)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_kek_with_wrong_length_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "dkim.kek"
    path.write_bytes(b"k" * size)
    os.chmod(path, 0o600)
    with pytest.raises(DkimError, match="expected exactly 32"):
        load_or_create_kek(path)
    assert path.read_bytes() == b"k" * size  # never overwritten


def test_kek_symlinks_and_directories(tmp_path: Path) -> None:
    real = tmp_path / "real.kek"
    kek = load_or_create_kek(real)
    # A symlink to a good file is fine (secret stores present files that way)...
    link = tmp_path / "link.kek"
    link.symlink_to(real)
    assert load_or_create_kek(link) == kek
    # ...but the target's permissions are what is checked.
    os.chmod(real, 0o644)
    with pytest.raises(DkimError, match="chmod 600"):
        load_or_create_kek(link)
    # A dangling symlink is refused rather than written through.
    dangling = tmp_path / "dangling.kek"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(DkimError):
        load_or_create_kek(dangling)
    assert not (tmp_path / "missing").exists()
    d = tmp_path / "dir.kek"
    d.mkdir(mode=0o700)
    with pytest.raises(DkimError, match="not a regular file"):
        load_or_create_kek(d)


def test_kek_read_only_0400_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k"
    kek = load_or_create_kek(path)
    os.chmod(path, 0o400)
    assert load_or_create_kek(path) == kek


def test_kek_creation_failure_is_a_dkim_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DkimError, match="cannot create"):
        load_or_create_kek(blocker / "sub" / "k")


def test_kek_concurrent_creation_agrees(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "race" / "k"
    with ThreadPoolExecutor(8) as pool:
        keks = list(pool.map(lambda _: load_or_create_kek(path), range(16)))
    assert len(set(keks)) == 1
    assert keks[0] == path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["k"]


def test_encrypt_decrypt_roundtrip() -> None:
    kek = os.urandom(32)
    for alg in (RSA, ED):
        pem, _ = _keypair(alg)
        blob = encrypt_private_key(kek, pem, b"example.com:s1")
        assert blob[0] == 1
        assert pem not in blob and b"PRIVATE KEY" not in blob
        assert len(blob) == 1 + 12 + len(pem) + 16
        assert decrypt_private_key(kek, blob, b"example.com:s1") == pem
        # Fresh nonce each time.
        assert encrypt_private_key(kek, pem, b"example.com:s1") != blob


def test_decrypt_with_wrong_aad_or_kek_fails() -> None:
    kek = os.urandom(32)
    pem, _ = _keypair(ED)
    blob = encrypt_private_key(kek, pem, b"example.com:s1")
    with pytest.raises(DkimError, match="cannot decrypt"):
        decrypt_private_key(kek, blob, b"example.com:s2")
    with pytest.raises(DkimError, match="cannot decrypt"):
        decrypt_private_key(kek, blob, b"example.org:s1")
    with pytest.raises(DkimError, match="cannot decrypt"):
        decrypt_private_key(os.urandom(32), blob, b"example.com:s1")
    flipped = bytearray(blob)
    flipped[20] ^= 1
    with pytest.raises(DkimError, match="cannot decrypt"):
        decrypt_private_key(kek, bytes(flipped), b"example.com:s1")
    with pytest.raises(DkimError, match="version"):
        decrypt_private_key(kek, b"\x02" + blob[1:], b"example.com:s1")
    with pytest.raises(DkimError, match="truncated"):
        decrypt_private_key(kek, blob[:28], b"example.com:s1")
    with pytest.raises(DkimError):
        encrypt_private_key(b"short", pem, b"")
    with pytest.raises(DkimError):
        decrypt_private_key(b"short", blob, b"")


def test_error_messages_do_not_contain_key_material(tmp_path: Path) -> None:
    kek = os.urandom(32)
    pem, _ = _keypair(RSA)
    blob = encrypt_private_key(kek, pem, b"a")
    try:
        decrypt_private_key(kek, blob, b"b")
    except DkimError as e:
        msg = str(e).encode()
        assert kek not in msg and kek.hex().encode() not in msg and b"PRIVATE" not in msg
    lines = pem.splitlines()
    for broken in (
        pem.replace(b"PRIVATE KEY-----\n", b"PRIVBTE KEY-----\n", 1),  # armour mismatch
        b"\n".join([*lines[:3], lines[3][:-4] + b"!!!!", *lines[4:]]),  # bad base64
        b"\n".join([*lines[:3], *lines[5:]]),  # truncated DER
    ):
        with pytest.raises(DkimError) as info:
            SigningKey.from_pem(DOMAIN, "s", RSA, broken)
        assert info.value.__cause__ is None
        text = str(info.value).encode()
        assert b"PRIV" not in text
        assert not any(line[:12] in text for line in lines[1:-1])


def test_full_storage_roundtrip_then_sign(tmp_path: Path) -> None:
    # generate -> encrypt with KEK -> (database) -> decrypt -> parse -> sign -> verify
    kek = load_or_create_kek(tmp_path / "kek")
    pem, pub = generate_key(RSA)
    blob = encrypt_private_key(kek, pem, b"example.com:mt1")
    key = SigningKey.from_pem(
        "example.com",
        "mt1",
        RSA,
        decrypt_private_key(load_or_create_kek(tmp_path / "kek"), blob, b"example.com:mt1"),
    )
    signed = sign(MSG, [key]) + MSG
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for((key, dns_txt_value(RSA, pub))))
