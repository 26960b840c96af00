# Two images from one file (docker-compose.temporal.yml builds both):
#   app: the API and the CPU worker (no torch)     gpu: adds the media stack for the GPU worker
FROM python:3.11-slim AS app
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY api api
COPY workflows workflows
COPY activities activities
COPY gpu_worker gpu_worker
COPY schemas schemas
COPY core core
# The operator CLIs (`python -m ops.users|replay|retention`) run in the API's container.
COPY ops ops
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 myspinbot
USER myspinbot
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

FROM app AS gpu
USER root
# The gpu extra pins torch 2.9.1 with its torchaudio/torchcodec (coqui-tts needs them): PyPI's Linux
# wheels are CUDA 12.8 builds (they also run on a CPU); the host driver must support CUDA 12.8.
RUN pip install --no-cache-dir ".[gpu]" \
    && mkdir -p /models /work && chown myspinbot /models /work
USER myspinbot
CMD ["gpu-worker"]
