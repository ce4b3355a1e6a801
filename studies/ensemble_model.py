"""A post-hoc ensemble as an MLflow model that takes formulas (pyfunc flavour), like any run's model.

The ensemble's model holds no fitted model of its own: its ``ensemble.json`` names each member (its parent run's
id, model name, weight and the URI of the member's logged formula model, :mod:`studies.formula_model`), and
loading it loads every member's model through MLflow; predicting is the members' predictions combined with
:func:`studies.ensembling.combine`, the same arithmetic that made the ensemble's recorded predictions, so
``mlflow.pyfunc.load_model(uri).predict(formulas)`` and ``mlflow models predict -m <uri> -i new.csv -t csv
--env-manager local`` reproduce them exactly. Members are loaded from the same tracking store (set
``MLFLOW_TRACKING_URI`` as for any ``runs:/`` URI); a member whose model cannot be loaded (its run deleted, its
artifacts moved) is refused with the member's run id.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from studies.ensembling import combine
from studies.formula_model import ARTIFACT_PATH, FORMULA_COLUMN, STRUCTURE_COLUMN, STRUCTURE_FEATURIZERS

_SPEC_FILE = "ensemble.json"
_CODE_FILE = "ensemble_model.py"
# MLflow's "models from code": the script saved with the model, run when it loads.
_MODEL_CODE = """from mlflow.models import set_model

from studies.ensemble_model import EnsembleModel

set_model(EnsembleModel())
"""


class EnsembleMemberError(ValueError):
    """A member of an ensemble whose model cannot be loaded; names the member's run id."""


@dataclass(frozen=True)
class MemberModel:
    """One member of an ensemble's MLflow model."""

    run_id: str  # the member's parent run (its published id)
    model: str
    weight: float
    model_uri: str  # where its formula model is, e.g. runs:/<id>/model
    featurizer: str = "magpie"


class EnsembleModel(PythonModel):
    """Formulas in, the weighted mean of the members' formula models' predictions out."""

    def load_context(self, context: Any) -> None:
        spec = json.loads(Path(context.artifacts["ensemble"]).read_text())
        self.weights = [float(m["weight"]) for m in spec["members"]]
        self.members = []
        for member in spec["members"]:
            try:
                self.members.append(mlflow.pyfunc.load_model(member["model_uri"]))
            except Exception as exc:  # MLflow raises several types for a missing run or artifact
                detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                raise EnsembleMemberError(
                    f"ensemble member run {member['run_id']} ({member['model']}): its model {member['model_uri']} "
                    f"cannot be loaded ({type(exc).__name__}: {detail}); is MLFLOW_TRACKING_URI the store of its "
                    "runs?"
                ) from None

    # MLflow reads the input's type hint (a DataFrame: checked against the logged signature, nothing inferred).
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        predictions = [np.asarray(m.predict(frame, params=params), dtype=np.float64) for m in self.members]
        return combine(self.weights, predictions)


def log_ensemble_model(client: Any, run_id: str, members: Sequence[MemberModel], *,
                       example_formulas: Sequence[str], requirements: Sequence[str]) -> str:  # fmt: skip
    """Save the ensemble of ``members`` as an MLflow pyfunc model and log it under the run's ``model/``; returns
    its URI (``runs:/<run id>/model``)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    needs_structure = any(m.featurizer in STRUCTURE_FEATURIZERS for m in members)
    columns: list[ColSpec | TensorSpec] = [ColSpec("string", FORMULA_COLUMN)]
    if needs_structure:
        columns.append(ColSpec("string", STRUCTURE_COLUMN))
    signature = ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
        params=ParamSchema([ParamSpec("on_invalid", "string", "raise")]),
    )
    example = None
    if not needs_structure and len(example_formulas):
        example = pd.DataFrame({FORMULA_COLUMN: [str(f) for f in example_formulas]})
    spec = {"members": [{"run_id": m.run_id, "model": m.model, "weight": m.weight, "model_uri": m.model_uri,
                         "featurizer": m.featurizer} for m in members]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="irnet-bench-ensemble-") as tmp:
        folder = Path(tmp)
        (folder / _SPEC_FILE).write_text(json.dumps(spec, indent=2))
        (folder / _CODE_FILE).write_text(_MODEL_CODE)
        mlflow.pyfunc.save_model(
            path=folder / ARTIFACT_PATH,
            python_model=str(folder / _CODE_FILE),
            artifacts={"ensemble": str(folder / _SPEC_FILE)},
            signature=signature,
            input_example=example,
            pip_requirements=list(requirements),
        )
        client.log_artifacts(run_id, str(folder / ARTIFACT_PATH), artifact_path=ARTIFACT_PATH)
    return f"runs:/{run_id}/{ARTIFACT_PATH}"
