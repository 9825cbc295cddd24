# SynthPACS in a container: serves HTTP (8080, with OHIF at /ohif/) and DIMSE (11112) on 0.0.0.0.

# The prebuilt OHIF Viewer, fetched from the npm registry by the project's own script.
FROM node:20-bookworm-slim AS ohif
WORKDIR /app
COPY scripts/install-ohif.sh scripts/
RUN scripts/install-ohif.sh

# The project's wheel: the code, the generators (weights, generator.json, model
# cards) and config/ (default.yaml and the cohorts, packaged as synthpacs/defaults).
FROM python:3.11-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY synthpacs ./synthpacs
COPY generators ./generators
COPY config ./config
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The CPU build of PyTorch first, from PyTorch's CPU index alone (no fallback to
# PyPI, whose Linux wheel is the multi-GB CUDA build).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

# The wheel, not the source tree. torch is already satisfied; the build fails if
# anything replaced it with a CUDA build.
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/synthpacs-*.whl && rm -rf /wheels \
 && python -c "import sys, torch; sys.exit(f'a CUDA build of torch got in: {torch.__version__}' if torch.version.cuda else 0)"
COPY --from=ohif /app/third_party/ohif ./third_party/ohif

VOLUME ["/data"]
EXPOSE 8080 11112
ENV SYNTHPACS_HOST=0.0.0.0 SYNTHPACS_DATA_DIR=/data SYNTHPACS_OHIF_DIR=/app/third_party/ohif
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
CMD ["synthpacs", "serve"]
