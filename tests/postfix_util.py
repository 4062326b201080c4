"""A real Postfix (Debian's) on loopback for tests: a private instance with its own config, queue and
log in a temporary directory. A pytest plugin (tests/conftest.py `pytest_plugins`): the `postfix`
fixture gives one not yet started; `start(main_cf)` adds the test's own main.cf lines to the base.

Used as the recipient's MTA that bounces (test_inbound_postfix.py) and as an MX that offers
CHUNKING, or not, relaying what it receives to the tests' MX sink (test_delivery_bdat.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mx_sink import free_port

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None)
needs_postfix = pytest.mark.skipif(POSTFIX is None or os.geteuid() != 0,
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

_BASE_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
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
smtp_dns_support_level = disabled
maillog_file = {log}
maillog_file_prefixes = {root}
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

    def start(self, main_cf: str) -> None:
        """Start with the base main.cf plus `main_cf` (the test's own parameters)."""
        self.conf.mkdir()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        (self.conf / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        (self.conf / "main.cf").write_text(_BASE_MAIN_CF.format(root=self.root, log=self.log) + main_cf)
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
        if pf.conf.exists():
            pf.stop()
        if os.environ.get("MTS_KEEP_POSTFIX"):
            print(f"postfix directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def relaying_main_cf(sink_port: int, extra: str = "") -> str:
    """main.cf lines for a Postfix that accepts mail for dest.test and relays it, headers untouched,
    to the test server on `sink_port`; `extra`: the test's own lines (e.g. `smtputf8_enable = no`)."""
    return f"""\
relay_domains = dest.test
smtpd_reject_unlisted_recipient = no
transport_maps = inline:{{ dest.test=smtp:[127.0.0.1]:{sink_port} }}
smtp_tls_security_level = none
# Headers of mail from other hosts are left as they are (no canonical rewriting of addresses).
local_header_rewrite_clients =
{extra}
"""
