"""Kafka plumbing shared by the worker, the CLI and the audit: topics, partitioning, batches."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import murmur2

from stream_app.config import Settings, SettingsError
from stream_app.stream import failpoints
from stream_app.stream.compat import refresh_metadata

log = logging.getLogger(__name__)


#: partitions -> key -> partition. Ingest re-keys every event and scoring keys every output by
#: customer, so the same keys recur; aiokafka's pure-Python murmur2 was 11 % of a worker's CPU
#: (py-spy, docs/BENCHMARKS.md). Cleared when large: a cache, not a second copy of the state.
_PARTITION_CACHE: dict[int, dict[bytes, int]] = {}
_PARTITION_CACHE_MAX = 65_536


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as every Java and aiokafka producer uses it."""
    cache = _PARTITION_CACHE.get(partitions)
    if cache is None:
        cache = _PARTITION_CACHE[partitions] = {}
    p = cache.get(key)
    if p is None:
        if len(cache) >= _PARTITION_CACHE_MAX:
            cache.clear()
        p = cache[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
    return p


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class BrokerConnectError(SettingsError):
    """A client could not connect or authenticate at start; the message names the settings to check
    (never the password). A SettingsError, so the CLI prints it without a traceback."""


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options for aiokafka clients from the security settings.

    The one mapping of `ENGAGEMENT_SECURITY_PROTOCOL`, `_SSL_*` and `_SASL_*`: every client (ingest,
    scoring, KPIs, audit, produce, topic admin) and the Faust app's credentials
    (`faust_credentials`) are derived from it. A value no client could use fails here, at start.
    """
    proto = settings.security_protocol
    if proto not in SECURITY_PROTOCOLS:
        raise SettingsError(f"ENGAGEMENT_SECURITY_PROTOCOL={proto!r}: use one of {', '.join(SECURITY_PROTOCOLS)}")
    opts: dict[str, Any] = {"bootstrap_servers": settings.bootstrap, "security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        try:  # verifies the broker's certificate and host name (system CAs unless a CA file is given)
            opts["ssl_context"] = ssl.create_default_context(cafile=settings.ssl_cafile or None)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"ENGAGEMENT_SSL_CAFILE={settings.ssl_cafile!r}: {exc}") from None
    if proto.startswith("SASL"):
        mechanism = settings.sasl_mechanism or "PLAIN"
        if mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"ENGAGEMENT_SASL_MECHANISM={mechanism!r}: use one of {', '.join(SASL_MECHANISMS)}")
        if not settings.sasl_username:
            raise SettingsError(f"ENGAGEMENT_SECURITY_PROTOCOL={proto} needs ENGAGEMENT_SASL_USERNAME")
        opts.update(sasl_mechanism=mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password)
    return opts


async def start_client(client: Any, settings: Settings) -> None:
    """`client.start()`, with a failure to connect or log in turned into a `BrokerConnectError`.

    aiokafka reports a refused SCRAM login as a KeyError from inside its SCRAM code (the broker's
    final message has an error instead of a signature) and a refused mechanism as a closed
    connection; neither says what to fix.
    """
    try:
        await client.start()
    except (KafkaError, KeyError, OSError, ssl.SSLError) as exc:
        try:
            await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        except Exception:  # noqa: BLE001, S110 - the start failure is the error to report
            pass
        raise BrokerConnectError(_connect_failure(settings, exc)) from exc


def _connect_failure(settings: Settings, exc: BaseException) -> str:
    proto = settings.security_protocol
    where = f"cannot connect to the Kafka broker at {settings.bootstrap} with ENGAGEMENT_SECURITY_PROTOCOL={proto}"
    if proto.startswith("SASL"):
        mechanism = settings.sasl_mechanism or "PLAIN"
        who = f"ENGAGEMENT_SASL_MECHANISM={mechanism}, user {settings.sasl_username!r}"
        refused = isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError) or \
            (isinstance(exc, KeyError) and mechanism.startswith("SCRAM"))
        if refused:
            return (f"{where}: authentication failed ({who}): check ENGAGEMENT_SASL_USERNAME and "
                    "ENGAGEMENT_SASL_PASSWORD")
        if isinstance(exc, UnsupportedSaslMechanismError):
            return f"{where}: the broker does not offer {who.split(',')[0]}: {exc}"
        return (f"{where} ({who}): {exc.__class__.__name__}: {exc}; a broker that closes the connection "
                "at once usually refused the mechanism, the credentials or the protocol")
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS failed: {exc} (ENGAGEMENT_SSL_CAFILE={settings.ssl_cafile!r})"
    return f"{where}: {exc.__class__.__name__}: {exc}"


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for the Faust app: the same security as `client_options`."""
    import faust

    opts = client_options(settings)
    ctx = opts.get("ssl_context")
    if "sasl_mechanism" in opts:
        return faust.SASLCredentials(username=opts["sasl_plain_username"], password=opts["sasl_plain_password"],
                                     ssl_context=ctx, mechanism=opts["sasl_mechanism"])
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def consumer_options(settings: Settings) -> dict[str, Any]:
    return {**client_options(settings), "fetch_max_wait_ms": settings.fetch_max_wait_ms}


def kpi_partials_topic(settings: Settings) -> str:
    return f"{settings.app_id}-kpi-partials"


def changelog_topic(settings: Settings) -> str:
    """The state changelog: partition p holds unit p's state (docs/RELIABILITY.md)."""
    return f"{settings.app_id}-state-changelog"


def topic_specs(settings: Settings) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, configs) for every topic the scorer reads or writes (not changelogs)."""
    n = settings.partitions
    delete = {"cleanup.policy": "delete"}
    compact = {"cleanup.policy": "compact"}
    return [
        (settings.topic_orders, n, delete),
        (settings.topic_clicks, n, delete),
        (settings.topic_social, n, delete),
        (settings.topic_privacy, n, delete),
        (settings.topic_events, n, delete),
        (settings.topic_scores, n, compact),
        (settings.topic_tier_changes, n, delete),
        (settings.topic_alerts, n, delete),
        (settings.topic_segment_changes, n, delete),
        (settings.topic_kpis, 1, compact),
        (settings.topic_dead_letter, n, delete),
        (kpi_partials_topic(settings), 1, compact),
        (changelog_topic(settings), n, compact),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics with the configured partitions, replication and cleanup policy."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=parts, replication_factor=settings.replication,
                        topic_configs=configs)
               for name, parts, configs in topic_specs(settings) if name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
            created = [t.name for t in new]
    finally:
        await admin.close()
    return created


class BatchSender:
    """Collects records per (topic, partition) and sends each group as few record batches.

    Skipping the per-message send queue is what makes the stream fast (docs/BROKER.md).
    `max_records` caps the records of one record batch (0: as many as fit), which the chaos suite
    uses to make one partition's state span several batches.
    """

    def __init__(self, producer: AIOKafkaProducer, max_records: int = 0) -> None:
        self.producer = producer
        self.max_records = max_records
        #: (key, value, timestamp in epoch ms or None: the broker's time of the send)
        self.records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, int | None]]] = {}

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
            timestamp_ms: int | None = None) -> None:
        self.records.setdefault((topic, partition), []).append((key, value, timestamp_ms))

    def extend(self, topic: str, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        self.records.setdefault((topic, partition), []).extend((k, v, None) for k, v in records)

    def __len__(self) -> int:
        return sum(len(r) for r in self.records.values())

    def _batches(self) -> Iterator[tuple[str, int, Any]]:
        cap = self.max_records or None
        for (topic, partition), records in self.records.items():
            batch = self.producer.create_batch()
            for key, value, ts in records:
                if (cap is not None and batch.record_count() >= cap) or \
                        batch.append(key=key, value=value, timestamp=ts) is None:
                    if batch.record_count():
                        yield topic, partition, batch
                    batch = self.producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=ts) is None:
                        raise ValueError(f"a record for {topic} is larger than a producer batch")
            if batch.record_count():
                yield topic, partition, batch

    async def flush(self, between: str | None = None) -> dict[tuple[str, int], int]:
        """Send everything and wait for the broker; returns the base offset of each
        (topic, partition)'s last record batch.

        With the failpoint `between` armed, batches are sent one at a time and the failpoint is
        passed after each delivered one (a kill there leaves a partial write behind).
        """
        sent: list[tuple[str, int, Any]] = []
        stepwise = between is not None and failpoints.armed(between)
        for topic, partition, batch in self._batches():
            future = await self.producer.send_batch(batch, topic, partition=partition)
            sent.append((topic, partition, future))
            if stepwise:
                await future
                failpoints.hit(between)  # type: ignore[arg-type]
        self.records = {}
        last: dict[tuple[str, int], int] = {}
        if sent:
            metas = await asyncio.gather(*(f for _, _, f in sent))
            for (topic, partition, _), meta in zip(sent, metas, strict=True):
                last[(topic, partition)] = meta.offset
        return last


async def read_topic(settings: Settings, topic: str, idle_ms: int = 1500,
                     timeout_s: float = 120.0) -> dict[int, list[Any]]:
    """Every record of every partition of `topic`, in offset order, up to the high-water mark.

    Uses the high-water mark from fetch responses, not ListOffsets (which reads low on the
    bundled broker, docs/BROKER.md), and stops after `idle_ms` without records once every
    partition is at its high-water mark.
    """
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                **consumer_options(settings))
    await start_client(consumer, settings)
    out: dict[int, list[Any]] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await refresh_metadata(consumer)  # first use of the topic
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle_since = loop.time()
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = False
            for tp, records in batches.items():
                if records:
                    got = True
                    out.setdefault(tp.partition, []).extend(records)
            if got:
                idle_since = loop.time()
                continue
            caught_up = True
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is None or await consumer.position(tp) < hw:
                    caught_up = False
            if caught_up and (loop.time() - idle_since) * 1000 >= idle_ms:
                break
    finally:
        await consumer.stop()
    return out
