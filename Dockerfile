# Two images from one file: `app` (API + CPU worker, no torch) and `gpu` (adds the media stack).
FROM python:3.11-slim AS app
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY api api
COPY workflows workflows
COPY activities activities
COPY gpu_worker gpu_worker
COPY schemas schemas
COPY core core
RUN pip install --no-cache-dir .

FROM app AS gpu
# On a GPU host install the CUDA build of torch matching the driver instead of the CPU pin.
RUN pip install --no-cache-dir ".[gpu]"
