# The gateway image. Not built in this project's CI (no Docker engine there):
# keep it to plain, well-known steps.

# The recorder bundle (rrweb + loader), built from package-lock.json.
FROM node:20-bookworm-slim AS recorder
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY gateway/web ./gateway/web
RUN npm run build

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY --from=recorder /src/gateway/web/dist ./gateway/web/dist
RUN pip install . && rm -rf /root/.cache
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /data gateway \
    && mkdir -p /data && chown gateway /data
USER gateway

# Listen on all interfaces inside the container; map ports when running it.
ENV GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_ADMIN_LISTEN=0.0.0.0:9090 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_CONFIG=/app/config/gateway.toml
EXPOSE 8080 9090
VOLUME ["/data"]

HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2)"

# SIGTERM stops accepting and drains in-flight requests (server.shutdown_grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["serve"]
