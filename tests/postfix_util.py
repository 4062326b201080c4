"""A private Debian Postfix on loopback for tests: its own config, queue and log in a temporary
directory, a transport map chosen by the test. A pytest plugin (tests/conftest.py
`pytest_plugins`): its fixture `postfix` needs no import.

`relay_domains = dest.test` makes it accept mail for dest.test; the transport map decides what it
then does with it (`error:` to bounce it, `smtp:[127.0.0.1]:PORT` to relay it to a test server).
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
# For test modules: `pytestmark = postfix_util.NEEDS_POSTFIX`.
NEEDS_POSTFIX = pytest.mark.skipif(POSTFIX is None or os.geteuid() != 0,
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

    def start(self, transports: dict[str, str], *, extra: str = "") -> None:
        """Run it: `transports` is its transport map (domain → `transport:nexthop`), `extra` more
        main.cf lines (e.g. `smtputf8_enable = no`)."""
        table = ", ".join(f"{{{domain} = {nexthop}}}" for domain, nexthop in transports.items())
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
transport_maps = inline:{{ {table} }}
smtp_dns_support_level = disabled
smtp_tls_security_level = may
smtp_tls_loglevel = 1
delay_warning_time = 0
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
{extra}
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
