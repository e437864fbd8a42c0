"""Build step: compile the pure scoring engine (stream_app/engine) with mypyc.

The package metadata is in pyproject.toml; this file only adds the compiled engine. The engine is
plain, fully typed Python and runs as is (ENGAGEMENT_PURE_PYTHON=1, or no C compiler): compiling
it changes its speed, not its results (tests/unit/engine/test_compiled_engine.py checks that both agree).
Next to the extension modules, `_compiled.json` records the SHA-256 of every source compiled, so
that an engine module edited after the build is never shadowed by its stale extension
(stream_app/engine/compiled.py falls back to the sources and says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ENGINE = Path("stream_app") / "engine"
#: modules left interpreted: the package itself (it chooses compiled or sources) and that chooser
INTERPRETED = {"__init__.py", "compiled.py"}
MANIFEST = "_compiled.json"


def engine_sources() -> list[str]:
    return sorted(str(p) for p in ENGINE.glob("*.py") if p.name not in INTERPRETED)


class EngineBuildExt(build_ext):
    """Builds the engine's extensions; without a working C compiler, warns and leaves the engine
    interpreted (same results, slower) instead of failing the install."""

    def run(self) -> None:
        manifest = Path(os.path.dirname(self.get_ext_fullpath("stream_app.engine.unit"))) / MANIFEST
        manifest.unlink(missing_ok=True)  # a failed build must not vouch for older extensions
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - CompileError, a missing compiler, ...
            print(f"warning: the engine was not compiled ({exc}); it runs interpreted", file=sys.stderr)
            return
        sources = {Path(s).name: hashlib.sha256(Path(s).read_bytes()).hexdigest() for s in engine_sources()}
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"sources": sources}, indent=1, sort_keys=True) + "\n")


def ext_modules() -> list[Any]:
    if os.environ.get("ENGAGEMENT_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    return mypycify(engine_sources(), opt_level="3")


setup(ext_modules=ext_modules(), cmdclass={"build_ext": EngineBuildExt})
