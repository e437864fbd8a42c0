"""The faust/aiokafka internals we rely on (stream_app/stream/compat.py) still exist, in the shape
we use them. A failure here after an upgrade names what moved; fix compat.py (and the pins)."""

from __future__ import annotations

import inspect

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer import group_coordinator
from aiokafka.coordinator.protocol import ConsumerProtocol

from stream_app.stream import compat
from stream_app.stream.assignor import OwnerAssignor


def _params(fn: object) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]  # type: ignore[arg-type]


async def test_consumer_client_can_force_a_metadata_update() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
    client = consumer._client  # the internal under test
    assert callable(client.force_metadata_update)
    assert _params(client.force_metadata_update) == []
    assert inspect.iscoroutinefunction(compat.refresh_metadata)


def test_assignor_base_class_has_the_abstract_methods_we_implement() -> None:
    base = compat.AbstractPartitionAssignor
    assert set(base.__abstractmethods__) == {"name", "assign", "metadata", "on_assignment"}
    assert _params(base.metadata) == ["topics"]
    assert _params(base.assign) == ["cluster", "members"]
    assert _params(base.on_assignment) == ["assignment"]
    assert issubclass(OwnerAssignor, base)
    OwnerAssignor("http://a:1")  # instantiable: nothing abstract left


def test_member_structs_have_the_fields_we_read_and_write() -> None:
    meta = compat.ConsumerProtocolMemberMetadata
    assign = compat.ConsumerProtocolMemberAssignment
    assert list(meta.SCHEMA.names) == ["version", "subscription", "user_data"]
    assert list(assign.SCHEMA.names) == ["version", "assignment", "user_data"]
    # the coordinator decodes members and assignments with exactly these classes
    assert ConsumerProtocol.METADATA is meta
    assert ConsumerProtocol.ASSIGNMENT is assign


def test_assignor_metadata_and_assignment_survive_the_wire_format() -> None:
    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2}

    assert callable(compat.ClusterMetadata.partitions_for_topic)
    a = OwnerAssignor("http://a:1")
    raw = a.metadata(["events"]).encode()
    member = ConsumerProtocol.METADATA.decode(raw)
    assert member.subscription == ["events"] and b"http://a:1" in member.user_data
    plan = a.assign(Cluster(), {"m": member})  # type: ignore[arg-type]
    a.on_assignment(ConsumerProtocol.ASSIGNMENT.decode(plan["m"].encode()))
    assert a.held == [0, 1, 2] and a.owners == {0: "http://a:1", 1: "http://a:1", 2: "http://a:1"}


@pytest.mark.parametrize("call", ["assignor.metadata(topics)", "assignor.assign(self._cluster, member_metadata)",
                                  "assignor.on_assignment(assignment)"])
def test_the_group_coordinator_calls_our_assignor_instance(call: str) -> None:
    # aiokafka calls these on the objects passed as partition_assignment_strategy (our instance
    # carries the web URL and learns the owners), not on a class it instantiates itself.
    assert call in inspect.getsource(group_coordinator)
    assert "partition_assignment_strategy" in _params(AIOKafkaConsumer.__init__)


def test_batch_api_used_by_batch_sender() -> None:
    # public, but the core of the fast path (kafka_io.BatchSender)
    assert _params(AIOKafkaProducer.send_batch) == ["batch", "topic", "partition"]
    assert callable(AIOKafkaProducer.create_batch)
    from aiokafka.producer.message_accumulator import BatchBuilder

    assert {"key", "value", "timestamp"} <= set(_params(BatchBuilder.append))
    assert callable(BatchBuilder.record_count)


def test_faust_web_driver_exposes_its_aiohttp_application() -> None:
    import aiohttp.web
    import faust

    app = faust.App("compat-web-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    assert isinstance(app.web.web_app, aiohttp.web.Application)  # type: ignore[attr-defined]

    @aiohttp.web.middleware
    async def mw(request: aiohttp.web.Request, handler: object) -> aiohttp.web.StreamResponse:
        raise AssertionError("not called here")

    compat.add_web_middleware(app, mw)
    assert mw in app.web.web_app.middlewares  # type: ignore[attr-defined]
