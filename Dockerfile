# TokenKeep: a small self-hosted OAuth2 token gateway.
#
# The config and the SQLite database live in the /data volume
# (TOKENKEEP_CONFIG=/data/config.toml; database_path "tokenkeep.db" is relative
# to the config file, so /data/tokenkeep.db). Once, before the first start, the
# operator writes the config with fresh secrets:
#
#   docker compose run --rm tokenkeep tokenkeep init --public-url https://tokens.example.com
#
# then registers providers the same way (`... tokenkeep register-provider ALIAS`)
# and starts the service with `docker compose up -d`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A plain, non-editable install, as users get it: the migrations and templates
# are found inside the installed package, not in a source tree.
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY tokenkeep ./tokenkeep
COPY migrations ./migrations
RUN pip install . \
    && rm -rf /src

# Run as an unprivileged user that owns /data (a new named volume copies this
# ownership). Its home, not /data, receives gunicorn's control socket.
RUN useradd --system --uid 10001 --create-home --home-dir /home/tokenkeep \
        --shell /usr/sbin/nologin tokenkeep \
    && mkdir -p /data \
    && chown tokenkeep:tokenkeep /data \
    && chmod 0700 /data
ENV TOKENKEEP_CONFIG=/data/config.toml
VOLUME ["/data"]
WORKDIR /data
USER tokenkeep

EXPOSE 8000

# /healthz answers 200 when the database answers; urlopen raises on 503.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# The config's host (127.0.0.1) is only reachable inside the container; bind
# all interfaces here and let docker-compose.yml decide what is published.
CMD ["tokenkeep", "serve", "--host", "0.0.0.0"]
