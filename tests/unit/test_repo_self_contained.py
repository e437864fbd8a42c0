"""A clone alone is enough: nothing outside tests/ and .ci/ points at ../shared, and every relative
link in README.md and docs/*.md leads to a file in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: a path out of the repository into the workspace it was written in: `../shared`, the files that
#: lived there, or the same spelt in parts (`"..", "shared"`, `".." / "shared"`)
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(?:SPEC\.md|DESIGN\.md|NOTES-broker\.md|data\b)"
                     r"""|["']\.\.["']\s*[,/]\s*["']shared["']""")
#: the places allowed to name it (they may check for it, or say why it is gone)
EXEMPT = ("tests/", ".ci/")
#: a markdown link or image: [text](target) with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p]


def outside_references(root: Path, paths: list[str]) -> list[str]:
    """`file:line: text` for every line of a text file (outside tests/ and .ci/) that points into
    ../shared."""
    found = []
    for rel in paths:
        if rel.startswith(EXEMPT):
            continue
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # binary (the data file), or deleted in the worktree
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def broken_links(root: Path, doc: Path) -> list[str]:
    """`file:line: target` for every relative link of a markdown file that does not lead to a file
    or folder inside `root`. Links inside fenced code blocks are text, not links."""
    found = []
    fenced = False
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # a URL (https:, mailto:) or an anchor on the same page
            resolved = (doc.parent / unquote(target.split("#", 1)[0])).resolve()
            if not resolved.exists() or not resolved.is_relative_to(root):
                found.append(f"{doc.relative_to(root)}:{n}: {target}")
    return found


def test_nothing_outside_tests_and_ci_points_at_shared() -> None:
    found = outside_references(ROOT, tracked_files())
    assert not found, ("references to ../shared (move the file into the repo and point there):\n"
                       + "\n".join(found))


def test_relative_links_in_readme_and_docs_resolve() -> None:
    """README.md, docs/*.md and the other READMEs (data/, schemas/, deploy/)."""
    docs = [ROOT / rel for rel in tracked_files()
            if rel.endswith(".md") and not rel.startswith(EXEMPT) and (ROOT / rel).is_file()]
    assert ROOT / "README.md" in docs
    found = [hit for doc in docs for hit in broken_links(ROOT, doc)]
    assert not found, "relative links to files that do not exist:\n" + "\n".join(found)


def test_the_data_file_is_tracked_with_its_provenance() -> None:
    assert {"data/online-retail-orders.jsonl.gz", "data/README.md"} <= set(tracked_files())
    assert "CC BY 4.0" in (ROOT / "data" / "README.md").read_text(encoding="utf-8")


def test_the_contract_has_every_section_that_code_and_docs_cite() -> None:
    """'SPEC §N' anywhere means docs/CONTRACT.md section N, so each N must be a heading there."""
    contract = (ROOT / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
    headings = {int(n) for n in re.findall(r"^## (\d+)\. ", contract, re.M)}
    assert headings == set(range(1, 12))
    cited: set[int] = set()
    for rel in tracked_files():
        if rel.endswith((".py", ".md", ".json")) and (ROOT / rel).is_file():
            text = (ROOT / rel).read_text(encoding="utf-8", errors="replace")
            cited |= {int(n) for n in re.findall(r"SPEC (?:§|\\u00a7)(\d+)", text)}
    assert cited and cited <= headings


# -- the checks catch what they are for --------------------------------------------------------


@pytest.mark.parametrize("line", [
    "See [SPEC.md](../shared/SPEC.md) for the rules.",
    "DATA := ../shared/data/online-retail-orders.jsonl.gz",
    "the broker notes (/work/shared/NOTES-broker.md)",
    'DATA = os.path.join(here, "..", "..", "shared", "data", "orders.jsonl.gz")',
    'DATA = ROOT / ".." / "shared" / "data" / "orders.jsonl.gz"',
])
def test_a_reintroduced_reference_is_found(tmp_path: Path, line: str) -> None:
    for rel in ("docs/X.md", "stream_app/x.py", "tests/t.py", ".ci/run"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"intro\n{line}\n", encoding="utf-8")
    found = outside_references(tmp_path, ["docs/X.md", "stream_app/x.py", "tests/t.py", ".ci/run"])
    assert found == [f"docs/X.md:2: {line}", f"stream_app/x.py:2: {line}"]


@pytest.mark.parametrize("line", [
    "shared test code lives in `tests/helpers/`",
    "the `shared` $defs; data/online-retail-orders.jsonl.gz",
    "the per-module real init. Deferring this out of the shared lib's own",
])
def test_other_uses_of_the_word_shared_are_not_references(tmp_path: Path, line: str) -> None:
    (tmp_path / "x.md").write_text(line + "\n", encoding="utf-8")
    assert outside_references(tmp_path, ["x.md"]) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "docs").mkdir()
    (root / "docs" / "A.md").write_text("a", encoding="utf-8")
    doc = root / "README.md"
    doc.write_text("[a](docs/A.md#x) [b](docs/B.md) [web](https://example.com) [here](#top) [d](docs/)\n"
                   "```\n[c](docs/C.md)\n```\n[up](../outside.md)\n", encoding="utf-8")
    (tmp_path.parent / "outside.md").write_text("x", encoding="utf-8")
    assert broken_links(root, doc) == ["README.md:1: docs/B.md", "README.md:5: ../outside.md"]
