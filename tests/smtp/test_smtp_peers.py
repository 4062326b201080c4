"""The per-IP connection count shared by the processes of one `serve` (smtp/peers.py)."""

from __future__ import annotations

import multiprocessing
from typing import Any

from mailtrap_smtp.smtp import peers
from mailtrap_smtp.smtp.peers import Admission, PeerTable, WindowTable


def test_cap_per_address() -> None:
    table = PeerTable()
    assert [table.enter("192.0.2.1", 2) for _ in range(3)] == [
        Admission.COUNTED, Admission.COUNTED, Admission.REFUSED]
    assert table.enter("192.0.2.2", 2) is Admission.COUNTED  # another address is not affected
    assert table.enter("::ffff:192.0.2.1", 2) is Admission.REFUSED  # the same address, mapped
    assert table.enter("2001:db8::1", 2) is Admission.COUNTED
    table.leave("192.0.2.1")
    assert table.count("192.0.2.1") == 1
    assert table.enter("192.0.2.1", 2) is Admission.COUNTED
    for _ in range(2):
        table.leave("192.0.2.1")
    table.leave("192.0.2.1")  # one too many: never below zero
    assert table.count("192.0.2.1") == 0
    assert table.enter("192.0.2.1", 1) is Admission.COUNTED


def test_full_bucket_lets_in_untracked(monkeypatch: Any) -> None:
    monkeypatch.setattr(peers, "BUCKETS", 1)  # every address in one bucket of WAYS entries
    table = PeerTable()
    ips = [f"198.51.100.{i}" for i in range(peers.WAYS)]
    assert all(table.enter(ip, 5) is Admission.COUNTED for ip in ips)
    assert table.enter("203.0.113.9", 5) is Admission.UNTRACKED
    assert table.enter(ips[0], 5) is Admission.COUNTED  # known addresses are still counted
    table.leave(ips[1])
    assert table.enter("203.0.113.9", 5) is Admission.COUNTED  # a freed entry is reused


def _run_in_two_processes(target: Any, shared: Any, n: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=target, args=(shared, n)) for _ in range(2)]
    for c in children:
        c.start()
    for c in children:
        c.join(30)
        assert c.exitcode == 0


def _child_enters(shared: Any, n: int) -> None:
    table = PeerTable(shared)
    for _ in range(n):
        table.enter("192.0.2.7", 100)


def test_count_is_shared_between_processes() -> None:
    shared = PeerTable.shared()
    _run_in_two_processes(_child_enters, shared, 25)
    table = PeerTable(shared)
    assert table.count("192.0.2.7") == 50
    assert table.enter("192.0.2.7", 50) is Admission.REFUSED


def test_failure_window_opens_at_the_first_failure() -> None:
    now = [1000.0]
    table = WindowTable(3, 60.0, clock=lambda: now[0])
    for _ in range(2):
        table.record("192.0.2.1")
    assert not table.blocked("192.0.2.1")
    now[0] += 30
    table.record("192.0.2.1")
    assert table.blocked("192.0.2.1") and not table.blocked("192.0.2.2")
    now[0] += 29.9  # still inside the window that opened at the first failure
    assert table.blocked("192.0.2.1")
    now[0] += 0.2
    assert not table.blocked("192.0.2.1")
    table.record("192.0.2.1")  # a new window, counted from one
    assert not table.blocked("192.0.2.1")


def _child_fails(shared: Any, n: int) -> None:
    table = WindowTable(10, 600.0, shared)
    for _ in range(n):
        table.record("203.0.113.5")


def test_failures_are_shared_between_processes() -> None:
    shared = WindowTable.shared()
    _run_in_two_processes(_child_fails, shared, 5)
    assert WindowTable(10, 600.0, shared).blocked("203.0.113.5")
    assert not WindowTable(11, 600.0, shared).blocked("203.0.113.5")
