"""A real Postfix (Debian's) as the recipient's MTA: it accepts, then bounces, and its DSN travels
over SMTP (STARTTLS) to our inbound listener and becomes a `bounce` event; a bounce to a forged
return path is refused at RCPT and changes nothing.

Postfix runs as a private instance on loopback (its own config, queue and log in a temporary
directory): `relay_domains = dest.test` so it accepts the message, the `error` transport for
dest.test so it then bounces it (RFC 3464 DSN, as for any recipient it cannot deliver), and a
transport map entry sending mail for the return-path host to our listener.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, event_list, states, wait_for
from tests.inbound_util import Inbound, enqueue_from_domain
from tests.mx_sink import free_port

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None)
pytestmark = pytest.mark.skipif(POSTFIX is None or os.geteuid() != 0,
                                reason="needs Debian's postfix and root (.ci/run installs it)")

_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.conf = root / "conf"
        self.log = root / "maillog"

    def _run(self, *args: str) -> None:
        assert POSTFIX is not None
        subprocess.run([POSTFIX, "-c", str(self.conf), *args], check=True, timeout=60,
                       capture_output=True)

    def start(self, inbound_port: int) -> None:
        self.conf.mkdir()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        (self.conf / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = dest.test
# Accept first (no RCPT-time check of the error transport), bounce afterwards.
smtpd_reject_unlisted_recipient = no
transport_maps = inline:{{ {{dest.test = error:5.1.1 User unknown in virtual mailbox table}},
    mt7q2x.src.test=smtp:[127.0.0.1]:{inbound_port} }}
smtp_dns_support_level = disabled
smtp_tls_security_level = may
smtp_tls_loglevel = 1
delay_warning_time = 0
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
""")
        self._run("set-permissions")
        self._run("start")

    def stop(self) -> None:
        try:
            self._run("stop")
        except (subprocess.SubprocessError, OSError):
            self._run("abort")

    def logged(self, text: str) -> bool:
        return self.log.exists() and text in self.log.read_text(errors="replace")


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    # Not under pytest's tmp_path: its 0700 parents would keep the postfix user out of the queue.
    root = Path(tempfile.mkdtemp(prefix="mts-postfix-", dir="/tmp"))
    root.chmod(0o755)
    pf = Postfix(root, free_port())
    try:
        yield pf
    finally:
        pf.stop()
        if os.environ.get("MTS_KEEP_POSTFIX"):
            print(f"postfix directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def test_postfix_bounce_becomes_a_bounce_event(make_config: Any, pool: asyncpg.Pool[Any],
                                                     inbound: Inbound, postfix: Postfix) -> None:
    postfix.start(inbound.port)
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": f"127.0.0.1:{postfix.port}"}},
                      inbound={"listeners": [f"127.0.0.1:{inbound.port}"]})
    mid = await enqueue_from_domain(pool, ["nobody@dest.test"])
    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    assert await states(pool, mid) == {"nobody@dest.test": "delivered"}  # Postfix said 250, then bounced

    async def bounce() -> Any:
        return [e for e in await event_list(pool, mid) if e[0] == "bounce"]

    ((_, rcpt, details),) = await wait_for(bounce, timeout=60, interval=0.2)
    assert rcpt == "nobody@dest.test"
    assert details["source"] == "inbound" and details["format"] == "rfc3464"
    assert details["status"] == "5.1.1" and details["category"] == "bad_recipient"
    assert details["final_recipient"] == "nobody@dest.test" and details["remote_mta"] == "postfix.test"
    assert "User unknown in virtual mailbox table" in details["diagnostic"]
    assert postfix.logged(f"TLS connection established to 127.0.0.1[127.0.0.1]:{inbound.port}")


async def test_postfix_bounce_to_forged_return_path_changes_nothing(make_config: Any, pool: asyncpg.Pool[Any],
                                                                    inbound: Inbound,
                                                                    postfix: Postfix) -> None:
    import smtplib

    postfix.start(inbound.port)
    forged = inbound.verp[:-len("@mt7q2x.src.test") - 1] + "q@mt7q2x.src.test"
    if forged == inbound.verp:
        forged = inbound.verp[:-len("@mt7q2x.src.test") - 1] + "a@mt7q2x.src.test"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as s:
        s.sendmail(forged, ["nobody@dest.test"], b"Subject: x\r\n\r\nforged\r\n")
    await wait_for(lambda: postfix.logged("550 5.1.1 No such user here"), timeout=60, interval=0.2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type <> 'reception'") == 0
