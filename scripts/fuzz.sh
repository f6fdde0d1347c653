#!/usr/bin/env bash
# Fuzzes ftslm's readers of untrusted files with libFuzzer (cargo fuzz):
# GGUF, safetensors, JSONL records, the YAML configuration. Each target runs
# SECONDS (default 60) from the seed corpus in fuzz/corpus/TARGET; what it
# finds new goes to target/fuzz-corpus/TARGET (not committed), a crash to
# fuzz/artifacts/TARGET/ (then: make it a regression test).
#
#   scripts/fuzz.sh            # 60 s per target (the long run)
#   scripts/fuzz.sh 5          # what CI runs
#   scripts/fuzz.sh 600 gguf   # one target
#
# Limits: inputs up to 64 KiB; any single allocation above 64 MiB (1024 × the
# largest input) or a process above 2 GiB counts as a finding, as does a
# panic. Runs on the stable toolchain (RUSTC_BOOTSTRAP lets cargo-fuzz pass
# its flags) without a sanitizer: safe Rust needs none, and the kernels'
# unsafe code is not on these paths.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(gguf safetensors jsonl yaml_config); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)"
  cargo install --locked cargo-fuzz@0.13.2
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -s none 2>&1 | tail -1
for target in "${TARGETS[@]}"; do
  work="../target/fuzz-corpus/$target"
  mkdir -p "$work" "artifacts/$target"
  echo "== $target: ${SECONDS_PER_TARGET} s"
  cargo fuzz run -s none "$target" "$work" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -malloc_limit_mb=64 \
    -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|==|SUMMARY|panicked|thread)|Done [0-9]+ runs|ERROR" \
    || { echo "fuzzing $target found a problem: see fuzz/artifacts/$target"; exit 1; }
done
