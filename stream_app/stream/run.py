"""Running a worker: the embedded broker when none is configured, topics, then Faust's Worker."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
import sys

from stream_app.config import EMBEDDED_PROFILE, Settings

log = logging.getLogger(__name__)


def port_taken(host: str, port: int) -> bool:
    """Whether another process listens on (host, port): a bind as the web server makes it fails.

    SO_REUSEADDR as aiohttp sets it, so a port left in TIME_WAIT by a stopped worker is free. Other
    failures (a name that does not resolve here, no permission) are left to the web server."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    return False


def run_worker(settings: Settings) -> int:
    bind = settings.web_bind or settings.web_host
    if port_taken(bind, settings.web_port):  # before any broker or Kafka work: fail fast
        print(f"engagement worker: error: port {settings.web_port} on {bind} is already in use (another "
              "worker?); set ENGAGEMENT_WEB_PORT to a free port", file=sys.stderr)
        return 2
    import faust

    from stream_app.broker import EmbeddedBroker
    from stream_app.logs import configure, logging_config
    from stream_app.stream.kafka_io import ensure_topics
    from stream_app.stream.worker import ScorerApp

    # one handler and format for every line; Faust's Worker sets up the same config again below
    configure(settings.log_level, settings.log_format)
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
        scorer = ScorerApp(settings)
        worker = faust.Worker(scorer.app, loglevel=settings.log_level, quiet=True,
                              logging_config=logging_config(settings.log_level, settings.log_format))
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if broker is not None:
            broker.stop()
    return 0
