#!/usr/bin/env bash
# The first-GPU check (docs/guide/gpu.md "GPU check"): featurise formation_energy, IRNet-17/48 training throughput in
# fp32/bf16 with and without torch.compile, IRNet-17, SRNet-17 and plain-17 trained through the quick preset's
# budgeted schedule (40-epoch cosine) on all
# 239,190 rows and scored on the test part, and IRNet-17 in the paper's regime for a few epochs; ~9 minutes.
#   scripts/gpu_check.sh            on a machine with one NVIDIA GPU
#   scripts/gpu_check.sh --dry-run  the same stages on the CPU at a tiny size (CI)
# Needs only numpy, pandas and torch. The data comes from $IRNET_BENCH_CACHE, else ./.data-cache in the repo
# (copy it along to a machine without network), else the normal cache. Output (gpu_check.txt and
# gpu_check.json) goes to $OUT when set, else results/gpu_check/<UTC time>.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${IRNET_BENCH_CACHE:-}" && -d .data-cache ]]; then
  export IRNET_BENCH_CACHE="$PWD/.data-cache"
fi
out="${OUT:-results/gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
python=${PYTHON:-python3}
{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi
  "$python" -m benchmarks.gpu_check --out "$out" "$@"
} 2>&1 | tee "$out/gpu_check.txt"
