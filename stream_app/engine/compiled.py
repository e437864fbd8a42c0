"""Compiled or interpreted engine: which one this process runs, decided before any engine import.

setup.py compiles the engine modules with mypyc and writes `_compiled.json` (the SHA-256 of each
source it compiled) beside them. Python prefers an extension module to its source, so an engine
file edited after the build would silently run its old compiled self. Here that cannot happen: if
any source differs from what was compiled, or ENGAGEMENT_PURE_PYTHON is set, every engine module is
loaded from its source (all or nothing: compiled modules call each other directly).

Interpreted itself (setup.py leaves it out), like the package `__init__`.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ENGINE_DIR = Path(__file__).resolve().parent
PACKAGE = "stream_app.engine"
MANIFEST = "_compiled.json"
PURE_ENV = "ENGAGEMENT_PURE_PYTHON"


def extension_modules(engine_dir: Path = ENGINE_DIR) -> list[str]:
    """Names of the engine modules that have a compiled extension beside their source."""
    names: set[str] = set()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        names.update(p.name[: -len(suffix)] for p in engine_dir.glob(f"*{suffix}"))
    return sorted(n for n in names if (engine_dir / f"{n}.py").exists())


def stale_modules(engine_dir: Path = ENGINE_DIR) -> list[str]:
    """Compiled modules whose source is not the one compiled (all of them without a manifest)."""
    compiled = extension_modules(engine_dir)
    try:
        recorded: dict[str, str] = json.loads((engine_dir / MANIFEST).read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return compiled
    stale = []
    for name in compiled:
        source = engine_dir / f"{name}.py"
        if recorded.get(source.name) != hashlib.sha256(source.read_bytes()).hexdigest():
            stale.append(name)
    return stale


class SourceFinder(importlib.abc.MetaPathFinder):
    """Loads `stream_app.engine.<name>` from `<name>.py`, ahead of any compiled extension."""

    def __init__(self, engine_dir: Path = ENGINE_DIR) -> None:
        self.engine_dir = engine_dir

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        source = self.engine_dir / f"{name}.py"
        if package != PACKAGE or not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def choose() -> tuple[bool, str]:
    """Install the source finder when the engine must run interpreted. Returns (compiled, why)."""
    compiled = extension_modules()
    if not compiled:
        return False, "not compiled (installed without a C compiler, or ENGAGEMENT_PURE_PYTHON at build)"
    if os.environ.get(PURE_ENV):
        why = f"interpreted: {PURE_ENV} is set"
    else:
        stale = stale_modules()
        if not stale:
            return True, "compiled with mypyc"
        why = (f"interpreted: {', '.join(stale)} changed since the engine was compiled "
               "(run `make venv` or `pip install -e .` to compile again)")
        warnings.warn(f"stream_app.engine {why}", RuntimeWarning, stacklevel=3)
    if not any(isinstance(f, SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder())
    return False, why
