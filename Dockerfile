# Edge video gateway. Build: docker build -t edge-gateway .
# Run (host networking, so WS-Discovery multicast and camera LANs are reachable):
#   docker run -d --network host -v /etc/gateway:/config -v /var/lib/gateway:/data \
#     -e GATEWAY_ADMIN_PASSWORD=... edge-gateway
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/config/gateway.yaml GATEWAY_DATA_DIR=/data \
    GATEWAY__SERVER__HOST=0.0.0.0

# PyAV, aiortc and opencv-python-headless ship manylinux wheels with their own FFmpeg,
# libvpx/opus and OpenCV: no system codecs needed. curl is only for the healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /data gateway \
 && mkdir -p /config /data && cp config/gateway.yaml /config/gateway.yaml \
 && chown -R gateway:gateway /data /config

USER gateway
VOLUME ["/config", "/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/api/v1/health || exit 1
STOPSIGNAL SIGTERM
CMD ["gateway", "run"]
