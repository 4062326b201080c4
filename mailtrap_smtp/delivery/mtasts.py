"""MTA-STS (RFC 8461): a recipient domain's published outbound TLS policy, fetched, checked, cached.

One job: answer "what MTA-STS policy applies to this domain now?". The `_mta-sts.<domain>` TXT
record (§3.1) says that a policy exists and names its version (`id`); the policy itself is fetched
over HTTPS from `https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3) with the certificate
verified against the Web PKI (or the CA bundle the operator configures), no redirects followed,
`text/plain` only, and a size cap. A fetched policy is cached for its `max_age` (§5.1) and fetched
again when the TXT id changes; while the TXT is missing or DNS or HTTPS fails, an unexpired cached
policy stays in force, which is what makes MTA-STS resist an attacker who blocks the discovery.

The parsing functions are pure; `PolicyCache` does the network I/O (DNS through the service's
resolver, HTTPS with asyncio streams) and, given a pool, keeps policies in the database too
(store/mtasts.py), so a restarted or another node applies a known policy at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import dns.asyncresolver

from ..dnsresolve import lookup
from ..store import mtasts as store

log = logging.getLogger(__name__)

Mode = Literal["enforce", "testing", "none"]

MAX_POLICY_BYTES = 64 * 1024  # §3.3: "the policy body ... SHOULD NOT be larger than 64 KB"
MAX_AGE_LIMIT = 31557600      # §3.2: at most one year
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # §3.1 sts-id


# The note of a policy that could not be fetched; `may_find_later` reads it.
_FETCH_FAILED = "policy fetch failed"


def may_find_later(note: str) -> bool:
    """Whether a look-up that found no usable policy could find one next time: the policy could not
    be fetched, or a TXT look-up failed (status `error`, not NXDOMAIN), rather than the domain
    having none."""
    return note.startswith(_FETCH_FAILED) or note.endswith("(error)")


@dataclass(frozen=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]  # patterns: "mail.example.com" or "*.example.net"
    max_age: int
    id: str = ""

    def matches(self, host: str) -> bool:
        return any(mx_matches(p, host) for p in self.mx)


def parse_txt(values: Iterable[str]) -> str | None:
    """The policy id from the TXT records at `_mta-sts.<domain>`, or None if there is no valid one.

    §3.1: exactly one record beginning with "v=STSv1" must be present; more than one means no policy.
    """
    found = [v for v in values if re.match(r"^v=STSv1\s*(;|$)", v.strip())]
    if len(found) != 1:
        return None
    fields = dict(_pairs(found[0], ";", "="))
    sts_id = fields.get("id", "")
    return sts_id if _ID.match(sts_id) else None


def _pairs(text: str, sep: str, eq: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(sep):
        key, has, value = item.partition(eq)
        if has:
            out.append((key.strip(), value.strip()))
    return out


def parse_policy(text: str) -> Policy | None:
    """A policy file (§3.2: "key: value" lines, CRLF or LF), or None if it is not a valid one."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, has, value = line.partition(":")
        if has:
            values.setdefault(key.strip(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        return None
    modes = values.get("mode", [])
    if len(modes) != 1 or modes[0] not in ("enforce", "testing", "none"):
        return None
    ages = values.get("max_age", [])
    if len(ages) != 1 or not ages[0].isdigit() or len(ages[0]) > 10:
        return None
    mx = tuple(p.lower().rstrip(".") for p in values.get("mx", []) if _valid_pattern(p))
    mode: Mode = modes[0]  # type: ignore[assignment]
    if mode != "none" and not mx:
        return None  # §3.2: mx is required unless mode is none
    return Policy(mode, mx, min(int(ages[0]), MAX_AGE_LIMIT))


def _valid_pattern(p: str) -> bool:
    p = p.strip().lower().rstrip(".")
    body = p[2:] if p.startswith("*.") else p
    return bool(body) and all(re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", label) for label in body.split("."))


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: exact match, or "*." matching exactly one leftmost label (case-insensitive)."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first and dot) and rest == pattern[2:]
    return host == pattern


class FetchError(Exception):
    """The policy could not be fetched or is not a valid policy (reason in the message)."""


@dataclass
class _Entry:
    policy: Policy
    expires: float  # monotonic


class PolicyCache:
    """The MTA-STS policy of each recipient domain, as §5.1 asks senders to keep it."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, https_context: ssl.SSLContext, *,
                 port: int = 443, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 pool: Any = None) -> None:
        self.resolver = resolver
        self.pool = pool
        self.https_context = https_context
        self.port = port
        self.timeout = timeout
        self.clock = clock
        self._cache: dict[str, _Entry] = {}

    async def policy(self, domain: str) -> tuple[Policy | None, str]:
        """(the policy in force or None, a note on where it came from or why there is none)."""
        domain = domain.lower().rstrip(".")
        cached = self._cache.get(domain)
        if cached is not None and cached.expires <= self.clock():
            cached = None
            del self._cache[domain]
        if cached is None:
            cached = await self._stored(domain)
        txt = await lookup(self.resolver, f"_mta-sts.{domain}", "TXT")
        if txt.status != "ok" or txt.rrset is None:
            if cached is not None:
                return cached.policy, f"cached (TXT {txt.status})"
            return None, f"no MTA-STS TXT ({txt.status})"
        sts_id = parse_txt(b"".join(r.strings).decode("utf-8", "replace") for r in txt.rrset)
        if sts_id is None:
            return (cached.policy, "cached (invalid TXT)") if cached else (None, "invalid MTA-STS TXT")
        if cached is not None and cached.policy.id == sts_id:
            return cached.policy, "cached"
        try:
            fetched = await self.fetch(domain)
        except FetchError as e:
            if cached is not None:
                return cached.policy, f"cached (refresh failed: {e})"
            return None, f"{_FETCH_FAILED}: {e}"
        policy = Policy(fetched.mode, fetched.mx, fetched.max_age, sts_id)
        self._remember(domain, policy, policy.max_age)
        await self._persist(domain, policy)
        return policy, "fetched"

    def _remember(self, domain: str, policy: Policy, seconds: float) -> _Entry:
        if len(self._cache) > 10_000:
            self._cache.clear()
        entry = self._cache[domain] = _Entry(policy, self.clock() + seconds)
        return entry

    async def _stored(self, domain: str) -> _Entry | None:
        if self.pool is None:
            return None
        try:
            row = await store.get(self.pool, domain)
        except Exception as e:  # the database is down: DNS and HTTPS still give a policy
            log.warning("cannot read the stored MTA-STS policy of %s: %s", domain, e)
            return None
        if row is None:
            return None
        left = (row["expires_at"] - dt.datetime.now(dt.UTC)).total_seconds()
        policy = Policy(row["mode"], tuple(row["mx"]), int(row["max_age"]), row["policy_id"])
        return self._remember(domain, policy, max(left, 0.0))

    async def _persist(self, domain: str, policy: Policy) -> None:
        if self.pool is None:
            return
        try:
            await store.put(self.pool, domain, policy_id=policy.id, mode=policy.mode, mx=policy.mx,
                            max_age=policy.max_age,
                            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=policy.max_age))
        except Exception as e:
            log.warning("cannot store the MTA-STS policy of %s: %s", domain, e)

    async def fetch(self, domain: str) -> Policy:
        host = f"mta-sts.{domain}"
        addr = await lookup(self.resolver, host, "A")
        if addr.status != "ok" or addr.rrset is None:
            addr = await lookup(self.resolver, host, "AAAA")
        if addr.status != "ok" or addr.rrset is None:
            raise FetchError(f"no address for {host} ({addr.status})")
        ip = addr.rrset[0].address
        try:
            async with asyncio.timeout(self.timeout):
                body = await _https_get(ip, self.port, host, "/.well-known/mta-sts.txt", self.https_context)
        except TimeoutError:
            raise FetchError(f"timeout fetching https://{host}/") from None
        except ssl.SSLError as e:
            raise FetchError(f"TLS to {host}: {e.reason or type(e).__name__}") from None
        except OSError as e:
            raise FetchError(f"cannot connect to {host}: {e.strerror or type(e).__name__}") from None
        except (ValueError, UnicodeError) as e:  # whatever a hostile policy host sends is its failure
            raise FetchError(f"malformed HTTP response from {host} ({type(e).__name__})") from None
        policy = parse_policy(body)
        if policy is None:
            raise FetchError(f"https://{host}/.well-known/mta-sts.txt is not a valid STSv1 policy")
        return policy


async def _https_get(ip: str, port: int, host: str, path: str, ctx: ssl.SSLContext) -> str:
    """One HTTP/1.1 GET over verified TLS; the body as text. §3.3: 200 only, no redirects."""
    reader, writer = await asyncio.open_connection(ip, port, ssl=ctx, server_hostname=host)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailtrap-smtp\r\n"
                     f"Accept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > 16384:
            raise FetchError("response headers too large")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise FetchError(f"HTTP status {lines[0][:60]!r} (redirects are not followed)")
        headers = {k.strip().lower(): v.strip() for k, v in _pairs("\n".join(lines[1:]), "\n", ":")}
        if headers.get("content-type", "").split(";")[0].strip().lower() != "text/plain":
            raise FetchError(f"Content-Type {headers.get('content-type', 'none')[:40]!r}, not text/plain")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.read(MAX_POLICY_BYTES + 1)
            while len(body) <= MAX_POLICY_BYTES:
                more = await reader.read(MAX_POLICY_BYTES + 1 - len(body))
                if not more:
                    break
                body += more
        if len(body) > MAX_POLICY_BYTES:
            raise FetchError("policy larger than 64 KiB")
        return body.decode("utf-8", "replace")
    except asyncio.IncompleteReadError:
        raise FetchError("truncated HTTP response") from None
    except asyncio.LimitOverrunError:
        raise FetchError("response headers too large") from None
    finally:
        writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";")[0].strip()
        if not size_text or len(size_text) > 8 or not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
            raise FetchError("bad chunked encoding")
        size = int(size_text, 16)
        if size == 0:
            return body
        if len(body) + size > MAX_POLICY_BYTES:
            raise FetchError("policy larger than 64 KiB")
        body += await reader.readexactly(size)
        await reader.readexactly(2)
