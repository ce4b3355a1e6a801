"""Classical baselines under the model contract: random forest, XGBoost, LightGBM and the dummy reference.

``BASELINES`` maps each model's registry name (the MLflow ``model`` tag) to its class.
"""
from __future__ import annotations

from benchmarks.contract import Model

from baselines.dummy import DummyModel
from baselines.forest import RandomForestModel
from baselines.lgbm import LightGBMModel
from baselines.xgb import XGBoostModel

BASELINES: dict[str, type[Model]] = {
    cls.name: cls for cls in (RandomForestModel, XGBoostModel, LightGBMModel, DummyModel)
}

__all__ = ["BASELINES", "DummyModel", "LightGBMModel", "RandomForestModel", "XGBoostModel"]
