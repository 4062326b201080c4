"""Per-client state shared by the processes of one `serve`: live connections, new connections per
minute (Postfix anvil's `smtpd_client_connection_rate_limit`) and AUTH failures.

`serve --processes N` runs N processes on the same ports (SO_REUSEPORT), and the kernel spreads a
client's connections over them, so per-process counts would let one IP hold N times
`limits.connections_per_ip` connections, open N times `limits.connection_rate_per_ip` a minute and
make N times `limits.auth_failures_per_ip` guesses. The tables live in shared memory that the
parent creates before it starts the processes (`shared()`), each guarded by an inter-process lock;
a connect, disconnect or failed AUTH is a few microseconds under it. (Across nodes the limits are
per node, like Postfix's anvil.)

Layout: `BUCKETS` buckets of `WAYS` entries, each entry starting with the key as 16 bytes (an IPv4
address as an IPv4-mapped IPv6 address; any other key, e.g. "IP/token id", as a BLAKE2b digest).
The bucket is chosen with CRC-32, which, unlike `hash()`, is the same in every process. A bucket
whose entries are all in use cannot track one more key: that client is let in uncounted rather
than refused for a stranger's traffic; with 4096 x 8 entries that takes thousands of concurrent
clients.

Each process also keeps, in a ledger of its own in the same shared memory, how many of each
`PeerTable` entry's connections are its own, so that when one dies (kill -9, the OOM killer) the
parent takes exactly its share out of the counts (`forget_process`) before starting its
replacement; the connections of the other processes stay counted.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import multiprocessing
import struct
import time
import zlib
from typing import Any

BUCKETS = 4096
WAYS = 8
_ENTRY = struct.Struct("=16si")  # address, live connections (0: the entry is free)
_FAILURES = struct.Struct("=16sid")  # address, failures, CLOCK_MONOTONIC start of the window


class Admission(enum.Enum):
    COUNTED = "counted"        # let in and counted: call `leave` when it ends
    REFUSED = "refused"        # the address is at its cap
    UNTRACKED = "untracked"    # let in, not counted (bucket full): do not call `leave`


def _shared(entry_size: int) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    return ctx.RawArray("B", BUCKETS * WAYS * entry_size), ctx.Lock()


def _bucket(key: bytes, entry_size: int) -> int:
    return (zlib.crc32(key) % BUCKETS) * WAYS * entry_size


def _key(ip: str) -> bytes:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:  # not an IP (a Unix socket peer, or "IP/token id"): a stable 16-byte digest
        return hashlib.blake2b(ip.encode(), digest_size=16).digest()
    if isinstance(addr, ipaddress.IPv4Address):
        return bytes(10) + b"\xff\xff" + addr.packed
    return addr.packed


def brake_key(ip: str, public_id: str | None) -> str:
    """The AUTH-failure key: the token's public id with the IP, so that an app with a valid token
    behind the same NAT as a guesser keeps working; the IP alone when the id is unknown."""
    return ip if public_id is None else f"{ip}/{public_id}"


SharedState = tuple[tuple[Any, Any], tuple[Any, Any], tuple[Any, Any], Any]


def shared_state(processes: int = 1) -> SharedState:
    """The memory the tables use (live connections, AUTH failures, connection rate), created by the
    parent of several processes and passed to each; the fourth part is the per-process ledger of
    `PeerTable` (one count per entry per process)."""
    ledger = multiprocessing.get_context("spawn").RawArray("i", BUCKETS * WAYS * max(1, processes))
    return PeerTable.shared(), WindowTable.shared(), WindowTable.shared(), ledger


def forget_process(shared: SharedState, index: int) -> None:
    """Take the connections that process `index` counted out of the shared counts (it died)."""
    (memory, lock), _, _, ledger = shared
    PeerTable((memory, lock), ledger=ledger, index=index).forget_own()


class PeerTable:
    """Live connections per client IP."""

    def __init__(self, shared: tuple[Any, Any] | None = None, *, ledger: Any = None, index: int = 0) -> None:
        memory, lock = shared if shared is not None else _shared(_ENTRY.size)
        self._memory = memoryview(memory).cast("B")
        self._lock = lock
        # This process's share of each entry's count (see the module docstring), or None.
        entries = BUCKETS * WAYS
        self._own = memoryview(ledger).cast("B").cast("i")[index * entries:(index + 1) * entries] \
            if ledger is not None else None

    def _mine(self, off: int, delta: int) -> None:
        if self._own is not None:
            self._own[off // _ENTRY.size] += delta

    def forget_own(self) -> None:
        """Subtract this process's share from every entry and zero the share."""
        if self._own is None:
            return
        with self._lock:
            for entry, mine in enumerate(self._own):
                if mine:
                    off = entry * _ENTRY.size
                    addr, count = _ENTRY.unpack_from(self._memory, off)
                    _ENTRY.pack_into(self._memory, off, addr, max(0, count - mine))
                    self._own[entry] = 0

    @staticmethod
    def shared() -> tuple[Any, Any]:
        """Shared memory and its lock, to hand to child processes (spawn) as arguments."""
        return _shared(_ENTRY.size)

    def enter(self, ip: str, cap: int) -> Admission:
        key = _key(ip)
        base = _bucket(key, _ENTRY.size)
        mem = self._memory
        with self._lock:
            free = -1
            for way in range(WAYS):
                off = base + way * _ENTRY.size
                addr, count = _ENTRY.unpack_from(mem, off)
                if count > 0 and addr == key:
                    if count >= cap:
                        return Admission.REFUSED
                    _ENTRY.pack_into(mem, off, key, count + 1)
                    self._mine(off, 1)
                    return Admission.COUNTED
                if count <= 0 and free < 0:
                    free = off
            if cap <= 0:
                return Admission.REFUSED
            if free < 0:
                return Admission.UNTRACKED
            _ENTRY.pack_into(mem, free, key, 1)
            self._mine(free, 1)
            return Admission.COUNTED

    def _live(self, key: bytes) -> tuple[int, int]:
        """(offset, count) of the address's entry, or (-1, 0); call with the lock held."""
        base = _bucket(key, _ENTRY.size)
        for way in range(WAYS):
            off = base + way * _ENTRY.size
            addr, count = _ENTRY.unpack_from(self._memory, off)
            if count > 0 and addr == key:
                return off, int(count)
        return -1, 0

    def leave(self, ip: str) -> None:
        key = _key(ip)
        with self._lock:
            off, count = self._live(key)
            if off >= 0:
                _ENTRY.pack_into(self._memory, off, key, count - 1)
                self._mine(off, -1)

    def count(self, ip: str) -> int:
        key = _key(ip)
        with self._lock:
            return self._live(key)[1]


class WindowTable:
    """Events per key (a client IP, or "IP/token id") in a window of `window` seconds that opens at
    the key's first event: AUTH failures, new connections.

    A fixed window rather than a sliding one, so that an entry is three numbers: a key blocked
    after `max_failures` events stays blocked until `window` seconds after its first one, and
    the count then starts again from zero.
    """

    def __init__(self, max_failures: int, window: float, shared: tuple[Any, Any] | None = None,
                 clock: Any = time.monotonic) -> None:
        memory, lock = shared if shared is not None else _shared(_FAILURES.size)
        self._memory = memoryview(memory).cast("B")
        self._lock = lock
        self._max = max_failures
        self._window = window
        self._clock = clock

    @staticmethod
    def shared() -> tuple[Any, Any]:
        return _shared(_FAILURES.size)

    def blocked(self, ip: str) -> bool:
        key = _key(ip)
        base = _bucket(key, _FAILURES.size)
        now = self._clock()
        with self._lock:
            for way in range(WAYS):
                addr, count, start = _FAILURES.unpack_from(self._memory, base + way * _FAILURES.size)
                if count > 0 and addr == key and now - start < self._window:
                    return bool(count >= self._max)
        return False

    def record(self, ip: str) -> None:
        self.hit(ip, cap=False)

    def hit(self, ip: str, *, cap: bool = True) -> bool:
        """Count one event; True if the key was already at its limit (with `cap`, then not counted,
        so a refused flood does not extend its own count)."""
        key = _key(ip)
        base = _bucket(key, _FAILURES.size)
        mem = self._memory
        now = self._clock()
        with self._lock:
            free = -1
            for way in range(WAYS):
                off = base + way * _FAILURES.size
                addr, count, start = _FAILURES.unpack_from(mem, off)
                live = count > 0 and now - start < self._window
                if live and addr == key:
                    over = bool(count >= self._max)
                    if not (over and cap):
                        _FAILURES.pack_into(mem, off, key, count + 1, start)
                    return over
                if not live and (free < 0 or addr == key):
                    free = off  # an expired entry of this address, or any free one
            if free >= 0:
                _FAILURES.pack_into(mem, free, key, 1, now)
            return self._max <= 0
