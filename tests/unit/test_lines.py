"""stream_app/lines.py: the re-keyed topic's compact form, and the wrapper form it still reads."""

from __future__ import annotations

import orjson
import pytest

from stream_app.engine.events import Event
from stream_app.lines import decode_rekeyed, encode_rekeyed
from stream_app.stream.processor import wrap_event
from stream_app.validation import Rejection, validate_bytes

ORDER = b'{"event_id":"e1","type":"order_placed","customer_id":"c1","occurred_at":"2011-05-01T10:00:00.5Z",' \
        b'"order_id":"o1","amount":12.5,"guest":true,"channel":"Web"}'


def test_a_validated_event_round_trips_exactly() -> None:
    ev = validate_bytes(ORDER, "orders")
    assert isinstance(ev, Event)
    assert decode_rekeyed(encode_rekeyed(ev)) == ev


def test_the_older_wrapper_form_still_decodes_to_the_same_event() -> None:
    assert decode_rekeyed(wrap_event("orders", ORDER)) == validate_bytes(ORDER, "orders")


@pytest.mark.parametrize("raw, reason", [
    (b"[1, 2, 3]", "not_an_object"),                                     # not our array: a line
    (orjson.dumps([1, "e1", "page_view", "orders", "c1", 1, None, 1, None, 0.0, False, None, None, None,
                   None]), "not_an_object"),                             # type of another topic
    (orjson.dumps([2, "e1", "page_view", "clicks", "c1", 1, None, 1, None, 0.0, False, None, None, None,
                   None]), "not_an_object"),                             # an unknown format version
    (b"[1, \"e1\"", "invalid_json"),
])
def test_anything_else_on_the_rekeyed_topic_is_a_rejection(raw: bytes, reason: str) -> None:
    got = decode_rekeyed(raw)
    assert isinstance(got, Rejection) and got.reason == reason
