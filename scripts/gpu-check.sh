#!/usr/bin/env bash
# The GPU check of the CUDA backend (issue 15), run on a machine with an
# NVIDIA GPU and no Rust toolchain: `ftslm env` and `ftslm selftest --device
# cuda` (every kernel compiled by NVRTC for the GPU and checked against the
# CPU engine, each check with its tolerance), written as JSON into $OUT.
#
# Needs gpu-carry/ftslm(.gz) from scripts/gpu-pack.sh. Finds the CUDA
# libraries the way ftslm loads them: under the names libcublas.so,
# libcublasLt.so and libnvrtc.so (or .so.12) on LD_LIBRARY_PATH. A machine
# with only CUDA 13's versioned files (libcublas.so.13, e.g. from PyTorch's
# nvidia-* wheels) gets links under those names in a scratch folder.
#
# Exit status: selftest's (0 = every check passed). On a machine without a
# GPU it exits 1 with "no CUDA device: ..." in $OUT/selftest.stderr.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
BIN=gpu-carry/ftslm
if [ -f "$BIN.gz" ]; then gunzip -c "$BIN.gz" > "$BIN"; fi
if [ ! -f "$BIN" ]; then
  echo "gpu-carry/ftslm is missing: run scripts/gpu-pack.sh first and carry gpu-carry" >&2
  exit 2
fi
chmod +x "$BIN"

# Folders that may hold the CUDA libraries: the toolkit's, then the nvidia-*
# wheels of any Python on the PATH.
dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && dirs+=("$d")
done
if command -v python3 >/dev/null; then
  while IFS= read -r d; do [ -d "$d" ] && dirs+=("$d"); done < <(python3 - <<'PY' 2>/dev/null
import os
try:
    import nvidia
    for root in nvidia.__path__:
        for name in sorted(os.listdir(root)):
            print(os.path.join(root, name, "lib"))
except ImportError:
    pass
PY
)
fi
links=$(mktemp -d)
for lib in cublas cublasLt nvrtc; do
  for d in "${dirs[@]}"; do
    if [ ! -e "$links/lib$lib.so" ] && [ ! -e "$d/lib$lib.so" ]; then
      found=$(ls "$d"/lib"$lib".so.1[0-9]* 2>/dev/null | sort -V | tail -1)
      [ -n "$found" ] && ln -s "$found" "$links/lib$lib.so"
    fi
  done
done
path=$links
for d in "${dirs[@]}"; do path="$path:$d"; done
export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME="$OUT/cache"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true; } > "$OUT/nvidia-smi.csv"
"$BIN" env --json > "$OUT/env.json" 2> "$OUT/env.stderr"
"$BIN" env > "$OUT/env.txt" 2>&1
start=$(date +%s)
timeout 300 "$BIN" selftest --device cuda --json > "$OUT/selftest.json" 2> "$OUT/selftest.stderr"
rc=$?
echo "$rc" > "$OUT/selftest.rc"
echo "selftest exit $rc in $(( $(date +%s) - start )) s"
cat "$OUT/env.txt"
if [ -s "$OUT/selftest.json" ]; then
  python3 - "$OUT/selftest.json" <<'PY' || cat "$OUT/selftest.json"
import json, sys
r = json.load(open(sys.argv[1]))
print(r["gpu"]["name"], r["gpu"]["compute_capability"], "driver", r["driver_version"], "nvrtc", r["nvrtc_version"], r["kernels_loaded"], "kernels")
for c in r["checks"]:
    print("ok  " if c["passed"] else "FAIL", c["name"], "|", c["shape"], "| max err %.3e (%.2f of bound)" % (c["max_abs_error"], c["worst_fraction_of_bound"]))
PY
fi
cat "$OUT/selftest.stderr"
exit "$rc"
