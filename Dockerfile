# Edge video gateway. Build: docker build -t edge-gateway .
# Run (host networking, so WS-Discovery multicast and camera LANs are reachable):
#   docker run -d --network host -v /etc/gateway:/config -v /var/lib/gateway:/data \
#     -e GATEWAY_ADMIN_PASSWORD=... edge-gateway
#
# BASE is any Debian bookworm image, with or without Python: the official Python image by
# default; scripts/container-check builds on a local debootstrap base where no registry can
# be reached. Wheels found in deploy/wheelhouse/ are installed without an index (the check
# fills it from the tested venv); otherwise pip reads its index.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/config/gateway.yaml GATEWAY_DATA_DIR=/data \
    GATEWAY__SERVER__HOST=0.0.0.0 PATH=/opt/venv/bin:$PATH

# PyAV, aiortc and opencv-python-headless ship manylinux wheels with their own FFmpeg,
# libvpx/opus and OpenCV: no system codecs needed. curl is only for the healthcheck.
RUN set -eu; pkgs="curl ca-certificates"; \
    command -v python3 >/dev/null || pkgs="$pkgs python3 python3-venv"; \
    apt-get update; apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*

# The venv is made in a build stage, so neither the wheels nor pip's work stay in a layer.
FROM base AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY deploy/wheelhouse /wheelhouse
RUN set -eu; python3 -m venv /opt/venv; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; \
    then pip install --no-cache-dir --no-index --find-links /wheelhouse gateway; \
    else pip install --no-cache-dir .; fi

FROM base
COPY --from=build /opt/venv /opt/venv
COPY config/gateway.yaml /config/gateway.yaml
RUN useradd --system --uid 10001 --home-dir /data gateway \
 && mkdir -p /data && chown -R gateway:gateway /data /config

USER gateway
VOLUME ["/config", "/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${GATEWAY__SERVER__PORT:-8080}/api/v1/health" || exit 1
STOPSIGNAL SIGTERM
CMD ["gateway", "run"]
