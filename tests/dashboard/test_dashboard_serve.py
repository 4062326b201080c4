"""What `make serve` prints for the dashboard works: dev-setup, `serve --role http --processes 2`,
then the printed address opened and the printed admin token logged in with, over the development
certificate; the session cookie is honoured on fresh connections, which SO_REUSEPORT spreads over
both processes (the session is sealed with the shared key, not kept in a process)."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard_util import csrf_of
from tests.paths import ROOT
from tests.serve_util import free_port, printed_block, wait_port_blocking


@pytest.mark.timeout(120)
def test_printed_dashboard_address_and_token_log_in(make_config: Any, tmp_path: Path) -> None:
    port = free_port()
    cert = tmp_path / "dev" / "cert.pem"
    make_config(tls={"cert_file": str(cert), "key_file": str(tmp_path / "dev" / "key.pem")},
                http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "host"}]})
    config = str(tmp_path / "config.toml")
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "mailtrap_smtp", "-c", config, "dev-setup"], cwd=root,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    address = printed_block(out, "The dashboard").strip()
    admin = printed_block(out, "Log in with this admin token").strip()
    send_token = out.split("only its digest is stored):\n\n    ", 1)[1].split("\n", 1)[0]
    assert address == f"https://127.0.0.1:{port}/dashboard/" and admin.startswith("mts_") and admin != send_token
    proc = subprocess.Popen([sys.executable, "-m", "mailtrap_smtp", "-c", config, "serve", "--role", "http",
                             "--processes", "2"], cwd=root, stderr=subprocess.PIPE)
    try:
        wait_port_blocking(port, proc)
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, timeout=30) as c:
            login = c.get(address, follow_redirects=True)
            assert login.status_code == 200 and str(login.url).endswith("/dashboard/login")
            refused = c.post(str(login.url), data={"csrf": csrf_of(login.text), "token": send_token})
            assert refused.status_code == 401  # the send token is no admin token
            page = c.get(str(login.url))
            done = c.post(str(login.url), data={"csrf": csrf_of(page.text), "token": admin}, follow_redirects=False)
            assert (done.status_code, done.headers["location"]) == (303, "/dashboard/")
            session = c.cookies["mts_dash"]
        for _ in range(12):  # fresh connections: both processes answer some
            with httpx.Client(verify=trust, timeout=30, cookies={"mts_dash": session}) as fresh:
                r = fresh.get(address + "domains")
                assert r.status_code == 200 and "example.com" in r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
