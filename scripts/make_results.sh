#!/usr/bin/env bash
# Remakes the published results: runs (or resumes) the benchmarks behind docs/results.md and rebuilds their
# reports from the MLflow store: the default quick run of formation_energy in docs/results/quick/, the
# formation_energy scaling study in docs/results/, the Matbench leaderboard in docs/results/matbench/.
#
#   scripts/make_results.sh              # everything (hours on 2 CPU cores; resumes where it stopped)
#   scripts/make_results.sh --report     # only rebuild the reports from the runs made so far
#
# Environment: QUICK_OUT (run folder of the default quick run, `python -m benchmarks.run --task
# formation_energy` with every core, default results/quick; QUICK_OUT= skips it), OUT (run folder of the rest,
# default results/docs), SIZES (scaling-study training sizes of formation_energy, default
# 1000,3000,10000,30000; SIZES= skips the study), MATBENCH (Matbench tasks, default matbench_steels
# matbench_jdft2d matbench_expt_gap: all five official folds, every training row, composition only; MATBENCH=
# skips them), THREADS (CPU threads per model for the study and Matbench, default: every core).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/docs}
QUICK_OUT=${QUICK_OUT-results/quick}
SIZES=${SIZES-1000,3000,10000,30000}
MATBENCH=${MATBENCH-matbench_steels matbench_jdft2d matbench_expt_gap}
threads=(); [[ -n "${THREADS:-}" ]] && threads=(--threads "$THREADS")

if [[ "${1:-}" != "--report" ]]; then
  # The default command, timed by itself: its own store, so the study below does not reuse its 10k runs.
  [[ -n "$QUICK_OUT" ]] && python -m benchmarks.run --task formation_energy --out "$QUICK_OUT" --no-progress
  # The quick preset: budgets by model group and rows (README, Budgets); all six models; seed 0.
  [[ -n "$SIZES" ]] && python -m benchmarks.run --task formation_energy --train-sizes "$SIZES" "${threads[@]}" \
      --out "$OUT" --no-progress
  for task in $MATBENCH; do
    python -m benchmarks.run --task "$task" "${threads[@]}" --out "$OUT" --no-progress
  done
fi
if [[ -n "$QUICK_OUT" ]]; then
  python -m reports.build --tracking-uri "sqlite:///$(cd "$QUICK_OUT" && pwd)/mlflow.db" --task formation_energy \
      --out docs/results/quick
fi
store="sqlite:///$(cd "$OUT" && pwd)/mlflow.db"
[[ -n "$SIZES" ]] && python -m reports.build --tracking-uri "$store" --task formation_energy --out docs/results
if [[ -n "$MATBENCH" ]]; then
  python -m reports.build --tracking-uri "$store" $(printf -- '--task %s ' $MATBENCH) --out docs/results/matbench
fi
