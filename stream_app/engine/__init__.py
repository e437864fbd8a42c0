"""The pure scoring engine: no Faust, Kafka, Prometheus, clocks or I/O (DESIGN.md)."""

from stream_app.engine.config import DEFAULT_CONFIG, TIERS, EngineConfig, InvalidConfig
from stream_app.engine.customer import AsOfBeforeClock, Customer
from stream_app.engine.events import Event
from stream_app.engine.kpis import KpiPartial, store_document
from stream_app.engine.unit import APPLIED, DUPLICATE, Unit

__all__ = [
    "APPLIED",
    "DEFAULT_CONFIG",
    "DUPLICATE",
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
