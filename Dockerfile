# SynthPACS in a container: serves HTTP (8080, with OHIF at /ohif/) and DIMSE (11112) on 0.0.0.0.

# The prebuilt OHIF Viewer, fetched from the npm registry by the project's own script.
FROM node:20-bookworm-slim AS ohif
WORKDIR /app
COPY scripts/install-ohif.sh scripts/
RUN scripts/install-ohif.sh

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# The CPU build of PyTorch first, so that nothing pulls a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" || pip install "torch==2.13.0"

COPY pyproject.toml README.md ./
COPY synthpacs ./synthpacs
COPY generators ./generators
COPY config ./config
COPY scripts ./scripts
RUN pip install -e .
COPY --from=ohif /app/third_party/ohif ./third_party/ohif

VOLUME ["/data"]
EXPOSE 8080 11112
ENV SYNTHPACS_HOST=0.0.0.0 SYNTHPACS_DATA_DIR=/data
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
CMD ["synthpacs", "serve"]
