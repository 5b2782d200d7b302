# syntax=docker/dockerfile:1
# The modelrollout operator image: `make image` (or `docker build -t modelrollout/operator:dev .`).
# Two stages so that build tooling never reaches the runtime image; the runtime runs as a fixed
# non-root UID that the chart's securityContext (runAsNonRoot, readOnlyRootFilesystem) expects.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that a source-only change reuses the cached dependency layer: only
# pyproject.toml goes in (a placeholder README satisfies its `readme`), so editing the README or the
# sources never reinstalls the wheels.
COPY pyproject.toml ./
RUN mkdir -p operator/modelrollout server-image/modelserver \
    && touch README.md operator/modelrollout/__init__.py server-image/modelserver/__init__.py \
    && pip install ".[operator]" \
    && pip uninstall -y modelrollout
COPY README.md ./
COPY operator/ operator/
COPY server-image/modelserver/ server-image/modelserver/
# pip and setuptools are build tools: 23 MB the runtime never uses.
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib \
    && python -c "import modelrollout.handlers, modelrollout.cli, modelrollout.telemetry" \
    && python -m pip uninstall -q -y pip setuptools

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="modelrollout-operator" \
      org.opencontainers.image.description="Kubernetes operator that rolls out ML models step by step, gated by Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 modelrollout \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin modelrollout
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# 8080: kopf liveness (/healthz); 8081: Prometheus metrics (/metrics).
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "modelrollout"]
CMD ["run", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
# The one step that changes with the sources comes last: every step after it is rebuilt with it
# (and with buildah's vfs storage, where overlayfs cannot be mounted, each is a full copy of the
# root filesystem: docs/local-cluster.md).
COPY --from=build /opt/venv /opt/venv
