"""IRNet and its comparison networks (SRNet, plain deep network, ElemNet) under the benchmark's Model contract:
:mod:`irnet.networks` builds them, :mod:`irnet.training` trains them, :mod:`irnet.models` declares them, and
:mod:`irnet.estimators` offers them as scikit-learn estimators.

The public names are importable from the package (``from irnet import IRNetRegressor, build_model``). They are
loaded on first use (PEP 562), so that ``import irnet.training`` on a bare GPU node, which has torch but not
scikit-learn (``scripts/gpu_check.sh``), does not import the estimators.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_model": "irnet.networks",
    "build_network": "irnet.networks",
    "count_parameters": "irnet.networks",
    "ARCHITECTURES": "irnet.networks",
    "ARCHS": "irnet.networks",
    "TrainConfig": "irnet.training",
    "train_network": "irnet.training",
    "NetworkModel": "irnet.models",
    "IRNetModel": "irnet.models",
    "SRNetModel": "irnet.models",
    "PlainNetModel": "irnet.models",
    "ElemNetModel": "irnet.models",
    "IRNetRegressor": "irnet.estimators",
    "SRNetRegressor": "irnet.estimators",
    "PlainNetRegressor": "irnet.estimators",
    "ElemNetRegressor": "irnet.estimators",
    "MagpieFeaturizer": "irnet.estimators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
