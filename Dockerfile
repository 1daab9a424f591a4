# syntax=docker/dockerfile:1
# The dlplatform image: the official Ray 2.60 / Python 3.11 image plus the platform (with the lab
# extra, so the same image runs the Ray head and workers, Ray Job submitters and JupyterLab).
#
#   docker build -t <registry>/dlplatform:2.60.0 .
#   docker build -t <registry>/dlplatform:2.60.0-gpu \
#       --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The tag must start with the Ray version (2.60.0): KubeRay's rayVersion is checked against it.
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311
FROM ${BASE_IMAGE}

# CPU wheels by default (the CUDA build of torch is several GB); the -gpu image overrides this.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    DLP_HOME=/home/ray/dlplatform

# Dependencies first (this layer is reused until pyproject.toml changes), then the code.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --chown=ray:users pyproject.toml README.md /home/ray/dlplatform-src/
COPY --chown=ray:users dlplatform /home/ray/dlplatform-src/dlplatform
RUN pip install "/home/ray/dlplatform-src[lab]" \
    && python -c "import dlplatform, ray; assert ray.__version__ == '2.60.0', ray.__version__" \
    && mkdir -p /home/ray/dlplatform /home/ray/work

WORKDIR /home/ray
USER ray
EXPOSE 8000 8265 6379 10001 8888
# KubeRay and `ray up` replace the command; this default starts a single-node platform.
CMD ["bash", "-c", "dlp up --port 8000 && exec sleep infinity"]
