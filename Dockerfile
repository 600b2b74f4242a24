# tokengate container image: an OAuth2/OIDC auth gateway (see docs/deployment.md).
#
#   docker build -t tokengate .
#   docker run --read-only -p 8080:8080 \
#     -e TOKENGATE_CLIENT_SECRET=... -e TOKENGATE_SESSION_KEY=... -e TOKENGATE_REDIS_URL=... \
#     -v "$PWD/gateway.yaml:/etc/tokengate/gateway.yaml:ro" tokengate
#
# The base image is a build argument so that a build without a registry (.ci/image-check) can use a
# locally imported Debian bookworm root filesystem with Debian's python3.11. Both stages must use the
# same base: the virtualenv copied from the first stage points at the base's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# Stage 1: build wheels for tokengate and every dependency, then install them into /opt/venv.
# Compilers or headers, if a dependency ever needs them, stay in this stage.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what `pip wheel .` needs (the rest is excluded by .dockerignore as well).
COPY pyproject.toml README.md ./
COPY gateway ./gateway

# A private venv whose pip is used for building: Debian's system pip refuses to touch the system
# environment (PEP 668), and the official image's pip should not be upgraded in place either.
RUN python -m venv /opt/build-venv \
 && /opt/build-venv/bin/pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && /opt/build-venv/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links /wheels /wheels/tokengate-*.whl \
 && /opt/venv/bin/tokengate --help > /dev/null

# ---------------------------------------------------------------------------------------------------
# Stage 2: the runtime. No compilers, no pip in the venv, no wheels; only the installed venv.
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tokengate" \
      org.opencontainers.image.description="Async OAuth2 / OpenID Connect auth gateway (reverse proxy)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes; all bytecode was compiled
# at install time in the build stage. PYTHONUNBUFFERED: logs reach the container runtime at once.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

# A fixed, high, non-root uid/gid (10001) so that Kubernetes' runAsNonRoot can verify it numerically.
RUN groupadd --system --gid 10001 tokengate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tokengate

COPY --from=build /opt/venv /opt/venv
# The default configuration; in Kubernetes a ConfigMap is mounted over /etc/tokengate.
COPY config/gateway.yaml /etc/tokengate/gateway.yaml

USER 10001:10001

# 8080: public listener. 9090: admin listener (/healthz, /readyz, /metrics); it must never be
# published to the internet.
EXPOSE 8080 9090

# Exec form (hadolint DL3025); slim images have no curl, so the stdlib does the request. The probe
# reads server.admin_listen from the config (TOKENGATE_CONFIG or /etc/tokengate/gateway.yaml), so a
# ConfigMap that moves the admin port needs no new image; a wildcard bind is probed on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "gateway.healthcheck"]

# SIGTERM starts a graceful shutdown (server.shutdown_grace); SIGHUP reloads the configuration.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tokengate"]
CMD ["run", "--config", "/etc/tokengate/gateway.yaml"]
