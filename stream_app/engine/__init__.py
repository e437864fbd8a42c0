"""The pure scoring engine: no Faust, Kafka, Prometheus, clocks or I/O (docs/DESIGN.md).

Compiled with mypyc by the build when it can be (setup.py); `COMPILED` says which this process
runs and `ENGINE_BUILD` why. The choice is made before the first engine import below.
"""

from stream_app.engine.compiled import choose

COMPILED, ENGINE_BUILD = choose()

# ruff: noqa: E402 - the engine modules are imported after the choice above
from stream_app.engine.config import DEFAULT_CONFIG, TIERS, EngineConfig, InvalidConfig
from stream_app.engine.customer import AsOfBeforeClock, Customer
from stream_app.engine.events import Event
from stream_app.engine.kpis import KpiPartial, store_document
from stream_app.engine.unit import APPLIED, DUPLICATE, Unit

__all__ = [
    "APPLIED",
    "COMPILED",
    "DEFAULT_CONFIG",
    "DUPLICATE",
    "ENGINE_BUILD",
    "TIERS",
    "AsOfBeforeClock",
    "Customer",
    "EngineConfig",
    "Event",
    "InvalidConfig",
    "KpiPartial",
    "Unit",
    "store_document",
]
