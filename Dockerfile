# sparsewave service image: the Makefile's environment (Debian bookworm,
# scripts/install-system.sh with contrib/non-free for MBROLA, the project
# installed editable with pip), serving as a non-root user.
#   docker build -t sparsewave .
#   docker run -p 8000:8000 -v $PWD/my-bundles:/models:ro -e SPARSEWAVE_MODELS_DIR=/models sparsewave
# scripts/check-docker-build.sh builds and serves it without a Docker daemon
# (buildah, podman); it passes BASE_IMAGE where Docker Hub is out of reach.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

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

# The project's dependencies, read from pyproject.toml, in a layer of their
# own: torch is gigabytes, and editing a source file should not fetch it again.
COPY pyproject.toml pyproject.toml
RUN python -m pip install --upgrade pip \
    && python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && python -m pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

# The project, editable as `make install` does, so service/ finds bundles/ beside it.
# COPY keeps the build context's modes, and bundles exported before
# models/bundle.py made them 0755/0644 are private (0700 folders, 0600
# weights): the service user could not read them. find touches only those,
# so a fresh clone adds no copies to the layer.
COPY . .
RUN find /app \( -type d ! -perm -a+rx -o -type f ! -perm -a+r \) -exec chmod a+rX {} + \
    && python -m pip install -e . && mkdir -p /app/bundles

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
