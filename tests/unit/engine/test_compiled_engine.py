"""The mypyc-compiled engine (setup.py, stream_app/engine/compiled.py): it is what runs after a
build, it gives exactly the interpreted engine's results, and an edited source is never shadowed
by its stale extension."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

import stream_app.engine as engine
import stream_app.engine.unit as unit_module
from stream_app.engine.compiled import ENGINE_DIR, PURE_ENV, extension_modules, stale_modules

ROOT = Path(__file__).resolve().parents[3]
PURE = bool(os.environ.get(PURE_ENV))


def run_python(code_or_module: list[str], env_extra: dict[str, str], cwd: Path = ROOT,
               pythonpath: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    env.update(env_extra, PYTHONPATH=str(pythonpath))
    return subprocess.run([sys.executable, "-W", "default", *code_or_module], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_build_runs_the_compiled_engine() -> None:
    """`make venv` compiles the engine; ENGAGEMENT_PURE_PYTHON (make test-pure) runs the sources."""
    if PURE:
        assert not engine.COMPILED and unit_module.__file__.endswith("unit.py")
    else:
        assert engine.COMPILED, engine.ENGINE_BUILD
        assert unit_module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        assert stale_modules() == []
        # every engine module but the two that choose is compiled
        sources = {p.stem for p in ENGINE_DIR.glob("*.py")} - {"__init__", "compiled"}
        assert set(extension_modules()) == sources


def test_compiled_and_interpreted_engines_agree() -> None:
    """Replays (simulator with erasures, campaigns, bad lines, re-sent events; Online Retail) and a
    persist-and-restore half-way give byte-identical outputs in both."""
    runs = {}
    for pure in (False, True):
        proc = run_python(["-m", "tests.helpers.engine_digest"], {PURE_ENV: "1"} if pure else {})
        assert proc.returncode == 0, proc.stderr
        runs[pure] = orjson.loads(proc.stdout)
    assert runs[False]["compiled"] is True and runs[True]["compiled"] is False
    assert runs[False] == {**runs[True], "compiled": True}
    counts = runs[False]["counts"]
    assert counts["simulated"]["duplicates"] > 0 and counts["simulated"]["erased"] > 0
    assert counts["simulated"]["rejected"] > 0 and counts["alerts"] > 0 and counts["tier_changes"] > 0
    assert counts["online_retail"]["applied"] == 23_795


def _copy_package(tmp_path: Path) -> Path:
    """This checkout's package, compiled extensions and their shared library included."""
    shutil.copytree(ROOT / "stream_app", tmp_path / "stream_app",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for lib in ROOT.glob("*__mypyc*"):
        shutil.copy2(lib, tmp_path / lib.name)
    return tmp_path / "stream_app" / "engine"


PROBE = "import stream_app.engine as e, stream_app.engine.unit as u; print(e.COMPILED, u.__file__)"


def test_an_edited_source_runs_interpreted_not_its_stale_extension(tmp_path: Path) -> None:
    copy = _copy_package(tmp_path)
    if not PURE:
        fresh = run_python(["-c", PROBE], {}, cwd=tmp_path, pythonpath=tmp_path)
        assert fresh.returncode == 0, fresh.stderr
        compiled, path = fresh.stdout.split()
        assert compiled == "True" and path.startswith(str(tmp_path)) and not path.endswith(".py")
    with (copy / "kpis.py").open("a") as f:
        f.write("\n# edited after the build\n")
    assert stale_modules(copy) == (["kpis"] if extension_modules(copy) else [])
    proc = run_python(["-c", PROBE], {}, cwd=tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 0, proc.stderr
    compiled, path = proc.stdout.split()
    assert compiled == "False" and path == str(copy / "unit.py")  # all or nothing: unit too
    if extension_modules(copy):
        assert "kpis changed since the engine was compiled" in proc.stderr


def test_extensions_without_a_manifest_are_not_trusted(tmp_path: Path) -> None:
    copy = _copy_package(tmp_path)
    (copy / "_compiled.json").unlink(missing_ok=True)
    assert stale_modules(copy) == extension_modules(copy)
    proc = run_python(["-c", PROBE], {}, cwd=tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", str(copy / "unit.py")]
