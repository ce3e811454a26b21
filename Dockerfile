# sparsewave service image: the Makefile's environment (Debian bookworm,
# scripts/install-system.sh with contrib/non-free for MBROLA, the project
# installed editable with pip), serving as a non-root user.
#   docker build -t sparsewave .
#   docker run -p 8000:8000 -v $PWD/my-bundles:/models:ro -e SPARSEWAVE_MODELS_DIR=/models sparsewave
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive

WORKDIR /app

# System packages first: they change least often. The script enables
# contrib/non-free itself and only installs what is missing.
COPY scripts/install-system.sh scripts/install-system.sh
RUN bash scripts/install-system.sh && rm -rf /var/lib/apt/lists/*

# The project, editable as `make install` does, so service/ finds bundles/ beside it.
COPY . .
RUN python -m pip install --upgrade pip && python -m pip install -e . \
    && mkdir -p /app/bundles

RUN useradd --create-home --uid 10001 --user-group sparsewave
USER sparsewave

# numba and torch caches go where this user can write
ENV HOME=/home/sparsewave \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    SPARSEWAVE_DEFAULTS_DIR=/app/bundles \
    SPARSEWAVE_HOST=0.0.0.0 \
    SPARSEWAVE_PORT=8000

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# exec form: uvicorn gets SIGTERM directly and drains in-flight requests (up to 30 s)
CMD ["sparsewave", "serve", "--host", "0.0.0.0", "--port", "8000"]
