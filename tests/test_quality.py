"""ruff and mypy are part of the suite: a lint or type error fails the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def test_ruff() -> None:
    r = subprocess.run([_tool("ruff"), "check", "mailtrap_smtp", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    r = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_package_runs_without_the_dev_only_libraries() -> None:
    """aiosmtpd and dkimpy are dev dependencies (tests, bench): importing every module of the package
    with both made unimportable must work."""
    code = (
        "import importlib, pkgutil, sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('aiosmtpd', 'dkim'):\n"
        "            raise ImportError(f'{name} is a dev-only library')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import mailtrap_smtp\n"
        "names = [m.name for m in pkgutil.walk_packages(mailtrap_smtp.__path__, 'mailtrap_smtp.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout) > 40  # every module was imported, not an empty walk


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in util modules: a test module imported by another would run its tests
    twice under another name, and breaks as soon as either moves to another folder."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert offenders == []
