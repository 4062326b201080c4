"""`template create|list|show|render|delete` against the real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_util import CliRun


@pytest.fixture
def run(cli_run: CliRun) -> CliRun:
    cli_run("account", "create", "acme")
    cli_run("account", "create", "other")
    return cli_run


@pytest.fixture
def bodies(tmp_path: Path) -> tuple[str, str]:
    text, html = tmp_path / "t.txt", tmp_path / "t.html"
    text.write_text("Hi {{name}} & co\n", encoding="utf-8")
    html.write_text("<p>Hi {{name}}</p>\n", encoding="utf-8")
    return str(text), str(html)


def create(run: Any, bodies: tuple[str, str], *extra: str) -> dict[str, Any]:
    code, out, err = run("template", "create", "acme", "--name", "Welcome", "--subject", "Hello {{name}}",
                         "--category", "onboarding", "--text-file", bodies[0], "--html-file", bodies[1],
                         *extra, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_create_list_show_render_delete(run: Any, bodies: tuple[str, str]) -> None:
    t = create(run, bodies)
    assert {k: t[k] for k in ("name", "subject", "category", "body_text", "body_html")} == {
        "name": "Welcome", "subject": "Hello {{name}}", "category": "onboarding",
        "body_text": "Hi {{name}} & co\n", "body_html": "<p>Hi {{name}}</p>\n"}
    assert set(t) == {"id", "uuid", "name", "subject", "category", "body_text", "body_html", "created_at",
                      "updated_at"}

    code, out, _ = run("template", "list", "acme", "--json")
    assert code == 0 and [x["uuid"] for x in json.loads(out)] == [t["uuid"]]
    code, out, _ = run("template", "list", "acme")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "UUID", "NAME", "SUBJECT", "CATEGORY", "UPDATED_AT"]
    assert lines[1].split()[:3] == [str(t["id"]), t["uuid"], "Welcome"]
    assert run("template", "list", "other")[1] == "(none)\n"

    for key in (str(t["id"]), t["uuid"]):
        code, out, _ = run("template", "show", "acme", key, "--json")
        assert code == 0 and json.loads(out) == t
    code, out, _ = run("template", "show", "acme", str(t["id"]))
    assert "--- body_html ---\n<p>Hi {{name}}</p>\n" in out

    code, out, err = run("template", "render", "acme", t["uuid"], "--variables", '{"name": "<Ann>"}', "--json")
    assert code == 0, err
    assert json.loads(out) == {"subject": "Hello <Ann>", "text": "Hi <Ann> & co\n", "html": "<p>Hi &lt;Ann&gt;</p>\n",
                               "category": "onboarding", "template_id": t["id"]}

    code, out, _ = run("template", "delete", "acme", t["uuid"])
    assert (code, out) == (0, f"deleted template {t['id']} ({t['uuid']}) 'Welcome'\n")
    assert run("template", "list", "acme")[1] == "(none)\n"


@pytest.mark.parametrize(("args", "error"), [
    (["--subject", "{{#if x}}"], "mailtrap-smtp: subject line 1: {{#if}} is never closed with {{/if}}\n"),
    (["--name", " "], "mailtrap-smtp: name can't be blank\n"),
    (["--category", "c" * 256], "mailtrap-smtp: category is too long (maximum is 255 characters)\n"),
    (["--text-file", "/nonexistent/t.txt"],
     "mailtrap-smtp: cannot read /nonexistent/t.txt: No such file or directory\n"),
])
def test_create_refusals_are_one_line_and_store_nothing(run: Any, args: list[str], error: str) -> None:
    base = {"--name": "n", "--subject": "s", "--category": "c"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    code, out, err = run("template", "create", "acme", *[x for kv in base.items() for x in kv])
    assert (code, out, err) == (1, "", error)
    assert run("template", "list", "acme")[1] == "(none)\n"


def test_create_refuses_a_broken_body_file(run: Any, tmp_path: Path) -> None:
    html = tmp_path / "b.html"
    html.write_text("<ul>\n{{#each items}}\n<li>{{this}}</li>\n", encoding="utf-8")
    code, _, err = run("template", "create", "acme", "--name", "n", "--subject", "s", "--category", "c",
                       "--html-file", str(html))
    assert (code, err) == (1, "mailtrap-smtp: body_html line 2: {{#each}} is never closed with {{/each}}\n")


@pytest.mark.parametrize("command", ["show", "delete", "render"])
@pytest.mark.parametrize("key", ["999", "8a7e0e0c-0000-4000-8000-000000000000", "not-a-uuid"])
def test_unknown_template(run: Any, bodies: tuple[str, str], command: str, key: str) -> None:
    create(run, bodies)
    code, out, err = run("template", command, "acme", key)
    assert (code, out, err) == (1, "", f"mailtrap-smtp: no template {key!r} in this account\n")
    assert len(json.loads(run("template", "list", "acme", "--json")[1])) == 1


def test_another_accounts_template_is_unknown(run: Any, bodies: tuple[str, str]) -> None:
    t = create(run, bodies)
    for command in ("show", "delete", "render"):
        code, _, err = run("template", command, "other", t["uuid"])
        assert (code, err) == (1, f"mailtrap-smtp: no template {t['uuid']!r} in this account\n")
    assert len(json.loads(run("template", "list", "acme", "--json")[1])) == 1


@pytest.mark.parametrize(("variables", "error"), [
    ("{nope", "mailtrap-smtp: --variables: not JSON: Expecting property name enclosed in double quotes: "
              "line 1 column 2 (char 1)\n"),
    ("[1]", "mailtrap-smtp: template_variables must be an object\n"),
])
def test_render_refusals(run: Any, bodies: tuple[str, str], variables: str, error: str) -> None:
    t = create(run, bodies)
    code, out, err = run("template", "render", "acme", str(t["id"]), "--variables", variables)
    assert (code, out, err) == (1, "", error)
