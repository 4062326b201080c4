"""What `make serve` prints for the API works as pasted: dev-setup against a config with an API
listener, `serve`, then the printed curl command and Python SDK call run by a shell, unchanged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.paths import ROOT
from tests.serve_util import free_port, printed_block, wait_port_blocking


@pytest.mark.timeout(120)
def test_printed_curl_and_sdk_commands_work(make_config: Any, tmp_path: Path) -> None:
    port = free_port()
    make_config(tls={"cert_file": str(tmp_path / "dev" / "cert.pem"), "key_file": str(tmp_path / "dev" / "key.pem")},
                http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "host"}]})
    config = str(tmp_path / "config.toml")
    root = ROOT
    setup = subprocess.run([sys.executable, "-m", "mailtrap_smtp", "-c", config, "dev-setup"], cwd=root,
                           capture_output=True, text=True, timeout=60, check=True)
    out = setup.stdout
    curl = printed_block(out, "with curl:")
    sdk = printed_block(out, "with Mailtrap's Python SDK")
    assert curl.lstrip().startswith("curl --cacert") and "REQUESTS_CA_BUNDLE=" in sdk
    proc = subprocess.Popen([sys.executable, "-m", "mailtrap_smtp", "-c", config, "serve", "--role", "http",
                             "--processes", "1"], cwd=root, stderr=subprocess.PIPE)
    try:
        wait_port_blocking(port, proc)
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
