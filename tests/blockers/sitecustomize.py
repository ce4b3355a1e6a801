"""Put this folder first on PYTHONPATH to make the packages a bare GPU node lacks (or those named in
$IRNET_BENCH_BLOCKED) unimportable.

Used by tests/test_speed.py and .ci/run to prove that ``benchmarks.speed`` and ``benchmarks.gpu_check`` need only
numpy, pandas and torch. ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` returns None,
which is how an absent package looks (torch probes optional packages with find_spec).
"""

import importlib.util
import os
import sys

# $IRNET_BENCH_BLOCKED (comma-separated) names other packages to block (tests/test_architecture.py).
BLOCKED = tuple(os.environ.get("IRNET_BENCH_BLOCKED", "").split(",")) if os.environ.get("IRNET_BENCH_BLOCKED") else (
    "optuna", "mlflow", "matminer", "pymatgen", "sklearn", "xgboost", "lightgbm"
)  # fmt: skip


def _blocked(name: str) -> bool:
    return name.split(".")[0] in BLOCKED


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on a bare GPU node)", name=name)
        return None


_find_spec = importlib.util.find_spec


def _find_spec_unless_blocked(name, package=None):
    return None if _blocked(name) else _find_spec(name, package)


importlib.util.find_spec = _find_spec_unless_blocked
sys.meta_path.insert(0, _Blocker())
