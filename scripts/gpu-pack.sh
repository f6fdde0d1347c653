#!/usr/bin/env bash
# Prepares the device check (scripts/gpu-check.sh) on a machine with Rust:
# builds the release binary, strips and gzips it into gpu-carry/ (ignored by
# git), which the device tool carries to the GPU machine (64 MiB travel; the
# GPU machine has no Rust toolchain and no network).
#
#   scripts/gpu-pack.sh
#   # then, through the device tool: carry ["gpu-carry"],
#   #   command "OUT=$OUT bash scripts/gpu-check.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p ftslm-cli
mkdir -p gpu-carry
strip -o gpu-carry/ftslm target/release/ftslm
gzip -9 -f gpu-carry/ftslm
ls -l gpu-carry
