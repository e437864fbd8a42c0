"""engine/kpis.py: the store document from per-unit partials, read at the largest watermark."""

from __future__ import annotations

from stream_app.engine.clock import DAY, format_instant
from stream_app.engine.kpis import KpiPartial, store_document

T0 = 19_800 * DAY


def partial(*orders: tuple[int, bool, bool, float]) -> KpiPartial:
    k = KpiPartial(365)
    for day, guest, identified, amount in orders:
        k.add_order(day, guest, identified, amount)
    return k


def test_partials_add_up_and_the_largest_watermark_is_the_as_of() -> None:
    a = partial((T0 // DAY, False, True, 10.0))
    a.move_customer((-1, -1), (T0 // DAY, -1))
    b = partial((T0 // DAY + 3, True, False, 30.0))
    doc = store_document([(T0, a), (None, KpiPartial(365)), (T0 + 3 * DAY, b)], 365)
    assert doc["as_of"] == format_instant(T0 + 3 * DAY)
    assert (doc["orders"], doc["guest_orders"], doc["identified_orders"], doc["customers"]) == (2, 1, 1, 1)
    assert doc["revenue"] == 40.0 and doc["purchase_frequency"] == 1.0


def test_the_window_is_read_at_the_merged_as_of() -> None:
    old = partial((T0 // DAY, False, True, 10.0))
    doc = store_document([(T0, old), (T0 + 365 * DAY, KpiPartial(365))], 365)
    assert doc["orders"] == 0       # day T0 left the 365-day window at the other unit's watermark


def test_no_applied_event_anywhere_gives_null_as_of_and_ratios() -> None:
    doc = store_document([(None, KpiPartial(365))], 365)
    assert doc["as_of"] is None and doc["orders"] == 0 and doc["average_order_value"] is None
    assert store_document([], 30)["window_days"] == 30


def test_one_unit_equals_its_own_document() -> None:
    k = partial((T0 // DAY, False, True, 10.0), (T0 // DAY - 400, False, True, 5.0))
    assert store_document([(T0, k)], 365) == k.document(T0)
