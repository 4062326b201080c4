"""The DNS side of sending-domain verification: what to publish, and is it there.

The one job of this module: given a customer's sending domain, say which DNS
records they must publish (ownership proof, DKIM keys, SPF, DMARC) and check
live DNS for them. It is pure (no storage, no state): callers persist results.

Standards followed: hostname syntax RFC 1035 §2.3.1 / RFC 1123 §2.1 and IDNA
2008 (RFC 5890-5892) with UTS #46 mapping; DKIM key records RFC 6376 §3.6.1;
SPF RFC 7208; DMARC RFC 7489.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.rrset

from mailtrap_smtp.dnsresolve import Lookup, lookup

try:  # dnspython's optional IDNA 2008 dependency; nearly always installed.
    import idna as _idna
except ImportError:  # pragma: no cover - exercised only without the idna package
    _idna = None  # type: ignore[assignment]

__all__ = [
    "DKIM_SELECTORS",
    "CheckStatus",
    "DomainNameError",
    "ExpectedRecord",
    "RecordCheck",
    "all_required_pass",
    "check_records",
    "dkim_cname_target",
    "dkim_mailtrap_key",
    "expected_records",
    "normalize_domain",
]

CheckStatus = Literal["pass", "missing", "mismatch", "error"]

# RFC 1035 §2.3.4 / RFC 1123 §2.1: labels ≤63 octets of letters, digits and
# hyphens, not starting or ending with a hyphen; whole name ≤253 characters
# in text form (255 octets on the wire).
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_MAX_NAME = 253
# Follow at most this many CNAME hops when checking a CNAME record; real
# resolvers give up well before this and it also stops loops.
_MAX_CNAME_HOPS = 8

# Two selectors per algorithm: the signing key on one, the next key (or the previous one, or a
# rotation's new key) on the other. Mailtrap's records `dkim1`/`dkim2` are the RSA pair's two slots.
DKIM_SELECTORS = {"rsa-sha256": ("mt1", "mt2"), "ed25519-sha256": ("mte1", "mte2")}
# Mailtrap's click-tracking host record (MAILTRAP_COMPAT.md §4.1): mt-link.<domain> CNAME our link host.
LINK_LABEL = "mt-link"
LINK_NOTE = "reserved for click tracking (not built yet): optional, changes nothing today"

OWNERSHIP_TXT_LABEL = "_mailtrap-smtp"
OWNERSHIP_TXT_PREFIX = "mailtrap-smtp-verification="


class DomainNameError(ValueError):
    """A domain name the service refuses, with a message fit for an end user."""


# ---------------------------------------------------------------------------
# Domain names
# ---------------------------------------------------------------------------


def _to_alabels(name: str, original: str) -> str:
    """Convert a (possibly Unicode) name to lower-case A-labels."""
    if name.isascii():
        lowered = name.lower()
        if _idna is not None:
            # An "xn--" label must be valid Punycode of a valid U-label
            # (RFC 5891 §5.4), otherwise it cannot be displayed or compared.
            for label in lowered.split("."):
                if label.startswith("xn--"):
                    try:
                        _idna.decode(label)
                    except _idna.IDNAError as exc:
                        raise DomainNameError(
                            f"{original!r} is not a valid domain name: label {label!r} is not valid "
                            f"IDNA ({exc})"
                        ) from None
        return lowered
    try:
        if _idna is not None:
            # IDNA 2008 with the UTS #46 non-transitional mapping: what
            # browsers and registries use (so "ß" stays "ß", not "ss").
            return str(_idna.encode(name, uts46=True, transitional=False).decode("ascii"))
        # Fallback: the standard library only knows IDNA 2003.
        return name.encode("idna").decode("ascii").lower()  # pragma: no cover
    except (UnicodeError, ValueError) as exc:
        raise DomainNameError(f"{original!r} is not a valid internationalised domain name ({exc})") from None


def normalize_domain(name: str, *, force: bool = False) -> str:
    """Return ``name`` as a canonical sending domain: lower-case A-labels, no trailing dot.

    Raises :class:`DomainNameError` for anything that is not a plausible
    registered-style host name, and for ``www.`` names unless ``force``.
    """
    original = name
    text = name.strip() if isinstance(name, str) else ""
    if text.endswith("."):
        text = text[:-1]  # one trailing dot just means "fully qualified"
    if not text:
        raise DomainNameError("the domain name is empty")
    if text.startswith("[") or _is_ip_literal(text):
        raise DomainNameError(f"{original!r} is an IP address; a sending domain must be a domain name")
    if "@" in text:
        raise DomainNameError(
            f"{original!r} looks like an email address; enter only the domain part "
            f"(for example {text.rsplit('@', 1)[1]!r})"
        )
    if any(c.isspace() for c in text):
        raise DomainNameError(f"{original!r} is not a valid domain name: it contains spaces")

    ascii_name = _to_alabels(text, original)

    if len(ascii_name) > _MAX_NAME:
        raise DomainNameError(
            f"{original!r} is not a valid domain name: it is longer than {_MAX_NAME} characters"
        )
    labels = ascii_name.split(".")
    for label in labels:
        if not label:
            raise DomainNameError(f"{original!r} is not a valid domain name: it has an empty label ('..')")
        if len(label) > 63:
            raise DomainNameError(
                f"{original!r} is not a valid domain name: label {label[:20]!r}... "
                "is longer than 63 characters"
            )
        if label.startswith("-") or label.endswith("-"):
            raise DomainNameError(
                f"{original!r} is not a valid domain name: label {label!r} starts or ends with a hyphen"
            )
        if not _LABEL_RE.match(label):
            raise DomainNameError(
                f"{original!r} is not a valid domain name: label {label!r} may only contain "
                "letters, digits and hyphens"
            )
    if len(labels) < 2:
        raise DomainNameError(
            f"{original!r} is not a valid sending domain: it needs at least two labels, like example.com"
        )
    if labels[-1].isdigit():
        # RFC 3696 §2: top-level domains are never all-numeric; this also
        # catches mistyped IPv4 addresses such as "10.0.0".
        raise DomainNameError(f"{original!r} is not a valid domain name: the top-level domain is all numeric")
    if labels[0] == "www" and len(labels) > 2 and not force:
        bare = ".".join(labels[1:])
        raise DomainNameError(
            f"{ascii_name} looks like a web host name; mail is normally sent from the bare domain "
            f"{bare} (use --force to add it anyway)"
        )
    return ascii_name


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_label(value: str, what: str) -> str:
    label = value.strip().lower()
    if not _LABEL_RE.match(label) or len(label) > 63:
        raise ValueError(f"{what} {value!r} must be a single DNS label (letters, digits, hyphens; ≤63)")
    return label


# ---------------------------------------------------------------------------
# Expected records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedRecord:
    """One DNS record the customer should publish.

    ``key`` is "ownership", "dkim:<selector>", "dkim-cname:<selector>", "spf",
    "dmarc" or "link". ``name`` and CNAME ``value`` are written without a
    trailing dot. For TXT checks that look for a *kind* of record (SPF, DMARC)
    ``value`` is the suggestion to publish. ``target_value`` is only used for
    DKIM delegated by CNAME: the DKIM TXT value that must be found at the end
    of the CNAME chain. ``mailtrap_key`` is the record's key in Mailtrap's
    Domain object (`verification`, `dkim1`, `dkim2`, `spf`, `dmarc`,
    `link_verification`); ``note`` says why a record is not required.
    """

    key: str
    type: str
    name: str
    value: str
    required: bool = True
    target_value: str = ""
    mailtrap_key: str = ""
    note: str = ""


def dkim_mailtrap_key(selector: str) -> str:
    """Mailtrap's key of a DKIM selector's record: its slot, `dkim1` or `dkim2` (Ed25519: `dkim1_ed25519`, …).

    Fixed per selector (like Mailtrap's rwmt1/rwmt2), so a record keeps its key across rotations."""
    for algorithm, pair in DKIM_SELECTORS.items():
        if selector in pair:
            suffix = "_ed25519" if algorithm == "ed25519-sha256" else ""
            return f"dkim{pair.index(selector) + 1}{suffix}"
    return f"dkim:{selector}"


def dkim_cname_target(selector: str, domain: str, zone: str) -> str:
    """Where the customer's CNAME for a selector points in the operator's key-hosting zone."""
    return f"{selector}.{domain}.{zone}"


def expected_records(
    domain: str,
    *,
    verification_token: str,
    dkim: Sequence[tuple[str, str]],
    return_path_host: str,
    spf_include: str,
    ownership: str = "cname",
    dkim_cname_zone: str = "",
    dmarc_rua: str = "",
    link_host: str = "",
) -> list[ExpectedRecord]:
    """The records to publish for ``domain``, in display order.

    Ownership ("cname" mode): ``<token>.<domain> CNAME <return_path_host>``.
    That name doubles as the envelope sender (Return-Path) domain, so bounces
    come to us and SPF (RFC 7208 §2.4 checks the MAIL FROM domain) is
    evaluated against our host's own SPF record: the customer's apex SPF is
    then only informational. ("txt" mode): ``_mailtrap-smtp.<domain> TXT
    mailtrap-smtp-verification=<token>`` and the apex SPF becomes required,
    because mail is then sent with the customer's own domain as MAIL FROM.
    With ``link_host``, Mailtrap's ``mt-link.<domain> CNAME <link_host>`` is
    listed last, never required (click tracking is not built).
    """
    domain = normalize_domain(domain, force=True)
    token = _check_label(verification_token, "verification token")
    if ownership not in ("cname", "txt"):
        raise ValueError(f"ownership must be 'cname' or 'txt', not {ownership!r}")
    rp_host = return_path_host.strip().rstrip(".").lower()
    if not rp_host:
        raise ValueError("return_path_host must not be empty")
    if not spf_include.strip():
        raise ValueError("spf_include must not be empty")
    zone = dkim_cname_zone.strip().strip(".").lower()

    records: list[ExpectedRecord] = []
    if ownership == "cname":
        records.append(ExpectedRecord("ownership", "CNAME", f"{token}.{domain}", rp_host,
                                      mailtrap_key="verification"))
    else:
        records.append(
            ExpectedRecord(
                "ownership", "TXT", f"{OWNERSHIP_TXT_LABEL}.{domain}", OWNERSHIP_TXT_PREFIX + token,
                mailtrap_key="verification",
            )
        )

    for selector, txt_value in dkim:
        sel = _check_label(selector, "DKIM selector")
        # RFC 6376 §3.6.2.1: the key lives at <selector>._domainkey.<domain>.
        name = f"{sel}._domainkey.{domain}"
        if zone:
            # The operator publishes the key under its own zone and the
            # customer delegates with a CNAME, so keys can rotate without
            # the customer touching DNS again.
            records.append(
                ExpectedRecord(f"dkim:{sel}", "CNAME", name, dkim_cname_target(sel, domain, zone),
                               target_value=txt_value, mailtrap_key=dkim_mailtrap_key(sel))
            )
        else:
            records.append(ExpectedRecord(f"dkim:{sel}", "TXT", name, txt_value, mailtrap_key=dkim_mailtrap_key(sel)))

    spf_value = f"v=spf1 include:{spf_include.strip()} ~all"
    records.append(ExpectedRecord("spf", "TXT", domain, spf_value, required=(ownership == "txt"), mailtrap_key="spf",
                                  note="" if ownership == "txt" else "covered by the ownership record's own SPF"))

    dmarc_value = "v=DMARC1; p=none"
    if dmarc_rua.strip():
        dmarc_value += f"; rua=mailto:{dmarc_rua.strip()}"
    records.append(ExpectedRecord("dmarc", "TXT", f"_dmarc.{domain}", dmarc_value, mailtrap_key="dmarc"))
    link = link_host.strip().rstrip(".").lower()
    if link:
        records.append(ExpectedRecord("link", "CNAME", f"{LINK_LABEL}.{domain}", link, required=False,
                                      mailtrap_key="link_verification", note=LINK_NOTE))
    return records


# ---------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordCheck:
    """Result of checking one :class:`ExpectedRecord` against live DNS.

    ``status``: "pass"; "missing" (nothing relevant published); "mismatch"
    (something published but wrong; ``found`` shows it); "error" (DNS could
    not be consulted, e.g. SERVFAIL or timeout: never the customer's fault,
    check again later).
    """

    record: ExpectedRecord
    status: CheckStatus
    found: tuple[str, ...]
    detail: str


def _norm_host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _txt_values(rrset: dns.rrset.RRset | None) -> tuple[str, ...]:
    """Each TXT RR as one string: its character-strings concatenated.

    RFC 7208 §3.3 (SPF) and RFC 6376 §3.6.2.2 (DKIM) both say a record split
    into several strings is read by joining them with no separator.
    """
    if rrset is None:
        return ()
    return tuple(b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in rrset)


def _error(record: ExpectedRecord, result: Lookup, found: tuple[str, ...] = ()) -> RecordCheck:
    return RecordCheck(
        record, "error", found, f"DNS lookup of {record.name} failed ({result.reason}); try again later"
    )


async def _check_cname(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    """Pass if ``record.name`` reaches ``record.value`` through one or more CNAMEs."""
    want = _norm_host(record.value)
    chain: list[str] = []
    current = record.name
    for _ in range(_MAX_CNAME_HOPS):
        result = await lookup(resolver, current, "CNAME")
        if result.status == "error":
            return _error(record, result, tuple(chain))
        if result.status != "ok" or result.rrset is None:
            break
        target = _norm_host(result.rrset[0].target.to_text())
        chain.append(target)
        if target == want:
            return RecordCheck(record, "pass", tuple(chain), f"{record.name} points to {want}")
        if target in chain[:-1]:
            break  # loop
        current = target
    if not chain:
        return RecordCheck(record, "missing", (), f"no CNAME record at {record.name}")
    return RecordCheck(
        record, "mismatch", tuple(chain), f"{record.name} points to {chain[0]}, expected {want}"
    )


def _dkim_tags(value: str) -> dict[str, str]:
    """RFC 6376 §3.2 tag=value list; whitespace around tags and values is insignificant."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        tag, sep, val = part.partition("=")
        if sep:
            tags.setdefault(tag.strip().lower(), val.strip())
    return tags


def _dkim_key(value: str) -> tuple[str, str] | None:
    """(key type, public key data) of a DKIM key record, or None if not one.

    RFC 6376 §3.6.1: "v=" is optional but must be "DKIM1" when present,
    "k=" defaults to "rsa", and "p=" base64 may contain folding whitespace.
    """
    tags = _dkim_tags(value)
    if "p" not in tags:
        return None
    if "v" in tags and tags["v"] != "DKIM1":
        return None
    return tags.get("k", "rsa").lower(), "".join(tags["p"].split())


def _compare_dkim(
    record: ExpectedRecord, expected_value: str, found: tuple[str, ...], where: str
) -> RecordCheck:
    want = _dkim_key(expected_value)
    keys = [k for k in (_dkim_key(v) for v in found) if k is not None]
    if want is not None and want in keys:
        return RecordCheck(record, "pass", found, f"DKIM key found at {where}")
    if not keys:
        return RecordCheck(record, "mismatch", found, f"TXT record at {where} is not a DKIM key record")
    if want is not None and any(k[1] == want[1] for k in keys):
        return RecordCheck(record, "mismatch", found, f"DKIM key at {where} has the wrong key type (k=)")
    if any(not k[1] for k in keys):
        return RecordCheck(record, "mismatch", found, f"DKIM key at {where} is revoked (empty p=)")
    return RecordCheck(
        record, "mismatch", found, f"DKIM key at {where} differs from the expected key (an old key?)"
    )


async def _check_dkim_txt(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    result = await lookup(resolver, record.name, "TXT")
    if result.status == "error":
        return _error(record, result)
    found = _txt_values(result.rrset)
    if not found:
        return RecordCheck(record, "missing", (), f"no TXT record at {record.name}")
    return _compare_dkim(record, record.value, found, record.name)


async def _check_dkim_cname(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    cname = await _check_cname(record, resolver)
    if cname.status == "missing":
        # A common slip: pasting the key itself as TXT. It would sign fine
        # today but break at the next key rotation, so ask for the CNAME.
        txt = await lookup(resolver, record.name, "TXT")
        if txt.status == "ok":
            return RecordCheck(
                record,
                "mismatch",
                _txt_values(txt.rrset),
                f"{record.name} has a TXT record; replace it with a CNAME to {record.value}",
            )
    if cname.status != "pass":
        return cname
    # The customer's part is right; now follow the chain (the server chases
    # CNAMEs for TXT queries, RFC 1034 §4.3.2) to the key the operator hosts.
    result = await lookup(resolver, record.name, "TXT")
    if result.status == "error":
        return _error(record, result, cname.found)
    found = _txt_values(result.rrset)
    target = cname.found[-1]
    if not found:
        # Not the customer's fault: the operator has not published the key at
        # the target yet. Report it as an error so it is retried, not blamed.
        return RecordCheck(
            record, "error", cname.found, f"CNAME is correct, but no DKIM key is published at {target} yet"
        )
    check = _compare_dkim(record, record.target_value, found, target)
    return RecordCheck(record, check.status, cname.found + found, check.detail)


_SPF_RE = re.compile(r"^v=spf1(?:\s|$)", re.IGNORECASE)
_DMARC_RE = re.compile(r"^[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")


async def _check_spf(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    result = await lookup(resolver, record.name, "TXT")
    if result.status == "error":
        return _error(record, result)
    # RFC 7208 §4.5: only TXT records starting with "v=spf1" followed by a
    # space or the end are SPF records; others at the apex are unrelated.
    spf = tuple(v for v in _txt_values(result.rrset) if _SPF_RE.match(v.strip()))
    if not spf:
        return RecordCheck(record, "missing", (), f"no SPF (v=spf1) record at {record.name}")
    if len(spf) > 1:
        # RFC 7208 §4.5: more than one SPF record is a permerror; receivers
        # then ignore SPF for the domain entirely.
        return RecordCheck(record, "mismatch", spf, "multiple SPF records; merge them into one")
    want = _spf_include(record.value)
    terms = spf[0].split()[1:]
    # "include:x" and "+include:x" both mean pass; "~include"/"?include"
    # would weaken our result, "-include" would fail it.
    if any(t.lower() in (want, "+" + want) for t in terms):
        return RecordCheck(record, "pass", spf, f"SPF record includes {want.removeprefix('include:')}")
    return RecordCheck(record, "mismatch", spf, f"SPF record does not contain {want}")


def _spf_include(suggestion: str) -> str:
    for term in suggestion.split():
        if term.lower().startswith("include:"):
            return term.lower()
    return suggestion.lower()


async def _check_dmarc(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    result = await lookup(resolver, record.name, "TXT")
    if result.status == "error":
        return _error(record, result)
    values = _txt_values(result.rrset)
    # RFC 7489 §6.4: a DMARC record must begin with the "v=DMARC1" tag (the
    # ABNF makes the tag name case-insensitive but "DMARC1" exact).
    dmarc = tuple(v for v in values if _DMARC_RE.match(v.strip()))
    if dmarc and len(dmarc) > 1:
        # RFC 7489 §6.6.3: several records means no DMARC policy applies.
        return RecordCheck(record, "mismatch", dmarc, "multiple DMARC records; keep only one")
    if dmarc:
        return RecordCheck(record, "pass", dmarc, "DMARC record found")
    if values:
        return RecordCheck(
            record, "mismatch", values, f"TXT at {record.name} is not a DMARC (v=DMARC1) record"
        )
    return RecordCheck(record, "missing", (), f"no DMARC record at {record.name}")


async def _check_ownership_txt(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    result = await lookup(resolver, record.name, "TXT")
    if result.status == "error":
        return _error(record, result)
    values = _txt_values(result.rrset)
    if not values:
        return RecordCheck(record, "missing", (), f"no TXT record at {record.name}")
    if any(v.strip() == record.value for v in values):
        return RecordCheck(record, "pass", values, "verification token found")
    return RecordCheck(record, "mismatch", values, f"TXT at {record.name} does not contain {record.value}")


async def _check_one(record: ExpectedRecord, resolver: dns.asyncresolver.Resolver) -> RecordCheck:
    try:
        if record.type == "CNAME":
            if record.key.startswith("dkim:"):
                return await _check_dkim_cname(record, resolver)
            return await _check_cname(record, resolver)
        if record.key.startswith("dkim:"):
            return await _check_dkim_txt(record, resolver)
        if record.key == "spf":
            return await _check_spf(record, resolver)
        if record.key == "dmarc":
            return await _check_dmarc(record, resolver)
        if record.key == "ownership":
            return await _check_ownership_txt(record, resolver)
    except ValueError as exc:  # an unencodable name in the record itself
        return RecordCheck(record, "error", (), f"cannot check {record.name!r}: {exc}")
    return RecordCheck(
        record, "error", (), f"don't know how to check a {record.type} record for {record.key!r}"
    )


async def check_records(
    records: Sequence[ExpectedRecord], resolver: dns.asyncresolver.Resolver
) -> list[RecordCheck]:
    """Check every record against live DNS, concurrently; results in input order."""
    return list(await asyncio.gather(*(_check_one(r, resolver) for r in records)))


def all_required_pass(checks: Iterable[RecordCheck]) -> bool:
    """True when every required record passed (informational ones are ignored)."""
    return all(c.status == "pass" for c in checks if c.record.required)
