# syntax=docker/dockerfile:1
# One image for all six TaskFlow functions; FUNCTION_TARGET picks one at run time:
#   python tools/build_web.py && docker build -t taskflow .   (the web app in web/dist must be built first)
#   (minikube: minikube image build -t dev.local/taskflow:0.1.0 .)
#   docker run -e FUNCTION_TARGET=tasks_api -p 8080:8080 taskflow
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: resolve the locked dependencies and the project wheel into a venv -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (the lock changes rarely: this layer stays cached).
COPY docker/requirements.lock docker/requirements.lock
RUN pip install --no-deps --only-binary=:all: -r docker/requirements.lock
# Then the project itself, as a wheel (no editable install, no sources left behind).
COPY pyproject.toml README.m[d] ./
COPY shared ./shared
RUN pip wheel --no-deps -w /tmp/wheels . \
 && pip install --no-deps /tmp/wheels/*.whl
COPY functions /app/functions
# The web app tasks-api serves at / (built from web/ by tools/build_web.py; found from WORKDIR /app).
COPY web/dist /app/web/dist
COPY docker/entrypoint.sh /app/entrypoint.sh
# Precompile everything: the root filesystem is read-only at run time and cold starts matter.
# unchecked-hash .pyc files stay valid whatever the file timestamps are after COPY.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv /app/functions \
 && chmod 0555 /app/entrypoint.sh

# ---- runtime: no compilers, no pip cache, non-root ----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PORT=8080 \
    TASKFLOW_MODE=dapr
RUN groupadd --system --gid 10001 taskflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin taskflow
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/app/entrypoint.sh"]
