"""The operator's password and view (issue 15): set with `mailtrap-smtp dashboard set-password`
(only a scrypt hash kept, mode 0600), logged in with at the dashboard, the view of every account;
account pages are not the operator's, the operator page not an account admin's; a new or cleared
password ends the sessions opened with the old one."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli
from mailtrap_smtp.core import operator_password
from tests.dashboard_util import csrf_of, login
from tests.http_util import ApiEnv
from tests.smtp_util import create_account

PASSWORD = "correct horse battery staple"


def _cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(["-c", str(tmp_path / "config.toml"), "dashboard", *args])


async def _login(env: ApiEnv, secret: str) -> tuple[Any, Any]:
    client = env.client()
    page = await client.get("/dashboard/login")
    return client, await client.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": secret})


async def test_set_password_keeps_only_a_private_hash(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(monkeypatch, tmp_path, "set-password", stdin=PASSWORD + "\n") == 0
    path = operator_password.path_for(api.cfg)
    assert capsys.readouterr().out == f"operator password set ({path}); sessions opened with a previous one are ended\n"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert PASSWORD.encode() not in path.read_bytes() and b'"scheme": "scrypt"' in path.read_bytes()


@pytest.mark.parametrize("given", ["short", "x" * 1025, ""])
async def test_set_password_refused(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], given: str) -> None:
    assert _cli(monkeypatch, tmp_path, "set-password", stdin=given + "\n") == 1
    assert "the operator password must be 12 to 1024 characters" in capsys.readouterr().err
    assert not operator_password.path_for(api.cfg).exists()


async def test_operator_sees_every_account(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await create_account(api.pool, "globex", domain="globex.test")
    assert _cli(monkeypatch, tmp_path, "set-password", stdin=PASSWORD + "\n") == 0
    client, r = await _login(api, PASSWORD)
    try:
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/operator")
        page = await client.get("/dashboard/operator")
        assert page.status_code == 200
        for text in ("<td>acme</td>", "<td>globex</td>", "<td>example.com</td>", "<td>globex.test</td>"):
            assert text in page.text
        account_page = await client.get("/dashboard/domains")  # the operator has no account of its own
        assert (account_page.status_code, account_page.headers["location"]) == (303, "/dashboard/operator")
    finally:
        await client.aclose()


async def test_an_account_admin_has_no_operator_page(api: ApiEnv) -> None:
    client = await login(api, await api.new_token(level="admin"))
    r = await client.get("/dashboard/operator")
    await client.aclose()
    assert r.status_code == 404


@pytest.mark.parametrize("given", ["wrong horse battery staple", PASSWORD + " ", "", "mts_00000000_" + "a" * 32])
async def test_wrong_password_refused(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      given: str) -> None:
    assert _cli(monkeypatch, tmp_path, "set-password", stdin=PASSWORD + "\n") == 0
    client, r = await _login(api, given)
    await client.aclose()
    assert r.status_code == 401 and "nor the operator password" in r.text and "mts_dash" not in r.cookies


async def test_no_password_set_no_operator_login(api: ApiEnv) -> None:
    client, r = await _login(api, PASSWORD)
    await client.aclose()
    assert r.status_code == 401


@pytest.mark.parametrize("change", ["set-password", "clear-password"])
async def test_a_new_or_cleared_password_ends_sessions(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       change: str) -> None:
    assert _cli(monkeypatch, tmp_path, "set-password", stdin=PASSWORD + "\n") == 0
    client, r = await _login(api, PASSWORD)
    try:
        assert (await client.get("/dashboard/operator")).status_code == 200
        assert _cli(monkeypatch, tmp_path, change, stdin="another long password\n") == 0
        r = await client.get("/dashboard/operator")
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    finally:
        await client.aclose()
