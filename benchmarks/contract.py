"""The one contract every model follows, deep or classical.

A model is constructed from a plain dict of parameters (merged over its declared defaults), fitted on a
training set with a validation set for early stopping, and returns a :class:`FitReport` with its convergence
curve. Models never see test data: the study hands them :class:`benchmarks.splits.TrainingData` only.

A new model is one new module in ``irnet/`` or ``baselines/``: a subclass of :class:`Model` and, beside it, a
module-level ``MODELS`` tuple of :class:`ModelInfo` records (name, class, family, budget group, search space,
the roles its parameters play, recorded packages, plot colour). :mod:`studies.registry` discovers them; nothing else in
the code base names the model (docs/ARCHITECTURE.md, "How to add a model").

A fit that fails because of its configuration (a diverging loss, a library refusing a parameter combination)
raises ``ValueError``, ``ArithmeticError``, ``RuntimeError`` or ``MemoryError`` (library-specific errors are
re-raised as one of these): the study records such a trial as failed and goes on.
"""

from __future__ import annotations

import abc
import importlib
import os
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.atomic import atomic_write
from benchmarks.searchspace import ModelSearch, check_space

# Called after every epoch (networks) or boosting round (boosters) with (step, val_mae).
# It may raise (for example ``optuna.TrialPruned``) to stop the fit; the exception propagates out of ``fit``.
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class CurvePoint:
    """One step of a convergence curve: step is the 1-based epoch or boosting round."""

    step: int
    train_mae: float
    val_mae: float
    seconds: float  # wall-clock seconds since the fit started


@dataclass
class FitReport:
    """What a fit returns besides the fitted model."""

    curve: list[CurvePoint]
    best_step: int | None  # the step whose weights/trees were kept; None when the model has no steps
    best_val_mae: float
    fit_seconds: float
    device: str  # "cpu" or "cuda:0", ...
    stopped: str  # "early_stopping", "max_steps", "time_limit" or "completed"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when a GPU is present, else ``cpu``; check an explicit ``cuda`` exists."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from benchmarks.errors import UsageError

        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        from benchmarks.errors import UsageError

        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


class Model(abc.ABC):
    """Base of all models. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]  # registry name and value of the MLflow `model` tag (the ModelInfo's name)
    # Whether ``fit`` takes ``checkpoint_path`` and resumes from it (networks: an hour-long fit must survive a
    # kill); the others restart their fit, which takes seconds to minutes. See :func:`fit_model`.
    resumable: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        unknown = set(params or {}) - set(self.default_params())
        if unknown:
            from benchmarks.errors import UsageError

            raise UsageError(
                f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(self.default_params())}"
            )
        self.params: dict[str, Any] = {**self.default_params(), **(params or {})}
        self.seed = int(seed)
        self.device = device

    @classmethod
    @abc.abstractmethod
    def default_params(cls) -> dict[str, Any]:
        """The published defaults for networks, the library's for the rest (plus step caps)."""

    @abc.abstractmethod
    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        on_step: StepCallback | None = None,
        time_limit_s: float | None = None,
    ) -> FitReport:
        """Fit on the training rows, early-stopping on the validation rows; return the report."""

    @abc.abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions as a 1-D float64 array."""

    @abc.abstractmethod
    def state(self) -> Any:
        """Everything beyond params and seed needed to predict again (picklable)."""

    @abc.abstractmethod
    def load_state(self, state: Any) -> None:
        """Restore what :meth:`state` returned."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to one file, atomically (temporary file, then rename)."""
        path = Path(path)
        payload = {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": self.params,
            "seed": self.seed,
            "state": self.state(),
            "saved_at": time.time(),
        }
        with atomic_write(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @staticmethod
    def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Model:
        """Load any model written by :meth:`save`."""
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
        module_name, qualname = payload["class"].split(":")
        cls = getattr(importlib.import_module(module_name), qualname)
        model = cls(payload["params"], seed=payload["seed"], device=device)
        model.load_state(payload["state"])
        return model


def fit_model(
    model: Model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    on_step: StepCallback | None = None,
    time_limit_s: float | None = None,
    checkpoint_path: Path | None = None,
) -> FitReport:
    """``model.fit``, handing ``checkpoint_path`` (where the fit keeps its state, to resume after a kill) only
    to a model that declares ``resumable``."""
    extra = {"checkpoint_path": checkpoint_path} if type(model).resumable and checkpoint_path is not None else {}
    return model.fit(X_train, y_train, X_val, y_val, on_step=on_step, time_limit_s=time_limit_s, **extra)


FAMILIES = ("network", "tree", "reference")


REFERENCE_THREADS = 2  # the machine fit costs are measured on: 2 CPU cores, one thread each


@dataclass(frozen=True)
class FitCost:
    """What one fit of a model is expected to cost, so that a preset can derive budgets from the training rows
    (:func:`studies.presets.derive_budget`): ``seconds_per_1k_rows`` (float32, on :data:`REFERENCE_THREADS`
    CPU threads) with a floor of ``min_seconds`` for small data; divided by ``gpu_speedup`` on a CUDA device;
    on a CPU, multiplied by ``REFERENCE_THREADS / threads`` when fewer threads run it (a worker pinned to
    one core takes about twice as long; more threads get no credit, so a budget never shrinks below the
    reference), and divided by ``bf16_speedup`` when the fit runs in bf16 autocast. A model trained for a set
    number of epochs (a budgeted schedule, ``epochs``) costs ``seconds_per_1k_rows_epoch`` per 1,000 rows and
    epoch instead, where it declares that rate."""

    seconds_per_1k_rows: float = 1.0
    min_seconds: float = 1.0
    gpu_speedup: float = 1.0
    bf16_speedup: float = 1.0
    seconds_per_1k_rows_epoch: float | None = None

    def expected_seconds(self, n_train: int, device: str = "cpu", *, threads: int = REFERENCE_THREADS,
                         bf16: bool = False, epochs: int | None = None) -> float:  # fmt: skip
        rate = self.seconds_per_1k_rows
        if epochs is not None and self.seconds_per_1k_rows_epoch is not None:
            rate = self.seconds_per_1k_rows_epoch * epochs
        seconds = max(self.min_seconds, rate * n_train / 1_000.0)
        if device.startswith("cuda"):
            return seconds / self.gpu_speedup
        seconds *= max(1.0, REFERENCE_THREADS / max(1, int(threads)))
        return seconds / self.bf16_speedup if bf16 else seconds


# The roles a preset or the suite sets on a model, whatever the model calls the parameter: a model's
# ``ModelInfo.roles`` maps each role it has onto one of its own parameters. Presets set roles for a whole
# group (``studies.presets``), so a new model keeps its library's names and a preset never guesses them.
ROLES: dict[str, str] = {
    "step_cap": "the most steps one fit may take (epochs, boosting rounds, trees)",
    "patience": "steps without a better validation score before a fit stops early",
    "batch_size": "training rows per gradient step",
    "lr_decay": "the factor on the learning rate after a plateau",
    "lr_schedule": "how the learning rate moves over a fit (plateau decay, or a budgeted warm-up and decay)",
    "warmup": "the fraction of a budgeted schedule spent warming the learning rate up",
    "mixed_precision": "bf16 autocast where the device runs it natively",
    "threads": "CPU threads of one fit (the run's --threads)",
    "depth": "the depth a figure groups the model's runs by",
    "loss": "the training loss",
    "standardize_inputs": "inputs standardised on the training rows",
    "clip_inputs": "inputs clipped to the training range",
    "standardize_target": "target standardised on the training rows",
    "split_criterion": "what a tree's split minimises",
}


@dataclass(frozen=True)
class ModelInfo:
    """Everything the suite needs to know about one model, declared once beside its class.

    ``family``: what the reports compare ("network"; "tree", whose best member is IRNet's crossover partner;
    "reference", a scale reference). ``group``: the key of a preset's budget rule and settings ("networks",
    "boosters", "forest", "reference"): models of one group share them. ``search``: the space and pruner
    settings. ``roles``: role (:data:`ROLES`) -> the model's own parameter that plays it; a preset that sets a
    role the model lacks refuses the run before any work. ``packages``: ``pkg.<tag>`` -> the distributions
    whose installed version is recorded on every run. ``color``: the model's colour in every figure.
    ``step_name``: what a step of its convergence curve counts. ``fit_cost``: what a fit is expected to cost
    (budgets by rows). ``converging_regime``: for a CPU preset whose trial 0 must converge within the budget
    (``Preset.trial0 = "converging"``), the parameters of such a configuration for a number of training rows;
    None: trial 0 is the model's defaults. ``summary``: one sentence on what the model is, and ``bibtex``: the
    publication(s) that define it, recorded on every run and quoted by a Matbench submission's ``info.json``.
    """

    name: str
    model_class: type[Model]
    family: str
    group: str
    search: ModelSearch
    color: str
    packages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    step_name: str = "step"
    fit_cost: FitCost = FitCost()
    converging_regime: Callable[[int], dict[str, Any]] | None = None
    summary: str = ""
    bibtex: str = ""

    def param(self, role: str) -> str | None:
        """The model's parameter that plays ``role``, or None when it has none."""
        return self.roles.get(role)

    def check(self) -> None:
        """Raise ValueError naming what is wrong with this declaration (the registry calls it)."""
        if not (isinstance(self.model_class, type) and issubclass(self.model_class, Model)):
            raise ValueError(f"model {self.name!r}: model_class {self.model_class!r} is not a Model subclass")
        if getattr(self.model_class, "name", None) != self.name:
            raise ValueError(f"model {self.name!r}: its class {self.model_class.__qualname__} says name "
                             f"{getattr(self.model_class, 'name', None)!r}")  # fmt: skip
        if self.family not in FAMILIES:
            raise ValueError(f"model {self.name!r}: family {self.family!r} is not one of {FAMILIES}")
        defaults = self.model_class.default_params()
        check_space(self.search.space, defaults, model=self.name)
        for role, param in self.roles.items():
            if role not in ROLES:
                raise ValueError(f"model {self.name!r}: unknown role {role!r}; roles: {', '.join(ROLES)}")
            if param not in defaults:
                raise ValueError(f"model {self.name!r}: role {role!r} names {param!r}, which is not a parameter")
