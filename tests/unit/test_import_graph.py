"""The package's import graph, read with grimp (the library behind import-linter)."""

from __future__ import annotations

import grimp

ENGINE_MUST_NOT_IMPORT = ("faust", "aiokafka", "prometheus_client", "stream_app.stream")


def graph() -> grimp.ImportGraph:
    return grimp.build_graph("stream_app", include_external_packages=True)


def test_no_module_takes_part_in_an_import_cycle() -> None:
    g = graph()
    cycles = []
    for module in sorted(m for m in g.modules if m.startswith("stream_app")):
        for imported in g.find_modules_directly_imported_by(module):
            if imported.startswith("stream_app") and g.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported} -> ... -> {module}")
    assert cycles == []


def test_the_engine_is_pure() -> None:
    g = graph()
    engine = {m for m in g.modules if m.startswith("stream_app.engine")}
    for module in sorted(engine):
        for target in ENGINE_MUST_NOT_IMPORT:
            assert not g.chain_exists(importer=module, imported=target, as_packages=True), \
                f"{module} reaches {target}"


def test_shells_do_not_import_other_shells() -> None:
    g = graph()
    shells = ["stream_app.replay", "stream_app.audit", "stream_app.produce", "stream_app.demo", "stream_app.cli"]
    for importer in ["stream_app.replay", "stream_app.audit", "stream_app.produce", "stream_app.stream.processor"]:
        for other in shells:
            if other != importer:
                assert other not in g.find_modules_directly_imported_by(importer), f"{importer} imports {other}"


def test_the_worker_wires_the_loops_and_nothing_else_imports_them() -> None:
    g = graph()
    for loop in ["stream_app.stream.ingest", "stream_app.stream.scoring"]:
        assert g.find_modules_that_directly_import(loop) == {"stream_app.stream.worker"}, loop
    assert g.find_modules_that_directly_import("stream_app.stream.worker") == {"stream_app.stream.run"}
