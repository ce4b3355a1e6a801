"""A run's fitted model as an MLflow model that takes formulas (pyfunc flavour).

Every parent run logs its fitted model under ``model/`` in MLflow's own format, so MLflow's tools load it:
``mlflow.pyfunc.load_model("runs:/<run id>/model")`` or ``mlflow models predict -m runs:/<run id>/model -i
new.csv -t csv --env-manager local``. Its input is a table with a ``formula`` column (and a ``structure`` column
of CIF texts where the run's featuriser needs structures); it featurises them inside, with the featuriser and
element table the run used, and returns the prediction in the target's units. The featuriser's version
(:func:`benchmarks.features.featurizer_version`, which names the element table's sha256) is recorded beside the
model and checked when it loads: features from other code would give other predictions, so such a model is
refused with the version it needs.

The model's own file (:meth:`benchmarks.contract.Model.save`) travels as an artifact of the MLflow model, which
is logged as a model from code (a three-line script that sets :class:`FormulaModel`; nothing pickled by MLflow):
loading needs this package installed, which ``--env-manager local`` provides.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from benchmarks.contract import Model
from benchmarks.features import FormulaError, featurize_rows, featurizer_version, parse_structures

ARTIFACT_PATH = "model"  # runs:/<run id>/model
FORMULA_COLUMN = "formula"
STRUCTURE_COLUMN = "structure"  # CIF text, read by pymatgen (featurisers that need structures)
STRUCTURE_FEATURIZERS = ("ward2017",)
_MODEL_FILE = "model.pkl"
_FEATURIZER_FILE = "featurizer.json"
_CODE_FILE = "formula_model.py"
# MLflow's "models from code": the script saved with the model, run when it loads.
_MODEL_CODE = """from mlflow.models import set_model

from studies.formula_model import FormulaModel

set_model(FormulaModel())
"""


class FeaturizerMismatch(ValueError):
    """The model was fitted on features that this installation computes differently."""


class FormulaModel(PythonModel):
    """Formulas (and structures) in, predictions out: featurise, then the run's fitted model."""

    def load_context(self, context: Any) -> None:
        meta = json.loads(Path(context.artifacts["featurizer"]).read_text())
        self.featurizer = str(meta["featurizer"])
        here = featurizer_version(self.featurizer)
        if here != meta["version"]:
            raise FeaturizerMismatch(
                f"this model needs features {meta['version']} and this installation computes {here}; install "
                f"irnet-bench at code version {meta.get('code_version', 'unknown')} to use it"
            )
        self.model = Model.load(context.artifacts["model"], device="cpu")

    # MLflow reads the input's type hint (a DataFrame: checked against the logged signature, nothing inferred).
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if FORMULA_COLUMN not in frame.columns:
            raise FormulaError(f"the input has no {FORMULA_COLUMN!r} column (it has {list(frame.columns)}); give "
                               f"one formula per row in a column named {FORMULA_COLUMN!r}")  # fmt: skip
        structures = None
        if self.featurizer in STRUCTURE_FEATURIZERS:
            if STRUCTURE_COLUMN not in frame.columns:
                raise FormulaError(f"featurizer {self.featurizer} needs crystal structures: add a "
                                   f"{STRUCTURE_COLUMN!r} column of CIF texts")  # fmt: skip
            try:
                structures = parse_structures(frame[STRUCTURE_COLUMN])
            except ValueError as exc:
                raise FormulaError(f"column {STRUCTURE_COLUMN!r}: {exc}") from None
        on_invalid = str((params or {}).get("on_invalid", "raise"))
        X = featurize_rows(frame[FORMULA_COLUMN].to_numpy(dtype=object), self.featurizer, structures=structures,
                           on_invalid=on_invalid, row_labels=list(frame.index))  # fmt: skip
        out = np.full(len(frame), np.nan)
        rows = np.isfinite(X).all(axis=1)  # only with on_invalid="nan" can a row be missing here
        if rows.any():
            out[rows] = self.model.predict(X[rows])
        return out


def log_formula_model(client: Any, run_id: str, model: Model, *, featurizer: str, code_version: str,
                      example_formulas: Sequence[str], requirements: Sequence[str]) -> str:  # fmt: skip
    """Save ``model`` as an MLflow pyfunc model and log it under the run's ``model/``; returns its URI.

    Written with :func:`mlflow.pyfunc.save_model` into a scratch folder and logged with the run's client (this
    suite writes through explicit run ids, never the fluent active run). Requirements are given, not inferred
    (inference would load the model in a subprocess)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = [ColSpec("string", FORMULA_COLUMN)]
    if featurizer in STRUCTURE_FEATURIZERS:
        columns.append(ColSpec("string", STRUCTURE_COLUMN))
    signature = ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
        params=ParamSchema([ParamSpec("on_invalid", "string", "raise")]),
    )
    example = None
    if featurizer not in STRUCTURE_FEATURIZERS and len(example_formulas):
        example = pd.DataFrame({FORMULA_COLUMN: [str(f) for f in example_formulas]})
    with tempfile.TemporaryDirectory(prefix="irnet-bench-pyfunc-") as tmp:
        folder = Path(tmp)
        model.save(folder / _MODEL_FILE)
        meta = {"featurizer": featurizer, "version": featurizer_version(featurizer), "code_version": code_version}
        (folder / _FEATURIZER_FILE).write_text(json.dumps(meta, indent=2))
        (folder / _CODE_FILE).write_text(_MODEL_CODE)
        mlflow.pyfunc.save_model(
            path=folder / ARTIFACT_PATH,
            python_model=str(folder / _CODE_FILE),
            artifacts={"model": str(folder / _MODEL_FILE), "featurizer": str(folder / _FEATURIZER_FILE)},
            signature=signature,
            input_example=example,
            pip_requirements=list(requirements),
        )
        client.log_artifacts(run_id, str(folder / ARTIFACT_PATH), artifact_path=ARTIFACT_PATH)
    return model_uri(run_id)


def model_uri(run_id: str) -> str:
    """Where a parent run's formula model is: load it with ``mlflow.pyfunc.load_model``."""
    return f"runs:/{run_id}/{ARTIFACT_PATH}"
