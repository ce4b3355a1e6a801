#!/usr/bin/env bash
# Python 3.12 and 3.13 (CI runs 3.11): the full dependency set resolves, and the project installs and its
# torch-free part imports and featurises. The heavy part is only resolved, not installed: on these Pythons pip
# would take a CUDA build of torch (several GB) where 3.11 gets the CPU wheel.
#   scripts/check_pythons.sh [PYTHON ...]   (default: python3.12 python3.13, or pyenv's 3.12/3.13)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
pythons=("$@")
if [[ ${#pythons[@]} -eq 0 ]]; then
  for v in 3.12 3.13; do
    found=""
    for candidate in $(ls -d /root/.pyenv/versions/$v.*/bin/python 2>/dev/null) "python$v"; do
      if "$candidate" -c pass 2>/dev/null; then found=$candidate; break; fi  # skips pyenv shims that fail
    done
    [[ -n "$found" ]] || { echo "check_pythons: no working python$v; pass interpreters as arguments" >&2; exit 2; }
    pythons+=("$found")
  done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for py in "${pythons[@]}"; do
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "== Python $version ($py)"
  # 1. Every dependency, torch and the test extra included, resolves (metadata only: nothing installed).
  "$py" -m pip install --quiet --dry-run --ignore-installed --report "$work/report-$version.json" "$repo[test]" 2>&1 \
    | grep -v "is ignored" || true
  "$py" - "$work/report-$version.json" <<'PY'
import json, sys
installs = json.load(open(sys.argv[1]))["install"]
names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
missing = [n for n in ("torch", "optuna", "mlflow", "matminer", "xgboost-cpu", "lightgbm", "pytest") if n not in names]
assert not missing, f"not resolved: {missing}"
print(f"resolves: {len(installs)} packages, torch {names['torch']}, numpy {names['numpy']}, pandas {names['pandas']}")
PY
  # 2. The project installs (without its dependencies) beside numpy and pandas, and the torch-free part works.
  "$py" -m venv "$work/venv-$version"
  "$work/venv-$version/bin/python" -m pip install --quiet "numpy" "pandas>=2.2" 2>&1 | grep -v "is ignored" || true
  "$work/venv-$version/bin/python" -m pip install --quiet --no-deps "$repo" 2>&1 | grep -v "is ignored" || true
  (cd "$work" && "$work/venv-$version/bin/python" - <<'PY'
import sys
import benchmarks.errors, benchmarks.loader, benchmarks.registry, benchmarks.splits, benchmarks.paths
from benchmarks.features import featurize_formulas
X = featurize_formulas(["Fe2O3", "NaCl", "Hg0.7Cd0.3Te", "not a formula"])
assert X.shape == (4, 145) and bool((X[:3] == X[:3]).all()) and bool((X[3] != X[3]).all()), X
print(f"installs and imports on {sys.version.split()[0]}: featurize_formulas gives {X.shape}")
PY
  )
done
