"""The mailbox rule (`mailbox.py`) as a pure function: one case per input, no sockets."""

from __future__ import annotations

import pytest

from mailtrap_smtp.mailbox import Problem, a_label, local_part_is_ascii, problem

CASES: list[tuple[str, bool, Problem | None]] = [
    ("user@dest.test", False, None),
    ("user@dest.test", True, None),
    ('"quoted user"@dest.test', False, None),
    ("user@[192.0.2.1]", False, None),
    ("j\u00f6rg@dest.test", False, Problem.NEEDS_SMTPUTF8),
    ("user@b\u00fccher.test", False, Problem.NEEDS_SMTPUTF8),
    ("j\u00f6rg@dest.test", True, None),
    ("user@b\u00fccher.test", True, None),
    ("\u7528\u6237@\u4f8b\u5b50.test", True, None),
    ('"j\u00f6 rg"@dest.test', True, None),
    ("a" * 64 + "@dest.test", False, None),
    ("a" * 65 + "@dest.test", False, Problem.TOO_LONG),
    ("\u00e9" * 32 + "@dest.test", True, None),                 # 64 octets
    ("\u00e9" * 33 + "@dest.test", True, Problem.TOO_LONG),     # 33 characters, 66 octets
    ("a@" + ".".join(["b" * 63] * 3) + "." + "c" * 60, False, None),  # 254 octets in all
    ("a@" + ".".join(["b" * 63] * 3) + "." + "c" * 61, False, Problem.TOO_LONG),
    ("\u00e9@" + ".".join(["b" * 63] * 3) + "." + "c" * 60, True, Problem.TOO_LONG),  # 254 chars, 255 octets
    ("\ud800@dest.test", True, Problem.SYNTAX),                 # a lone surrogate (JSON can carry one)
    ("a\u0085b@dest.test", True, Problem.SYNTAX),               # C1 control
    ("a\u200bb@dest.test", True, Problem.SYNTAX),               # format character
    ("a\u200cb@dest.test", True, None),                         # ZWNJ, needed by some scripts
    ("user@a\u200c.test", True, Problem.SYNTAX),                # ... but not out of context in a domain
    ("a\u00a0b@dest.test", True, Problem.SYNTAX),
    ("user@i\u2665.test", True, Problem.SYNTAX),
    ("user@a\u05d0.test", True, Problem.SYNTAX),
    ("user@[b\u00fccher]", True, Problem.SYNTAX),
    ("user@dest..test", True, Problem.SYNTAX),
    ("j\u00f6.@dest.test", True, Problem.SYNTAX),
    ("@dest.test", True, Problem.SYNTAX),
    ("user@", True, Problem.SYNTAX),
    ("user", True, Problem.SYNTAX),
]


@pytest.mark.parametrize(("address", "utf8", "expected"), CASES, ids=[f"{c[0][:30]!r}-{c[1]}" for c in CASES])
def test_problem(address: str, utf8: bool, expected: Problem | None) -> None:
    assert problem(address, utf8=utf8) is expected


@pytest.mark.parametrize(("domain", "expected"), [
    ("B\u00fccher.Test", "xn--bcher-kva.test"),
    ("XN--BCHER-KVA.test", "xn--bcher-kva.test"),
    ("b\u00fccher.test.", "xn--bcher-kva.test"),
    ("fa\u00df.de", "xn--fa-hia.de"),       # IDNA 2008 keeps ß, as domains.normalize_domain does
    ("i\u2665.test", "i\u2665.test"),       # not convertible: lower-cased, matches no A-label
])
def test_a_label(domain: str, expected: str) -> None:
    assert a_label(domain) == expected


def test_only_the_local_part_decides_smtputf8() -> None:
    assert local_part_is_ascii("info@b\u00fccher.test") and not local_part_is_ascii("j\u00f6rg@dest.test")
