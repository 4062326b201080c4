"""Benchmark: mailtrap_smtp.dkim.sign vs dkimpy's dkim.sign.

Run from the repository root:  python bench/dkim_sign.py

For RSA-2048 and Ed25519 keys and for 10 KiB and 5 MiB messages, measures the
median wall time of one signature made by our ``sign`` (key parsed once,
cryptography/OpenSSL for the public-key step, fast relaxed body
canonicalisation) and by plain ``dkim.sign`` from dkimpy with the same key,
the same h= list and c=relaxed/relaxed.  The two are timed alternately in
the same run so machine noise affects both alike.  Prints one JSON line.

dkimpy needs PyNaCl for Ed25519; without it the Ed25519 rows report
``"dkimpy_ms": null``.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization

from mailtrap_smtp.dkim import SigningKey, generate_key, sign

DOMAIN = "example.com"
SIZES = (10 * 1024, 5 * 1024 * 1024)
# Repetitions per (algorithm, size); 5 MB dkimpy runs take ~0.1-0.5 s each.
REPS = {SIZES[0]: 41, SIZES[1]: 7}

HEADERS = (
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Your monthly statement\r\n"
    b"Date: Thu, 26 Nov 2026 06:00:00 +0000\r\n"
    b"Message-ID: <bench-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
)


def make_message(size: int) -> bytes:
    """A realistic multipart message of exactly *size* bytes: text part + base64 attachment."""
    rng = random.Random(size)
    words = [b"the", b"statement", b"balance", b"payment", b"due", b"account", b"please", b"review"]
    text = b"\r\n".join(
        b" ".join(rng.choice(words) for _ in range(rng.randint(6, 12))) + (b"  " if i % 7 == 0 else b"")
        for i in range(60)
    )
    head = (
        HEADERS
        + b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text
        + b"\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    tail = b"--b1--\r\n"
    lines: list[bytes] = []
    remaining = size - len(head) - len(tail)
    while remaining >= 2 * 78:
        line = base64.b64encode(rng.randbytes(57))  # 76 chars, as MIME encoders emit
        lines.append(line)
        remaining -= len(line) + 2
    # Two shorter lines make the message exactly *size* bytes.
    first = remaining // 2 - 2
    lines += [b"Q" * first, b"Q" * (remaining - first - 4)]
    msg = head + b"\r\n".join(lines) + b"\r\n" + tail
    assert len(msg) == size, (len(msg), size)
    return msg


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def run_one(alg: str, size: int) -> dict[str, object]:
    """Time ours vs dkimpy for one (algorithm, size), alternating, in this process."""
    have_nacl = True
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        have_nacl = False

    pem, _pub = generate_key(alg)
    key = SigningKey.from_pem(DOMAIN, "bench", alg, pem)
    if alg == "rsa-sha256":
        dkimpy_key = pem
    else:
        # dkimpy takes an Ed25519 key as the base64 of the 32-byte seed.
        raw = key.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        dkimpy_key = base64.b64encode(raw)
    msg = make_message(size)
    ours_sig = sign(msg, [key])
    # Give dkimpy exactly our h= list (including the over-signed From).
    h_value = ours_sig.split(b"h=", 1)[1].split(b";", 1)[0]
    include = [x.strip() for x in h_value.replace(b"\r\n", b"").split(b":")]

    def ours() -> bytes:
        return sign(msg, [key])

    def theirs() -> bytes:
        return bytes(
            dkimpy.sign(
                msg,
                b"bench",
                DOMAIN.encode(),
                dkimpy_key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=alg.encode(),
                include_headers=include,
            )
        )

    runners: list[tuple[str, Callable[[], bytes]]] = [("ours", ours)]
    if alg == "rsa-sha256" or have_nacl:
        runners.append(("dkimpy", theirs))
        # Sanity: both compute the same body hash (this also warms both up).
        theirs_bh = theirs().split(b"bh=", 1)[1].split(b";", 1)[0]
        ours_bh = ours_sig.split(b"bh=", 1)[1].split(b";", 1)[0]
        assert theirs_bh == ours_bh, (alg, size)

    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    for _ in range(REPS[size]):
        for name, fn in runners:  # alternate ours/dkimpy
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ours_ms = median_ms(times["ours"])
    dkimpy_ms = median_ms(times["dkimpy"]) if "dkimpy" in times else None
    return {
        "alg": alg,
        "size": len(msg),
        "ours_ms": ours_ms,
        "dkimpy_ms": dkimpy_ms,
        "speedup": round(dkimpy_ms / ours_ms, 1) if dkimpy_ms is not None and ours_ms else None,
        "reps": REPS[size],
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]))))
        return
    # Each configuration runs in a fresh interpreter: after dkimpy has
    # churned through hundreds of MB, the allocator's state made whichever
    # 5 MB configuration ran second ~50% slower for both contenders, so a
    # shared process would make the results depend on their order.
    results = []
    for alg in ("rsa-sha256", "ed25519-sha256"):
        for size in SIZES:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--one", alg, str(size)],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps({"bench": "dkim_sign", "results": results}, separators=(",", ":")))


if __name__ == "__main__":
    main()
