#!/usr/bin/env bash
# Remakes the published results: runs (or resumes) the benchmarks behind docs/results.md, exports their runs
# beside each report (DIR/export) and rebuilds the reports from those exports: the default quick run of
# formation_energy in docs/results/quick/, the formation_energy scaling study in docs/results/, the Matbench
# leaderboard in docs/results/matbench/.
#
#   scripts/make_results.sh              # everything (hours on 2 CPU cores; resumes where it stopped)
#   scripts/make_results.sh --report     # only rebuild the reports from the runs made so far
#
# Environment: QUICK_OUT (run folder of the default quick run, `python -m benchmarks.run --task
# formation_energy` with every core, default results/quick; QUICK_OUT= skips it), OUT (run folder of the rest,
# default results/docs), SIZES (scaling-study training sizes of formation_energy, default
# 1000,3000,10000,30000; SIZES= skips the study), MATBENCH (Matbench tasks, default the eight regression tasks
# a 2-core machine carries: all five official folds, every training row, composition only; MATBENCH= skips them), THREADS (CPU threads per model for the study and Matbench, default: every core).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/docs}
QUICK_OUT=${QUICK_OUT-results/quick}
SIZES=${SIZES-1000,3000,10000,30000}
MATBENCH=${MATBENCH-matbench_steels matbench_jdft2d matbench_phonons matbench_expt_gap matbench_dielectric \
matbench_log_gvrh matbench_log_kvrh matbench_perovskites}
threads=(); [[ -n "${THREADS:-}" ]] && threads=(--threads "$THREADS")

if [[ "${1:-}" != "--report" ]]; then
  # The default command, timed by itself: its own store, so the study below does not reuse its 10k runs.
  [[ -n "$QUICK_OUT" ]] && python -m benchmarks.run --task formation_energy --out "$QUICK_OUT" --no-progress
  # The quick preset: budgets by model group and rows (README, Budgets); all six models; seed 0.
  [[ -n "$SIZES" ]] && python -m benchmarks.run --task formation_energy --train-sizes "$SIZES" "${threads[@]}" \
      --out "$OUT" --no-progress
  for task in $MATBENCH; do  # every training row (--max-train-rows 0): quick's 10,000-row cap binds on perovskites
    python -m benchmarks.run --task "$task" --max-train-rows 0 "${threads[@]}" --out "$OUT" --no-progress
  done
fi
# Each report is built from its runs' export, committed beside it (DIR/export), so it can be rebuilt and checked
# without this machine's store (python -m reports.check_published).
publish() {  # publish STORE DIR TASK...: export the store's runs of TASK... into DIR/export, DIR's report from it
  local store=$1 dir=$2
  shift 2
  python -m reports.export --tracking-uri "$store" $(printf -- '--task %s ' "$@") --out "$dir/export"
  python -m reports.build --export "$dir/export" --out "$dir"
}
[[ -n "$QUICK_OUT" ]] && publish "sqlite:///$(cd "$QUICK_OUT" && pwd)/mlflow.db" docs/results/quick formation_energy
store="sqlite:///$(cd "$OUT" && pwd)/mlflow.db"
[[ -n "$SIZES" ]] && publish "$store" docs/results formation_energy
if [[ -n "$MATBENCH" ]]; then
  publish "$store" docs/results/matbench $MATBENCH
fi
