# syntax=docker/dockerfile:1

# One image for every tomstream service: each service is `tomstream <subcommand>`.
#
#   docker build -t tomstream:dev .
#   docker run --rm tomstream:dev --help
#   docker run --rm -e TOMSTREAM_POSTGRES_DSN=postgresql://... tomstream:dev db migrate
#
# Every dependency (psycopg[binary], confluent-kafka with librdkafka, pydantic-core, ...) ships
# manylinux wheels for linux/amd64, so neither stage needs a compiler. (On linux/arm64
# faust-streaming has no wheel; pip builds it from its sdist, which falls back to pure Python
# without a compiler.)

# ------------------------------------------------------------------------------------ builder
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src

# The pinned dependencies first, read from pyproject.toml alone, so that a change to the code
# reuses this (slow) layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; \
print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep=chr(10))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --requirement /tmp/requirements.txt

# Then the project itself, as a wheel (with its package data: tomstream/schemas/avro/**/*.avsc and
# tomstream/migrations/*.sql). .dockerignore keeps tests, tools, docs and the like out.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/tomstream-*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/tomstream --help > /dev/null

# ------------------------------------------------------------------------------------ runtime
FROM python:3.11-slim-bookworm AS runtime

ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="tomstream" \
      org.opencontainers.image.description="A streaming Target and Observation Manager for LSST DESC: alerts, broker classifications, spectra and cadences over Kafka." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed, numeric, non-root uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and volume permissions stay predictable.
RUN groupadd --system --gid 10001 tomstream \
    && useradd --system --uid 10001 --gid tomstream --no-log-init \
        --create-home --home-dir /home/tomstream --shell /usr/sbin/nologin tomstream

# Only the virtualenv: no wheels, no sources, no pip cache. It stays owned by root, so the
# service cannot modify its own code.
COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOMSTREAM_METRICS_HOST=0.0.0.0 \
    TOMSTREAM_LOG_FORMAT=json

WORKDIR /home/tomstream
USER 10001:10001

# No HEALTHCHECK in the image: the services are different kinds of process (one-shot jobs such
# as `db migrate`, Kafka consumers, an HTTP API), so each gets its own probe where it is
# deployed (docker-compose.yaml, the Kubernetes manifests).
HEALTHCHECK NONE

ENTRYPOINT ["tomstream"]
CMD ["--help"]
