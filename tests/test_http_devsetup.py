"""What `make serve` prints for the API works as pasted: dev-setup against a config with an API
listener, `serve`, then the printed curl command and Python SDK call run by a shell, unchanged."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen")


def _block_after(out: str, heading: str) -> str:
    """The indented command printed after `heading`, as a shell would receive it when pasted."""
    lines = out.split(heading, 1)[1].split("\n")[2:]
    block = []
    for line in lines:
        if not line.strip():
            break
        block.append(line)
    return "\n".join(block)


@pytest.mark.timeout(120)
def test_printed_curl_and_sdk_commands_work(make_config: Any, tmp_path: Path) -> None:
    port = _free_port()
    make_config(tls={"cert_file": str(tmp_path / "dev" / "cert.pem"), "key_file": str(tmp_path / "dev" / "key.pem")},
                http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "host"}]})
    config = str(tmp_path / "config.toml")
    root = Path(__file__).resolve().parents[1]
    setup = subprocess.run([sys.executable, "-m", "mailtrap_smtp", "-c", config, "dev-setup"], cwd=root,
                           capture_output=True, text=True, timeout=60, check=True)
    out = setup.stdout
    curl = _block_after(out, "with curl:")
    sdk = _block_after(out, "with Mailtrap's Python SDK")
    assert curl.lstrip().startswith("curl --cacert") and "REQUESTS_CA_BUNDLE=" in sdk
    proc = subprocess.Popen([sys.executable, "-m", "mailtrap_smtp", "-c", config, "serve", "--role", "http",
                             "--processes", "1"], cwd=root, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
        sent = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        reply = json.loads(sent.stdout)
        assert reply["success"] is True and len(reply["message_ids"]) == 1
        sdk_run = subprocess.run(["bash", "-c", sdk], capture_output=True, text=True, timeout=60)
        assert sdk_run.returncode == 0, sdk_run.stderr
        assert sdk_run.stdout.startswith("{'success': True, 'message_ids': [")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
