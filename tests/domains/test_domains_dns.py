"""Sending-domain DNS verification (mailtrap_smtp.domains) against a real loopback DNS server."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import dns.asyncresolver
import pytest

from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.domains import (
    DomainNameError,
    ExpectedRecord,
    RecordCheck,
    all_required_pass,
    check_records,
    expected_records,
    normalize_domain,
)
from tests.dnsserver import TestDNSServer

DOMAIN = "example.test"
TOKEN = "mt7f3a9c"
RP_HOST = "rp.mailtrap-smtp.test"
SPF_INCLUDE = "_spf.mailtrap-smtp.test"


def fake_key(seed: int = 0, size: int = 294) -> str:
    """Base64 of the size of an RSA-2048 SubjectPublicKeyInfo (392 chars)."""
    return base64.b64encode(bytes((seed + i) % 256 for i in range(size))).decode()


KEY1 = fake_key(1)
KEY2 = fake_key(2)
DKIM_VALUE = f"v=DKIM1; k=rsa; p={KEY1}"


def resolver_for(server: TestDNSServer, timeout: float = 0.5) -> dns.asyncresolver.Resolver:
    return make_resolver([server.address], timeout=timeout)


def records(ownership: str = "cname", **kw: str) -> list[ExpectedRecord]:
    return expected_records(
        DOMAIN,
        verification_token=TOKEN,
        dkim=[("mt1", DKIM_VALUE)],
        return_path_host=RP_HOST,
        spf_include=SPF_INCLUDE,
        ownership=ownership,
        dmarc_rua=kw.get("dmarc_rua", ""),
        dkim_cname_zone=kw.get("dkim_cname_zone", ""),
    )


def publish_all(server: TestDNSServer, ownership: str = "cname") -> None:
    if ownership == "cname":
        server.add(f"{TOKEN}.{DOMAIN}", "CNAME", RP_HOST)
    else:
        server.add(f"_mailtrap-smtp.{DOMAIN}", "TXT", f"mailtrap-smtp-verification={TOKEN}")
    server.add(f"mt1._domainkey.{DOMAIN}", "TXT", DKIM_VALUE)  # > 255 bytes: split automatically
    server.add(DOMAIN, "TXT", f"v=spf1 include:{SPF_INCLUDE} ~all")
    server.add(DOMAIN, "TXT", "google-site-verification=abc")  # unrelated apex TXT
    server.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject; rua=mailto:d@example.test")


def by_key(checks: list[RecordCheck]) -> dict[str, RecordCheck]:
    return {c.record.key: c for c in checks}


# -- normalize_domain -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("  example.com.  ", "example.com"),
        ("mail.example.co.uk", "mail.example.co.uk"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008 keeps ß (IDNA 2003 mapped it to "ss")
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("EXAMPLE.\uff23\uff2f\uff2d", "example.com"),  # UTS #46 maps full-width letters
        ("exa\u200bmple.com", "example.com"),  # ... and drops zero-width spaces
        ("a-b.example.com", "a-b.example.com"),
        ("1.example.com", "1.example.com"),
        ("www.com", "www.com"),  # two labels: that is the bare domain
    ],
)
def test_normalize_domain(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


def test_normalize_domain_refuses_www_unless_forced() -> None:
    with pytest.raises(DomainNameError) as info:
        normalize_domain("WWW.Example.com")
    assert str(info.value) == (
        "www.example.com looks like a web host name; mail is normally sent from the bare domain "
        "example.com (use --force to add it anyway)"
    )
    assert normalize_domain("www.example.com", force=True) == "www.example.com"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("localhost", "at least two labels"),
        ("example..com", "empty label"),
        ("example.com..", "empty label"),
        ("-bad.example.com", "hyphen"),
        ("bad-.example.com", "hyphen"),
        ("under_score.example.com", "letters, digits and hyphens"),
        ("ex ample.com", "spaces"),
        ("a" * 64 + ".com", "longer than 63"),
        (".".join(["a" * 60] * 5), "longer than 253"),
        ("10.0.0", "all numeric"),
        ("192.0.2.1", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[192.0.2.1]", "IP address"),
        ("user@example.com", "email address"),
        ("xn--zz.example", "not valid IDNA"),
        ("i\u2665mail.example", "internationalised"),  # symbols are DISALLOWED in IDNA 2008
    ],
)
def test_normalize_domain_rejects(raw: str, message: str) -> None:
    with pytest.raises(DomainNameError, match=message):
        normalize_domain(raw)


def test_domain_name_error_is_value_error() -> None:
    assert issubclass(DomainNameError, ValueError)


# -- expected_records -------------------------------------------------------------


def test_expected_records_cname_mode() -> None:
    recs = records(dmarc_rua="dmarc@example.test")
    assert [(r.key, r.type, r.name, r.value, r.required) for r in recs] == [
        ("ownership", "CNAME", f"{TOKEN}.{DOMAIN}", RP_HOST, True),
        ("dkim:mt1", "TXT", f"mt1._domainkey.{DOMAIN}", DKIM_VALUE, True),
        ("spf", "TXT", DOMAIN, f"v=spf1 include:{SPF_INCLUDE} ~all", False),
        ("dmarc", "TXT", f"_dmarc.{DOMAIN}", "v=DMARC1; p=none; rua=mailto:dmarc@example.test", True),
    ]


def test_expected_records_txt_mode_and_cname_dkim() -> None:
    recs = records("txt", dkim_cname_zone="dkim.mailtrap-smtp.test.")
    assert [(r.key, r.type, r.name, r.value, r.required) for r in recs] == [
        ("ownership", "TXT", f"_mailtrap-smtp.{DOMAIN}", f"mailtrap-smtp-verification={TOKEN}", True),
        ("dkim:mt1", "CNAME", f"mt1._domainkey.{DOMAIN}", f"mt1.{DOMAIN}.dkim.mailtrap-smtp.test", True),
        ("spf", "TXT", DOMAIN, f"v=spf1 include:{SPF_INCLUDE} ~all", True),
        ("dmarc", "TXT", f"_dmarc.{DOMAIN}", "v=DMARC1; p=none", True),
    ]
    assert recs[1].target_value == DKIM_VALUE


def test_expected_records_validates_inputs() -> None:
    with pytest.raises(ValueError, match="verification token"):
        expected_records(
            DOMAIN, verification_token="bad token", dkim=[], return_path_host=RP_HOST, spf_include=SPF_INCLUDE
        )
    with pytest.raises(ValueError, match="DKIM selector"):
        expected_records(
            DOMAIN,
            verification_token=TOKEN,
            dkim=[("a.b", DKIM_VALUE)],
            return_path_host=RP_HOST,
            spf_include=SPF_INCLUDE,
        )
    with pytest.raises(ValueError, match="ownership"):
        expected_records(
            DOMAIN,
            verification_token=TOKEN,
            dkim=[],
            return_path_host=RP_HOST,
            spf_include=SPF_INCLUDE,
            ownership="http",
        )
    with pytest.raises(DomainNameError):
        expected_records(
            "not a domain",
            verification_token=TOKEN,
            dkim=[],
            return_path_host=RP_HOST,
            spf_include=SPF_INCLUDE,
        )


# -- check_records: passing --------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("ownership", ["cname", "txt"])
async def test_all_records_pass(dns_server: TestDNSServer, ownership: str) -> None:
    publish_all(dns_server, ownership)
    recs = records(ownership)
    checks = await check_records(recs, resolver_for(dns_server))
    assert [c.record for c in checks] == recs  # input order kept
    assert {c.record.key: c.status for c in checks} == dict.fromkeys(
        ["ownership", "dkim:mt1", "spf", "dmarc"], "pass"
    )
    assert all_required_pass(checks)
    got = by_key(checks)
    assert got["dkim:mt1"].found == (DKIM_VALUE,)  # split strings joined back
    assert got["spf"].found == (f"v=spf1 include:{SPF_INCLUDE} ~all",)  # only the SPF record


@pytest.mark.asyncio
async def test_checks_run_concurrently(dns_server: TestDNSServer) -> None:
    # Counted, not timed: the server never answers, and each lookup may wait 60 s. One at a time,
    # the second question could not arrive while the first waits; concurrently, all of them do.
    for r in records():
        dns_server.drop(r.name)
    task = asyncio.create_task(check_records(records(), resolver_for(dns_server, timeout=60)))
    wanted = {r.name.lower().rstrip(".") + "." for r in records()}
    asked: set[str] = set()
    for _ in range(500):  # bounded (10 s), far inside the first lookup's 60 s
        asked = {name for name, _, _ in dns_server.queries}
        if wanted <= asked:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert wanted <= asked


@pytest.mark.asyncio
async def test_a_lookup_that_times_out_is_an_error(dns_server: TestDNSServer) -> None:
    for r in records():
        dns_server.drop(r.name)
    checks = await check_records(records(), resolver_for(dns_server, timeout=0.3))
    assert {c.status for c in checks} == {"error"}


@pytest.mark.asyncio
async def test_txt_split_at_arbitrary_points_passes(dns_server: TestDNSServer) -> None:
    publish_all(dns_server)
    dns_server.remove(f"mt1._domainkey.{DOMAIN}")
    dns_server.remove(DOMAIN)
    # Split mid-tag and mid-key, as some DNS control panels do.
    dns_server.add(
        f"mt1._domainkey.{DOMAIN}", "TXT", ["v=DKIM1; k=r", "sa; p=" + KEY1[:100], KEY1[100:300], KEY1[300:]]
    )
    dns_server.add(DOMAIN, "TXT", ["v=spf1 include:", SPF_INCLUDE, " -all"])
    checks = by_key(await check_records(records("txt"), resolver_for(dns_server)))
    assert checks["dkim:mt1"].status == "pass"
    assert checks["spf"].status == "pass"


@pytest.mark.asyncio
async def test_dkim_whitespace_and_tag_order_do_not_matter(dns_server: TestDNSServer) -> None:
    spaced = " ".join(KEY1[i : i + 64] for i in range(0, len(KEY1), 64))
    dns_server.add(f"mt1._domainkey.{DOMAIN}", "TXT", f"p = {spaced} ;  v=DKIM1;t=s")  # k defaults to rsa
    (check,) = await check_records([records()[1]], resolver_for(dns_server))
    assert check.status == "pass"


@pytest.mark.asyncio
async def test_cname_chain_passes(dns_server: TestDNSServer) -> None:
    # Customer points at their own alias, which points at our host.
    dns_server.add(f"{TOKEN}.{DOMAIN}", "CNAME", "bounce.example.test")
    dns_server.add("bounce.example.test", "CNAME", RP_HOST)
    dns_server.add(RP_HOST, "A", "192.0.2.1")
    (check,) = await check_records([records()[0]], resolver_for(dns_server))
    assert check.status == "pass"
    assert check.found == ("bounce.example.test", RP_HOST)


@pytest.mark.asyncio
async def test_dkim_txt_behind_cname_passes(dns_server: TestDNSServer) -> None:
    dns_server.add(f"mt1._domainkey.{DOMAIN}", "CNAME", "keys.example.test")
    dns_server.add("keys.example.test", "TXT", DKIM_VALUE)
    (check,) = await check_records([records()[1]], resolver_for(dns_server))
    assert check.status == "pass"


@pytest.mark.asyncio
async def test_case_differences_pass(dns_server: TestDNSServer) -> None:
    dns_server.add(f"{TOKEN.upper()}.EXAMPLE.test", "CNAME", RP_HOST.upper() + ".")
    dns_server.add(f"MT1._DomainKey.{DOMAIN.upper()}", "TXT", f"v=DKIM1; k=RSA; p={KEY1}")
    dns_server.add(DOMAIN.upper(), "TXT", f"V=SPF1 INCLUDE:{SPF_INCLUDE.upper()} ~ALL")
    dns_server.add(f"_DMARC.{DOMAIN}", "TXT", "V = DMARC1;p=quarantine")
    checks = await check_records(records("txt")[1:] + records()[:1], resolver_for(dns_server))
    assert [(c.record.key, c.status) for c in checks] == [
        ("dkim:mt1", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
        ("ownership", "pass"),
    ]


# -- check_records: failing ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("missing", ["ownership", "dkim:mt1", "spf", "dmarc"])
@pytest.mark.parametrize("ownership", ["cname", "txt"])
async def test_each_record_missing(dns_server: TestDNSServer, missing: str, ownership: str) -> None:
    publish_all(dns_server, ownership)
    target = next(r for r in records(ownership) if r.key == missing)
    dns_server.remove(target.name, "TXT" if missing == "spf" else None)
    dns_server.add("unrelated." + DOMAIN, "A", "192.0.2.1")  # keep the zone non-empty
    checks = by_key(await check_records(records(ownership), resolver_for(dns_server)))
    assert checks[missing].status == "missing", checks[missing]
    assert checks[missing].found == ()
    assert target.name in checks[missing].detail
    others = {k: c.status for k, c in checks.items() if k != missing}
    assert set(others.values()) == {"pass"}
    # An informational SPF in cname mode does not block verification.
    assert all_required_pass(checks.values()) is (missing == "spf" and ownership == "cname")


@pytest.mark.asyncio
async def test_missing_on_nodata_as_well_as_nxdomain(dns_server: TestDNSServer) -> None:
    # The name exists (has an A record) but no TXT/CNAME: NODATA.
    for r in records("txt"):
        dns_server.add(r.name, "A", "192.0.2.1")
    checks = await check_records(records("txt") + records()[:1], resolver_for(dns_server))
    assert {c.status for c in checks} == {"missing"}


@pytest.mark.asyncio
async def test_wrong_dkim_key_is_mismatch(dns_server: TestDNSServer) -> None:
    stale = f"v=DKIM1; k=rsa; p={KEY2}"
    dns_server.add(f"mt1._domainkey.{DOMAIN}", "TXT", stale)
    (check,) = await check_records([records()[1]], resolver_for(dns_server))
    assert check.status == "mismatch"
    assert check.found == (stale,)
    assert "differs" in check.detail


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("published", "detail"),
    [
        (f"v=DKIM1; k=ed25519; p={KEY1}", "key type"),
        ("v=DKIM1; k=rsa; p=", "revoked"),
        ("some other text", "not a DKIM key"),
    ],
)
async def test_other_dkim_mismatches(dns_server: TestDNSServer, published: str, detail: str) -> None:
    dns_server.add(f"mt1._domainkey.{DOMAIN}", "TXT", published)
    (check,) = await check_records([records()[1]], resolver_for(dns_server))
    assert check.status == "mismatch"
    assert detail in check.detail
    assert check.found == (published,)


@pytest.mark.asyncio
async def test_cname_to_wrong_target_is_mismatch(dns_server: TestDNSServer) -> None:
    dns_server.add(f"{TOKEN}.{DOMAIN}", "CNAME", "rp.other-provider.test")
    (check,) = await check_records([records()[0]], resolver_for(dns_server))
    assert check.status == "mismatch"
    assert check.found == ("rp.other-provider.test",)
    assert RP_HOST in check.detail


@pytest.mark.asyncio
async def test_spf_problems(dns_server: TestDNSServer) -> None:
    spf = records("txt")[2]
    resolver = resolver_for(dns_server)
    dns_server.add(DOMAIN, "TXT", "v=spf1 include:_spf.google.com ~all")
    (check,) = await check_records([spf], resolver)
    assert check.status == "mismatch"
    assert check.found == ("v=spf1 include:_spf.google.com ~all",)
    assert f"include:{SPF_INCLUDE}" in check.detail

    dns_server.add(DOMAIN, "TXT", f"v=spf1 include:{SPF_INCLUDE} -all")
    (check,) = await check_records([spf], resolver)
    assert check.status == "mismatch"
    assert check.detail.startswith("multiple SPF records")
    assert len(check.found) == 2

    dns_server.remove(DOMAIN)
    dns_server.add(DOMAIN, "TXT", f"v=spf1 ~include:{SPF_INCLUDE} -all")  # softfail qualifier
    (check,) = await check_records([spf], resolver)
    assert check.status == "mismatch"

    dns_server.remove(DOMAIN)
    dns_server.add(DOMAIN, "TXT", f"v=spf1 mx +include:{SPF_INCLUDE} -all")
    (check,) = await check_records([spf], resolver)
    assert check.status == "pass"

    dns_server.remove(DOMAIN)
    dns_server.add(DOMAIN, "TXT", f"v=spf10 include:{SPF_INCLUDE}")  # not an SPF record at all
    (check,) = await check_records([spf], resolver)
    assert check.status == "missing"


@pytest.mark.asyncio
async def test_dmarc_problems(dns_server: TestDNSServer) -> None:
    dmarc = records()[3]
    resolver = resolver_for(dns_server)
    dns_server.add(f"_dmarc.{DOMAIN}", "TXT", "p=none")
    (check,) = await check_records([dmarc], resolver)
    assert (check.status, check.found) == ("mismatch", ("p=none",))
    dns_server.remove(f"_dmarc.{DOMAIN}")
    dns_server.add(f"_dmarc.{DOMAIN}", "TXT", "v=dmarc1; p=none")  # the version value is case-sensitive
    (check,) = await check_records([dmarc], resolver)
    assert check.status == "mismatch"
    dns_server.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none")
    dns_server.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")
    (check,) = await check_records([dmarc], resolver)
    assert check.status == "mismatch"
    assert "multiple DMARC" in check.detail


@pytest.mark.asyncio
async def test_ownership_txt_wrong_token_is_mismatch(dns_server: TestDNSServer) -> None:
    dns_server.add(f"_mailtrap-smtp.{DOMAIN}", "TXT", "mailtrap-smtp-verification=someoneelse")
    (check,) = await check_records([records("txt")[0]], resolver_for(dns_server))
    assert check.status == "mismatch"
    assert check.found == ("mailtrap-smtp-verification=someoneelse",)


# -- check_records: DNS failures are never the customer's fault ----------------------


@pytest.mark.asyncio
async def test_servfail_is_error(dns_server: TestDNSServer) -> None:
    publish_all(dns_server)
    dns_server.servfail(f"mt1._domainkey.{DOMAIN}")
    dns_server.servfail(f"{TOKEN}.{DOMAIN}")
    checks = by_key(await check_records(records(), resolver_for(dns_server)))
    for key in ("dkim:mt1", "ownership"):
        assert checks[key].status == "error"
        assert "SERVFAIL" in checks[key].detail
    assert checks["dmarc"].status == "pass"
    assert not all_required_pass(checks.values())


@pytest.mark.asyncio
async def test_timeout_is_error(dns_server: TestDNSServer) -> None:
    publish_all(dns_server)
    dns_server.drop(f"_dmarc.{DOMAIN}")
    checks = by_key(await check_records(records(), resolver_for(dns_server, timeout=0.5)))
    assert checks["dmarc"].status == "error"
    assert "timeout" in checks["dmarc"].detail
    assert checks["dkim:mt1"].status == "pass"


# -- DKIM delegated by CNAME to the operator's zone ---------------------------------


ZONE = "dkim.mailtrap-smtp.test"
KEY_HOST = f"mt1.{DOMAIN}.{ZONE}"


@pytest.mark.asyncio
async def test_cname_zone_dkim_passes(dns_server: TestDNSServer) -> None:
    dns_server.add(f"mt1._domainkey.{DOMAIN}", "CNAME", KEY_HOST)
    dns_server.add(KEY_HOST, "TXT", DKIM_VALUE)
    (check,) = await check_records([records(dkim_cname_zone=ZONE)[1]], resolver_for(dns_server))
    assert check.status == "pass", check
    assert check.found == (KEY_HOST, DKIM_VALUE)


@pytest.mark.asyncio
async def test_cname_zone_dkim_failures(dns_server: TestDNSServer) -> None:
    rec = records(dkim_cname_zone=ZONE)[1]
    resolver = resolver_for(dns_server)

    (check,) = await check_records([rec], resolver)
    assert check.status == "missing"

    # Customer published the key as TXT instead of the CNAME we asked for.
    dns_server.add(rec.name, "TXT", DKIM_VALUE)
    (check,) = await check_records([rec], resolver)
    assert check.status == "mismatch"
    assert check.found == (DKIM_VALUE,)
    assert "replace it with a CNAME" in check.detail
    dns_server.remove(rec.name)

    # CNAME right, but the operator has not published the key yet: not the customer's fault.
    dns_server.add(rec.name, "CNAME", KEY_HOST)
    (check,) = await check_records([rec], resolver)
    assert check.status == "error"
    assert KEY_HOST in check.detail

    # Operator zone still serves the old key after a rotation.
    dns_server.add(KEY_HOST, "TXT", f"v=DKIM1; k=rsa; p={KEY2}")
    (check,) = await check_records([rec], resolver)
    assert check.status == "mismatch"
    assert check.found == (KEY_HOST, f"v=DKIM1; k=rsa; p={KEY2}")

    # CNAME pointing somewhere else.
    dns_server.remove(rec.name)
    dns_server.add(rec.name, "CNAME", "mt1.other.test")
    (check,) = await check_records([rec], resolver)
    assert check.status == "mismatch"
    assert check.found == ("mt1.other.test",)
