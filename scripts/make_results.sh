#!/usr/bin/env bash
# Remakes the published results behind docs/results.md, one study at a time through scripts/run_study.sh: it
# imports the study's committed export first (its finished runs count as done, so the study continues where the
# published runs end), runs what is still missing, exports every finished run to docs/results/STUDY/export and
# rebuilds the report docs/results/STUDY from that export.
#
#   scripts/make_results.sh [STUDY ...]            # run or resume these studies (default: all five; hours to days)
#   scripts/make_results.sh --report [STUDY ...]   # only rebuild their reports from the committed exports
#
# Studies (docs/results.md has each one's wall time, code version and machine):
#   quick     the default command, `python -m benchmarks.run --task formation_energy`: six models, 10,000 rows
#   scaling   formation_energy at SIZES rows with seeds SEEDS, then the whole training part (all) with seed 0
#   elemnet   ElemNet on its own input (the 86 element fractions), the whole training part, seed 0: one fit in its
#             published regime (the paper preset's trial 0), stopped by ELEMNET_FIT_SECONDS (default 4000)
#   depth     plain and IRNet at 17, 24 and 48 layers, formation_energy at 30,000 rows, seeds DEPTH_SEEDS
#   matbench  the MATBENCH tasks, all five official folds, every training row (quick's 10,000-row cap binds on
#             matbench_perovskites), composition only
# Environment: RUNS (the studies' stores, one folder per study, default results/studies), THREADS (CPU threads per
# model, default every core; the published studies ran one worker per core, `taskset -c K` with THREADS=1),
# SIZES (default 1000,3000,10000,30000), SEEDS (default 0,1,2), DEPTH_SEEDS (default 0,1,2), MATBENCH (default
# the eight regression tasks a 2-core machine carries), ELEMNET_FIT_SECONDS (default 4000), PYTHON (default python).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-results/studies}
SIZES=${SIZES:-1000,3000,10000,30000}
SEEDS=${SEEDS:-0,1,2}
DEPTH_SEEDS=${DEPTH_SEEDS:-0,1,2}
MATBENCH=${MATBENCH:-matbench_steels matbench_jdft2d matbench_phonons matbench_expt_gap matbench_dielectric \
matbench_log_gvrh matbench_log_kvrh matbench_perovskites}
PYTHON=${PYTHON:-python}
export PYTHON
threads=(); [[ -n "${THREADS:-}" ]] && threads=(--threads "$THREADS")

report_only=false
if [[ "${1:-}" == "--report" ]]; then
  report_only=true
  shift
fi
studies=("$@")
[[ ${#studies[@]} -eq 0 ]] && studies=(quick scaling elemnet depth matbench)
for study in "${studies[@]}"; do
  case $study in
    quick | scaling | elemnet | depth | matbench) ;;
    *) echo "make_results: unknown study '$study' (quick, scaling, elemnet, depth, matbench)" >&2; exit 2 ;;
  esac
done

study() {  # study NAME benchmarks.run-arguments...: run or resume one benchmarks.run of study NAME
  local name=$1
  shift
  OUT="$RUNS/$name" scripts/run_study.sh "$name" "$@" --no-progress
}

for name in "${studies[@]}"; do
  if $report_only; then
    "$PYTHON" -m reports.build --export "docs/results/$name/export" --out "docs/results/$name"
    continue
  fi
  case $name in
    quick) study quick --task formation_energy ;;
    scaling)
      study scaling --task formation_energy --train-sizes "$SIZES" --seeds "$SEEDS" "${threads[@]}"
      study scaling --task formation_energy --train-sizes all --seeds 0 "${threads[@]}"
      ;;
    elemnet)
      # The published same-split check (CrabNet paper, Table 2): ElemNet as its authors trained it (Adam, lr 1e-4,
      # batch 32, raw fractions and targets, MAE loss), one fit. Its own study: a report holds one preset, and the
      # quick preset's large-batch regimes overfit ElemNet, which has no batch norm (docs/measurements.md "ElemNet").
      study elemnet --task formation_energy --preset paper --models elemnet --featurizer elemnet --train-sizes all \
        --seeds 0 --trials 1 --fit-timeout "${ELEMNET_FIT_SECONDS:-4000}" "${threads[@]}"
      ;;
    depth)
      study depth --task formation_energy --train-sizes 30000 --seeds "$DEPTH_SEEDS" "${threads[@]}" \
        --models plain-48,irnet-48,plain-17,irnet-17,plain-24,irnet-24
      ;;
    matbench)
      for task in $MATBENCH; do
        study matbench --task "$task" --max-train-rows 0 "${threads[@]}"
      done
      ;;
  esac
done
