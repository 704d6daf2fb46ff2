# syntax=docker/dockerfile:1
# One image for every process of the service: ast-api (the default), ast-worker, ast-relay and
# ast-migrate, chosen by the command. Runtime dependencies only, pinned by requirements.lock.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY service ./service
# requirements.lock pins every package (dev tools too); as constraints it pins only what the
# service needs, so pytest, Locust and mypy stay out of the image.
RUN python -m venv /opt/ast \
 && /opt/ast/bin/pip install --constraint requirements.lock .

FROM python:3.11-slim-bookworm
# git: initialize_repository clones with it. Not pinned to a Debian revision (DL3008): the
# security updates of bookworm's git are what the image should get when rebuilt.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ast \
 && useradd --system --uid 10001 --gid ast --home-dir /home/ast --create-home --shell /usr/sbin/nologin ast \
 && mkdir -p /var/lib/ast/tmp /var/lib/ast/artifacts \
 && chown -R ast:ast /var/lib/ast
COPY --from=build /opt/ast /opt/ast
ENV PATH=/opt/ast/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8080 \
    WORKER_HEALTH_HOST=0.0.0.0 \
    WORKER_HEALTH_PORT=9100 \
    TEMP_DIR=/var/lib/ast/tmp \
    ARTIFACTS_DIR=/var/lib/ast/artifacts \
    AST_PROBE_URL=http://127.0.0.1:8080/ready
USER 10001:10001
WORKDIR /home/ast
EXPOSE 8080 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "service.probe"]
CMD ["ast-api"]
