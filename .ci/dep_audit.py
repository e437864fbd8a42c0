"""Known vulnerabilities in the locked dependencies (constraints.txt), with pip-audit.

    python .ci/dep_audit.py [constraints.txt] [.ci/pip-audit-ignore.txt]

Exit 1 when a package has a known vulnerability that the ignore file does not list (with a
reason). pip-audit asks a vulnerability service on the network (PyPI's JSON API by default,
DEP_AUDIT_SERVICE=osv for OSV). When it cannot check some or all packages (no network, a PyPI
mirror without the per-version JSON API), this says so loudly, naming them, and exits 0 so that a
machine without the service still runs the rest of CI; DEP_AUDIT_STRICT=1 makes that a failure
(docs/SECURITY.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BANNER = "=" * 78


class IgnoreFileError(ValueError):
    pass


def read_ignores(text: str) -> dict[str, str]:
    """`ID  reason` per line (`#` comments); every entry needs a reason."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        vuln, _, reason = line.partition(" ")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._:-]+", vuln):
            raise IgnoreFileError(f"line {n}: {vuln!r} is not a vulnerability id")
        if len(reason.strip()) < 10:
            raise IgnoreFileError(f"line {n}: {vuln} needs a reason (why it does not apply, until when)")
        out[vuln] = reason.strip()
    return out


@dataclass
class Outcome:
    found: list[str] = field(default_factory=list)        # "pkg==ver: ID (fix: ...)"
    ignored: list[str] = field(default_factory=list)      # "pkg==ver: ID: reason"
    unaudited: list[str] = field(default_factory=list)    # "pkg==ver: why"
    audited: int = 0


def classify(report: dict[str, Any], ignores: dict[str, str]) -> Outcome:
    """pip-audit's JSON report -> what fails the run, what is accepted, what was not checked."""
    out = Outcome()
    for dep in report.get("dependencies", []):
        pkg = dep["name"] + (f"=={dep['version']}" if dep.get("version") else "")
        if "skip_reason" in dep:
            out.unaudited.append(f"{pkg}: {dep['skip_reason']}")
            continue
        out.audited += 1
        for v in dep.get("vulns", []):
            ids = [v["id"], *v.get("aliases", [])]
            reason = next((ignores[i] for i in ids if i in ignores), None)
            if reason is not None:
                out.ignored.append(f"{pkg}: {v['id']}: {reason}")
            else:
                fix = ", ".join(v.get("fix_versions", [])) or "none yet"
                out.found.append(f"{pkg}: {' / '.join(ids)} (fixed in: {fix})")
    return out


def run_pip_audit(requirements: Path) -> tuple[dict[str, Any] | None, str]:
    """(JSON report or None, pip-audit's stderr)."""
    service = os.environ.get("DEP_AUDIT_SERVICE", "pypi")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip_audit", "--requirement", str(requirements), "--no-deps", "--disable-pip",
             "--vulnerability-service", service, "--progress-spinner", "off", "--format", "json",
             "--output", str(report)],
            capture_output=True, text=True, timeout=900)
        try:
            return json.loads(report.read_text()), proc.stderr
        except (OSError, ValueError):
            return None, proc.stderr or proc.stdout


def main(argv: list[str]) -> int:
    requirements = Path(argv[1]) if len(argv) > 1 else ROOT / "constraints.txt"
    ignore_file = Path(argv[2]) if len(argv) > 2 else ROOT / ".ci" / "pip-audit-ignore.txt"
    try:
        ignores = read_ignores(ignore_file.read_text()) if ignore_file.exists() else {}
    except IgnoreFileError as exc:
        print(f"dep-audit: {ignore_file}: {exc}", file=sys.stderr)
        return 2
    strict = os.environ.get("DEP_AUDIT_STRICT") == "1"
    report, stderr = run_pip_audit(requirements)
    if report is None:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        print(f"{BANNER}\ndep-audit: NOT PERFORMED: pip-audit could not reach a vulnerability service or "
              f"failed:\n{tail}\n{BANNER}", file=sys.stderr)
        return 1 if strict else 0
    out = classify(report, ignores)
    for line in out.ignored:
        print(f"dep-audit: accepted (listed in {ignore_file.name}): {line}")
    if out.unaudited:
        total = out.audited + len(out.unaudited)
        print(f"{BANNER}\ndep-audit: INCOMPLETE: {len(out.unaudited)} of {total} locked packages could not be "
              "checked (the vulnerability service did not answer for them; see docs/SECURITY.md):", file=sys.stderr)
        for line in out.unaudited[:10]:
            print(f"  {line}", file=sys.stderr)
        if len(out.unaudited) > 10:
            print(f"  ... and {len(out.unaudited) - 10} more", file=sys.stderr)
        print(BANNER, file=sys.stderr)
    if out.found:
        print("dep-audit: known vulnerabilities (fix them, or list them with a reason in "
              f"{ignore_file.relative_to(ROOT) if ignore_file.is_relative_to(ROOT) else ignore_file}):",
              file=sys.stderr)
        for line in out.found:
            print(f"  {line}", file=sys.stderr)
        return 1
    if out.unaudited and strict:
        return 1
    if out.audited == 0:
        print("dep-audit: DEGRADED: no package could be checked, so nothing is known about vulnerabilities; "
              "CI goes on (DEP_AUDIT_STRICT=1 makes this a failure)", file=sys.stderr)
        return 0
    print(f"dep-audit: {out.audited} packages checked, no unlisted known vulnerability"
          + (f" ({len(out.unaudited)} not checked, above)" if out.unaudited else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
