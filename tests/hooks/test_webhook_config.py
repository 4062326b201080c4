"""The [outbox] and [webhooks] configuration keys: defaults are Mailtrap's, bad values one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtrap_smtp import config


def test_defaults_are_mailtraps() -> None:
    w = config.load(None, environ={}).webhooks
    assert (w.batch_size, w.flush_seconds, w.timeout_seconds, w.retry_seconds, w.retry_limit,
            w.allow_private_targets) == (500, 30.0, 30.0, 300.0, 40, False)


@pytest.mark.parametrize(("text", "message"), [
    ("[webhooks]\nbatch_size = 501\n", "webhooks.batch_size: at most 500 (Mailtrap's limit), got 501"),
    ("[webhooks]\nbatch_size = 0\n", "webhooks.batch_size: must be positive, got 0"),
    ("[webhooks]\ntimeout_seconds = 0\n", "webhooks.timeout_seconds: must be positive, got 0.0"),
    ("[webhooks]\nretry_seconds = -1\n", "webhooks.retry_seconds: must be positive, got -1.0"),
    ("[webhooks]\nretry_limit = -1\n", "webhooks.flush_seconds and webhooks.retry_limit: must not be negative"),
    ("[webhooks]\nflush_seconds = -0.5\n", "webhooks.flush_seconds and webhooks.retry_limit: must not be negative"),
    ("[webhooks]\nallow_private_targets = \"yes\"\n",
     "webhooks.allow_private_targets: expected true or false, got 'yes'"),
    ("[outbox]\nconcurrency = 0\n", "outbox.concurrency: must be positive, got 0"),
    ("[outbox]\npoll_seconds = 0\n", "outbox.poll_seconds: must be positive, got 0.0"),
    ("[outbox]\nlease_seconds = 30\n", "outbox.lease_seconds: must be longer than webhooks.timeout_seconds"),
    ("[webhooks]\nnope = 1\n", "webhooks.nope: unknown key"),
])
def test_bad_values_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as e:
        config.load(p, environ={})
    assert str(e.value) == message


def test_environment_overrides() -> None:
    cfg = config.load(None, environ={"MAILTRAP_SMTP_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
                                     "MAILTRAP_SMTP_WEBHOOKS__FLUSH_SECONDS": "0"})
    assert (cfg.webhooks.allow_private_targets, cfg.webhooks.flush_seconds) == (True, 0.0)
