"""Running a worker: the embedded broker when none is configured, topics, then Faust's Worker."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from stream_app.config import EMBEDDED_PROFILE, Settings

log = logging.getLogger("stream_app.worker")


def run_worker(settings: Settings) -> int:
    import faust

    from stream_app.broker import EmbeddedBroker
    from stream_app.stream.kafka_io import ensure_topics
    from stream_app.stream.worker import Scorer

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.log_format == "json":
        from stream_app.logs import JsonFormatter

        for handler in logging.root.handlers:
            handler.setFormatter(JsonFormatter())
    from stream_app.engine import ENGINE_BUILD

    log.info("engine: %s", ENGINE_BUILD)  # compiled, or interpreted and why (README: Development)
    broker = None
    if not settings.broker:
        broker = EmbeddedBroker()
        broker.start()
        settings = dataclasses.replace(settings, broker=broker.url, **EMBEDDED_PROFILE)
        log.warning("ENGAGEMENT_BROKER is not set: started the bundled broker at %s (memory storage)", broker.url)
    try:
        created = asyncio.run(ensure_topics(settings))
        if created:
            log.info("created %d topics", len(created))
        asyncio.set_event_loop(asyncio.new_event_loop())  # asyncio.run left none for Faust
        scorer = Scorer(settings)
        from stream_app.logs import logging_config

        worker = faust.Worker(scorer.app, loglevel=settings.log_level, quiet=True,
                              logging_config=logging_config(settings.log_level, settings.log_format))
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if broker is not None:
            broker.stop()
    return 0
