#!/usr/bin/env bash
# A long study that outlives the machine it runs on (docs/guide/reports.md "Studies that outlive a machine").
#
#   scripts/run_study.sh NAME [benchmarks.run arguments ...]
#   e.g. scripts/run_study.sh scaling --task formation_energy --train-sizes 1000,3000,10000,30000 --seeds 0,1,2
#
# 1. Where the stores under OUT do not exist yet but the study's export is published (PUBLISH/export), the export
#    is imported first: its finished runs count as done, so the same command continues where the last machine
#    stopped instead of starting over (runs not finished there are run again; a fit in progress is lost).
# 2. `python -m benchmarks.run ARGS --out OUT` (it resumes by itself on the same machine).
# 3. Whether or not the run completed, every finished run is exported to PUBLISH/export and the report is rebuilt
#    from that export into PUBLISH: commit PUBLISH, and nothing published depends on OUT surviving.
#
# Environment: OUT (default results/studies/NAME: the Optuna and MLflow stores), PUBLISH (default
# docs/results/NAME, in this checkout), PYTHON (default python). Run it from a fixed commit (a git worktree) with
# PUBLISH pointing into the checkout you commit from; pin one worker per core with `taskset -c K` and --threads 1.
# Exit status: that of benchmarks.run (2: bad arguments, nothing run or exported).
set -euo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
  echo "usage: scripts/run_study.sh NAME [benchmarks.run arguments ...]" >&2
  exit 2
fi
name=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/results/studies/$name}
publish=${PUBLISH:-$repo/docs/results/$name}
python=${PYTHON:-python}
uri="sqlite:///$out/mlflow.db"

if [[ ! -e $out/mlflow.db && -f $publish/export/irnet-bench-export.json ]]; then
  echo "run_study: importing the published runs of $name from $publish/export into $out" >&2
  mkdir -p "$out"
  "$python" -m reports.export --import "$publish/export" --tracking-uri "$uri"
fi

status=0
"$python" -m benchmarks.run "$@" --out "$out" || status=$?
if [[ $status -eq 2 || ! -e $out/mlflow.db ]]; then
  exit "$status"
fi
"$python" -m reports.export --tracking-uri "$uri" --out "$publish/export"
"$python" -m reports.build --export "$publish/export" --out "$publish"
echo "run_study: $name exported to $publish (commit it); benchmarks.run exit status $status" >&2
exit "$status"
