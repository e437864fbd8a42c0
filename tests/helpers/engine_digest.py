"""Run the engine over fixed inputs and print what it produced, for comparing the compiled and the
interpreted engine (tests/unit/engine/test_compiled_engine.py runs this in two processes).

Prints one JSON line: whether the engine ran compiled, and the SHA-256 of every output (replay
documents of the simulator and of the Online Retail orders, and of a unit persisted and restored
half-way through), with the counts that show the inputs exercised something.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import orjson

from stream_app.engine import COMPILED, Unit
from stream_app.engine.formats import decode_customer, decode_ids, decode_unit, encode_customer, encode_ids, encode_unit
from stream_app.replay import Replay, replay_file
from stream_app.simulate import Simulator
from stream_app.validation import validate_bytes

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "online-retail-orders.jsonl.gz")


def digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def restored_half_way(lines: list[bytes]) -> dict[str, Any]:
    """Feed half, persist every part the stream persists (through JSON), restore, feed the rest."""
    events = [ev for ev in map(validate_bytes, lines) if not hasattr(ev, "reason")]
    half = len(events) // 2
    u = Unit()
    for ev in events[:half]:
        u.offer(ev)  # type: ignore[arg-type]
    early = u.drain()
    core = decode_unit(encode_unit(u.core(), -1, 0)).core
    customers = [decode_customer(encode_customer(c)) for c in u.customers.values()]
    seen = decode_ids(encode_ids(list(u.seen.items())))
    u = Unit.from_parts(core, customers, seen)
    for ev in events[half:]:
        u.offer(ev)  # type: ignore[arg-type]
    late = u.drain()
    wm = u.watermark
    return {"outputs": [early.tier_changes, early.alerts, late.tier_changes, late.alerts,
                        early.segment_changes, late.segment_changes],
            "kpis": u.kpis.document(wm), "records": {cid: u.record(cid, wm) for cid in sorted(u.customers)},
            "erased": [late.erased, late.erased_tiers]}


def main() -> int:
    lines = list(Simulator(customers=600, seed=11, campaign_rate=0.05, erase_rate=0.01, bad_rate=0.02).lines(30_000))
    lines += lines[-3000::7] + lines[::101]  # re-sent: duplicates, and late events past the dedupe horizon
    r = Replay()
    r.feed(enumerate(lines, start=1))
    simulated = r.document()
    retail = replay_file(DATA)
    restored = restored_half_way(lines)
    print(orjson.dumps({
        "compiled": COMPILED,
        "simulated": digest(simulated),
        "online_retail": digest(retail),
        "restored": digest(restored),
        "counts": {"simulated": simulated["counts"], "online_retail": retail["counts"],
                   "tier_changes": len(simulated["tier_changes"]), "alerts": len(simulated["alerts"]),
                   "restored_customers": len(restored["records"])},
    }).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
