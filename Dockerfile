# passkit-relay for any container host (Render, Fly.io, Railway, a VM):
#   docker build -t passkit-relay .
#   docker run -p 8000:8000 -e RELAY_SECRET_KEY=… -e PASSKIT_API_KEY=… -e PASSKIT_API_SECRET=… \
#              -e RELAY_ADMIN_PASSWORD=… -e DATABASE_URL=postgres://… passkit-relay
# (or -v relay-data:/data instead of DATABASE_URL: SQLite in /data/relay.db). See README, Deploy.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

# The locked dependencies; the last line of requirements.txt (".") installs the relay itself,
# with the shipped templates inside the package. The source is not kept in the image.
WORKDIR /src
COPY requirements.txt pyproject.toml README.md ./
COPY relay ./relay
COPY templates ./templates
RUN pip install --no-cache-dir -r requirements.txt \
    && rm -rf /src \
    && useradd --create-home --uid 10001 relay \
    && mkdir /data \
    && chown relay:relay /data

# Runs as an unprivileged user in /data: the default SQLite database (sqlite:///relay.db) lands
# there, and a templates folder put there (/data/templates) replaces the shipped ones.
USER relay
WORKDIR /data

EXPOSE 8000
# slim has no curl: python's urllib asks /healthz on the port the relay listens on ($PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"

# relay serve listens on $PORT (8000 unless the host sets it) and runs the migrations at start.
CMD ["relay", "serve", "--host", "0.0.0.0"]
