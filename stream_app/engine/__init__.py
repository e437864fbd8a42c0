"""The pure scoring engine: no Faust, Kafka, Prometheus, clocks or I/O (DESIGN.md)."""

from stream_app.engine.config import DEFAULT_CONFIG, TIERS, EngineConfig
from stream_app.engine.customer import Customer
from stream_app.engine.events import Event
from stream_app.engine.kpis import KpiPartial
from stream_app.engine.unit import APPLIED, DUPLICATE, Unit

__all__ = [
    "APPLIED", "DUPLICATE", "DEFAULT_CONFIG", "TIERS", "Customer", "EngineConfig", "Event",
    "KpiPartial", "Unit",
]
