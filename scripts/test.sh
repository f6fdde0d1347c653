#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: prepares what the tests need
# (a Python venv with moto's AWS emulator server, TensorBoard, which reads our
# event files back, huggingface_hub, which reads our model cards, and
# NVIDIA's NVRTC, CUDA headers and ptxas wheels, with which the CUDA kernels
# are compiled and checked for spills on a machine with no GPU), then
# `cargo test`.
# Tests that need ../shared (real models, goldens, data) skip with a note when
# it is missing, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_WHEELS=('nvidia-cuda-nvrtc-cu12==12.9.86' 'nvidia-cuda-runtime-cu12==12.9.79' 'nvidia-cuda-nvcc-cu12==12.9.86')
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c "import tensorboard, huggingface_hub" 2>/dev/null \
  || ! compgen -G '.venv/lib/python3*/site-packages/nvidia/cuda_nvcc/bin/ptxas' >/dev/null; then
  echo "setting up .venv with moto[server] (AWS API emulator for the cloud tests) and the CUDA compiler wheels"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' 'tensorboard==2.21.0' 'huggingface_hub==2.5.0' "${CUDA_WHEELS[@]}"
fi
export FTSLM_MOTO_SERVER="$PWD/.venv/bin/moto_server"
export FTSLM_PYTHON="$PWD/.venv/bin/python"
NVIDIA=$(echo "$PWD"/.venv/lib/python3*/site-packages/nvidia)
export LD_LIBRARY_PATH="$NVIDIA/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FTSLM_CUDA_INCLUDE="$NVIDIA/cuda_runtime/include"
export FTSLM_PTXAS="$NVIDIA/cuda_nvcc/bin/ptxas"

cargo test --workspace --locked --no-fail-fast "$@"
