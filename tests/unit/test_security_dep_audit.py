"""The dependency audit step of CI (.ci/dep_audit.py): the ignore file needs reasons, unlisted
vulnerabilities fail, and packages the service could not check are reported, not passed over."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("dep_audit", ROOT / ".ci" / "dep_audit.py")
assert _spec and _spec.loader
dep_audit = importlib.util.module_from_spec(_spec)
sys.modules["dep_audit"] = dep_audit
_spec.loader.exec_module(dep_audit)

REPORT = {"dependencies": [
    {"name": "aiohttp", "version": "3.14.5", "vulns": []},
    {"name": "oldlib", "version": "1.0", "vulns": [
        {"id": "PYSEC-2099-1", "fix_versions": ["1.1"], "aliases": ["CVE-2099-0001"], "description": "x"},
        {"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": [], "aliases": [], "description": "y"}]},
    {"name": "mirrored", "skip_reason": "Dependency not found on PyPI and could not be audited: mirrored (2.0)"},
]}


def test_the_shipped_ignore_file_parses_and_every_entry_has_a_reason() -> None:
    ignores = dep_audit.read_ignores((ROOT / ".ci" / "pip-audit-ignore.txt").read_text())
    assert all(len(reason) >= 10 for reason in ignores.values())


@pytest.mark.parametrize("text", ["PYSEC-2099-1\n", "PYSEC-2099-1   \n", "PYSEC-2099-1 ok\n", "!! bad id here\n"])
def test_an_entry_without_a_reason_is_refused(text: str) -> None:
    with pytest.raises(dep_audit.IgnoreFileError):
        dep_audit.read_ignores(text)


def test_unlisted_vulnerabilities_fail_and_listed_ones_are_shown_as_accepted() -> None:
    out = dep_audit.classify(REPORT, {})
    assert out.found == ["oldlib==1.0: PYSEC-2099-1 / CVE-2099-0001 (fixed in: 1.1)",
                         "oldlib==1.0: GHSA-aaaa-bbbb-cccc (fixed in: none yet)"]
    assert out.audited == 2
    assert out.unaudited == ["mirrored: Dependency not found on PyPI and could not be audited: mirrored (2.0)"]
    ignores = dep_audit.read_ignores("# accepted\nCVE-2099-0001  only reachable through the CLI we never call\n")
    out = dep_audit.classify(REPORT, ignores)  # matched through the alias
    assert out.ignored == ["oldlib==1.0: PYSEC-2099-1: only reachable through the CLI we never call"]
    assert out.found == ["oldlib==1.0: GHSA-aaaa-bbbb-cccc (fixed in: none yet)"]


def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, report: dict[str, Any] | None,
             strict: bool = False, ignores: str = "") -> int:
    monkeypatch.setattr(dep_audit, "run_pip_audit", lambda req: (report, "ConnectionError: no route"))
    if strict:
        monkeypatch.setenv("DEP_AUDIT_STRICT", "1")
    else:
        monkeypatch.delenv("DEP_AUDIT_STRICT", raising=False)
    ignore_file = tmp_path / "ignore.txt"
    ignore_file.write_text(ignores)
    return int(dep_audit.main(["dep_audit.py", str(ROOT / "constraints.txt"), str(ignore_file)]))


def test_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(monkeypatch, tmp_path, REPORT) == 1
    clean = {"dependencies": [REPORT["dependencies"][0]]}
    assert run_main(monkeypatch, tmp_path, clean) == 0
    # nothing could be checked: loud, and a failure only when strict
    assert run_main(monkeypatch, tmp_path, None) == 0
    assert "NOT PERFORMED" in capsys.readouterr().err
    assert run_main(monkeypatch, tmp_path, None, strict=True) == 1
    skipped = {"dependencies": [REPORT["dependencies"][2]]}
    assert run_main(monkeypatch, tmp_path, skipped) == 0
    assert "INCOMPLETE: 1 of 1" in capsys.readouterr().err
    assert run_main(monkeypatch, tmp_path, skipped, strict=True) == 1
    # a reasonless ignore entry stops the step
    assert run_main(monkeypatch, tmp_path, clean, ignores="PYSEC-2099-1\n") == 2


def test_every_locked_package_is_pinned_so_the_audit_can_check_it() -> None:
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"{line}: pip-audit --no-deps needs exact pins"
