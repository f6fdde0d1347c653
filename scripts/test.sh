#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: prepares what the tests need
# (a Python venv with moto's AWS emulator server and TensorBoard, which reads our event files back), then `cargo test`.
# Tests that need ../shared (real models, goldens, data) skip with a note when
# it is missing, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c "import tensorboard" 2>/dev/null; then
  echo "setting up .venv with moto[server] (AWS API emulator for the cloud tests)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' 'tensorboard==2.21.0'
fi
export FTSLM_MOTO_SERVER="$PWD/.venv/bin/moto_server"
export FTSLM_PYTHON="$PWD/.venv/bin/python"

cargo test --workspace --locked --no-fail-fast "$@"
