# syntax=docker/dockerfile:1
# Engagement scorer worker image.
#
#   docker build -t engagement-scorer .
#   docker run --rm -e ENGAGEMENT_BROKER=kafka://kafka:9092 -p 6066:6066 engagement-scorer
#   docker run --rm -e ENGAGEMENT_BROKER=kafka://kafka:9092 engagement-scorer simulate --rate 200
#
# Two stages on the same pinned base: the build stage compiles wheels into a virtual environment,
# the runtime stage copies only that environment and runs as an unprivileged user.

FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers for the engine (setup.py compiles it with mypyc) and for dependencies without a wheel
# for this platform; they stay in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first (cached while only the code changes), then the package itself.
COPY pyproject.toml setup.py README.md ./
COPY stream_app ./stream_app
RUN pip install --upgrade pip setuptools wheel \
 && pip install . \
 && engagement --help >/dev/null \
 && cd / && python -c "import stream_app.engine as e; assert e.COMPILED, e.ENGINE_BUILD"


FROM python:3.11.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="engagement-scorer" \
      org.opencontainers.image.description="Real-time customer-engagement scorer (Faust worker)" \
      org.opencontainers.image.licenses="Apache-2.0"

# The worker listens on all interfaces inside a container (ENGAGEMENT_WEB_BIND). The host it
# advertises to its peers (ENGAGEMENT_WEB_HOST) is left at the default 127.0.0.1, right for a
# single worker only: with several workers, each sets its own reachable name (compose: the service
# name, Kubernetes: the pod's DNS name). The data dir is a volume in compose and a PVC in Kubernetes.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENGAGEMENT_WEB_BIND=0.0.0.0 \
    ENGAGEMENT_WEB_PORT=6066 \
    ENGAGEMENT_DATA_DIR=/var/lib/engagement \
    ENGAGEMENT_LOG_FORMAT=json

RUN groupadd --system --gid 10001 engagement \
 && useradd --system --uid 10001 --gid engagement --home-dir /var/lib/engagement \
      --no-create-home --shell /usr/sbin/nologin engagement \
 && mkdir -p /var/lib/engagement \
 && chown engagement:engagement /var/lib/engagement

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/engagement
EXPOSE 6066

# Liveness of the web server; no curl in the image, so the standard library does the request.
# It runs inside the container, where the worker listens on 0.0.0.0, so it asks 127.0.0.1 (never
# ENGAGEMENT_WEB_HOST, the name peers use, which may not resolve or be reachable from here).
# A non-2xx answer or no answer raises, and the non-zero exit marks the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ENGAGEMENT_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["engagement"]
CMD ["worker"]
