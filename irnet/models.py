"""The four published networks as :class:`benchmarks.contract.Model` subclasses: irnet, srnet, plain, elemnet.

:class:`TorchNetworkModel` is any torch network trained by :func:`irnet.training.train_network` (a subclass says
how to build it: TabM, ``irnet/tabm_model.py``, is one); :class:`NetworkModel` builds the published ones, and a
subclass only names its architecture. Parameters (``default_params``) are the paper's training setup plus
``depth``, the step cap and the standardisation and mixed-precision switches documented in
:mod:`irnet.training`. ``MODELS`` declares the four to the registry, with the search space they share and the
regime that converges on a CPU.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmarks.contract import FitCost, FitReport, Model, ModelInfo, StepCallback, resolve_device
from benchmarks.searchspace import ModelSearch, Spec, choice, log_uniform, optional
from irnet.networks import ARCHITECTURES, build_model
from irnet.training import Scaler, TrainConfig, predict, train_network


class TorchNetworkModel(Model):
    """A torch network, built by the subclass (:meth:`build`), trained by :func:`irnet.training.train_network`
    (its parameters are the training settings of :class:`irnet.training.TrainConfig` plus the subclass's own)."""

    arch: ClassVar[str]  # recorded in the saved state (checked on load) and on the run (tag model_arch)
    resumable: ClassVar[bool] = True

    def __init__(self, params: dict[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(params, seed=seed, device=device)
        # Fail on bad settings at construction, not after featurising.
        TrainConfig.from_params(self.params)
        self.check_architecture()
        self._net: nn.Module | None = None
        self._x_scaler: Scaler | None = None
        self._y_scaler: Scaler | None = None
        self._n_features: int | None = None

    def check_architecture(self) -> None:
        """Raise ValueError on architecture parameters :meth:`build` cannot build (none here)."""

    @abc.abstractmethod
    def build(self, n_features: int) -> nn.Module:
        """A fresh network for ``n_features`` inputs from this model's parameters; its forward returns one
        prediction per row, ``(batch,)``, or in training mode one per ensemble member, ``(batch, k)``."""

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "lr": 1e-4,
            "batch_size": 32,
            "optimizer": "adam",
            "weight_decay": 0.0,
            "loss": "mae",
            "patience": 200,
            "max_epochs": 1000,  # cap; the paper has none beyond early stopping
            "lr_decay": 1.0,  # constant learning rate, as in the paper
            "schedule": "plateau",  # "cosine"/"linear": budgeted schedules over max_epochs (irnet.training)
            "warmup": 0.05,  # budgeted schedules: fraction of the steps spent warming up
            "standardize_inputs": True,  # departure from the paper (raw inputs); False reproduces it
            "clip_inputs": True,  # departure: inputs clipped to the training range; False reproduces the paper
            "standardize_target": True,
            "amp": False,  # bf16 autocast where the device has native bf16 (CUDA, AMX/AVX-512 bf16 CPUs)
            "compile": False,  # torch.compile the training forward (pays off on long GPU runs only)
        }

    def _torch_device(self) -> str:
        return resolve_device(self.device)

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        on_step: StepCallback | None = None,
        time_limit_s: float | None = None,
        checkpoint_path: Path | None = None,
    ) -> FitReport:
        """Build a fresh network (weights seeded with ``seed``), train it and keep the best epoch's weights;
        with ``checkpoint_path``, save the training state there and resume from it (:func:`train_network`)."""
        device = self._torch_device()
        n_features = int(np.asarray(X_train).shape[1])
        torch.manual_seed(self.seed)  # weight initialisation
        net = self.build(n_features)
        result = train_network(
            net,
            X_train,
            y_train,
            X_val,
            y_val,
            TrainConfig.from_params(self.params),
            seed=self.seed,
            device=device,
            on_step=on_step,
            time_limit_s=time_limit_s,
            checkpoint_path=checkpoint_path,
        )
        self._net, self._n_features = net, n_features
        self._x_scaler, self._y_scaler = result.x_scaler, result.y_scaler
        return result.report

    def _fitted(self) -> tuple[nn.Module, Scaler, Scaler, int]:
        if self._net is None or self._x_scaler is None or self._y_scaler is None or self._n_features is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict()")
        return self._net, self._x_scaler, self._y_scaler, self._n_features

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in the target's original units, 1-D float64."""
        net, x_scaler, y_scaler, n_features = self._fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(f"{self.name}: expected X of shape (n, {n_features}), got {X.shape}")
        device = next(net.parameters()).device
        return predict(net, X, x_scaler, y_scaler, device=device)

    def state(self) -> dict[str, Any]:
        """Weights as CPU tensors, the two scalers and the input width (the architecture is in the params)."""
        net, x_scaler, y_scaler, n_features = self._fitted()
        return {
            "arch": self.arch,
            "n_features": n_features,
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "x_scaler": x_scaler.to_state(),
            "y_scaler": y_scaler.to_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Rebuild the network from :meth:`state` on this model's device, in eval mode."""
        if state["arch"] != self.arch:
            raise ValueError(f"{self.name}: saved state is for architecture {state['arch']!r}")
        net = self.build(int(state["n_features"]))
        net.load_state_dict(state["state_dict"])
        net.to(self._torch_device()).eval()
        self._net, self._n_features = net, int(state["n_features"])
        self._x_scaler = Scaler.from_state(state["x_scaler"])
        self._y_scaler = Scaler.from_state(state["y_scaler"])

    @property
    def network(self) -> nn.Module:
        """The fitted torch module (for inspection and tests)."""
        return self._fitted()[0]


class NetworkModel(TorchNetworkModel):
    """A published network (:func:`irnet.networks.build_model`): ``arch`` at one of the paper's depths, tuned
    unless ``fixed_depth`` fixes it (then the depth is not in the model's search space either)."""

    fixed_depth: ClassVar[int | None] = None
    fixed_depth_reason: ClassVar[str] = ""

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"depth": cls.fixed_depth or 17, **super().default_params()}

    def check_architecture(self) -> None:
        depth = self.params["depth"]
        if depth not in ARCHITECTURES:
            raise ValueError(f"{self.name}: unknown depth {depth!r}; valid: {sorted(ARCHITECTURES)}")
        if self.fixed_depth is not None and int(depth) != self.fixed_depth:
            raise ValueError(f"{self.name}: the depth is fixed at {self.fixed_depth} ({self.fixed_depth_reason}), "
                             f"got {depth}")  # fmt: skip

    def build(self, n_features: int) -> nn.Module:
        return build_model(self.arch, int(self.params["depth"]), n_features)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "depth": int(self.params["depth"])}  # read by loaders of older versions


class IRNetModel(NetworkModel):
    """IRNet: a residual shortcut around every layer (Jha et al., KDD 2019)."""

    name: ClassVar[str] = "irnet"
    arch: ClassVar[str] = "irnet"


class SRNetModel(NetworkModel):
    """SRNet: one residual shortcut around every stack of equal-width layers."""

    name: ClassVar[str] = "srnet"
    arch: ClassVar[str] = "srnet"


class PlainNetModel(NetworkModel):
    """The plain deep network: IRNet's layers without shortcuts."""

    name: ClassVar[str] = "plain"
    arch: ClassVar[str] = "plain"


class AtDepthModel(NetworkModel):
    """A published network with its depth fixed, not tuned: the paper's depth claim (a plain network gets worse
    as it gets deeper, IRNet does not; Jha et al., KDD 2019) needs each depth as a study and a run of its own."""

    fixed_depth_reason: ClassVar[str] = "one study per depth"


def _at_depth(class_name: str, arch: str, depth: int) -> type[AtDepthModel]:
    """The model ``<arch>-<depth>``, a class named ``class_name`` in this module (saved models name it)."""
    attrs = {"name": f"{arch}-{depth}", "arch": arch, "fixed_depth": depth, "__module__": __name__,
             "__qualname__": class_name, "__doc__": f"{arch} at depth {depth}, the depth not tuned."}  # fmt: skip
    return type(class_name, (AtDepthModel,), attrs)


IRNet17Model = _at_depth("IRNet17Model", "irnet", 17)
IRNet24Model = _at_depth("IRNet24Model", "irnet", 24)
IRNet48Model = _at_depth("IRNet48Model", "irnet", 48)
Plain17Model = _at_depth("Plain17Model", "plain", 17)
Plain24Model = _at_depth("Plain24Model", "plain", 24)
Plain48Model = _at_depth("Plain48Model", "plain", 48)


class ElemNetModel(NetworkModel):
    """ElemNet (ReLU, no batch norm, dropout after its first four stacks), 17 layers as published, on raw inputs:
    its inputs are element fractions, already in [0, 1], which the published code feeds unscaled (standardising
    them turns a rare element's fraction into a z-score in the tens: above 10 in 85 of the 86 formation_energy
    training columns, up to 403)."""

    name: ClassVar[str] = "elemnet"
    arch: ClassVar[str] = "elemnet"
    fixed_depth: ClassVar[int | None] = 17
    fixed_depth_reason: ClassVar[str] = "ElemNet is published at depth 17 only"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {**super().default_params(), "standardize_inputs": False, "clip_inputs": False}


# rtdl's MLP/ResNet ranges for the optimiser (Gorishniy et al. 2021, yandex-research/rtdl) plus the paper's
# depths and batch sizes, and the larger batches a CPU needs (an epoch at batch 32 takes ~4x as long as at
# batch 1024 on 2 cores). Training rules that are not hyper-parameters of the comparison (loss, patience,
# max_epochs, standardisation) stay at the model defaults unless a preset fixes them.
NETWORK_SPACE: dict[str, Spec] = {
    "lr": log_uniform(1e-5, 1e-2),
    "batch_size": choice(32, 64, 128, 256, 512, 1024, 2048),
    "depth": choice(17, 24, 48),
    "optimizer": choice("adam", "adamw"),
    "weight_decay": optional(log_uniform(1e-6, 1e-3), off=0.0),
}
NETWORK_SEARCH = ModelSearch(NETWORK_SPACE, report_every=1, warmup_steps=5, source="rtdl MLP ranges + paper depths")
# The fixed-depth variants: the same space without the depth.
AT_DEPTH_SEARCH = ModelSearch({name: spec for name, spec in NETWORK_SPACE.items() if name != "depth"}, report_every=1,
                              warmup_steps=5, source="rtdl MLP ranges; depth fixed")  # fmt: skip

# The published training regime (Jha et al., KDD 2019; NU-CUCIS/IRNet) is the models' defaults: Adam, lr 1e-4,
# batch 32, no weight decay.
CONVERGING_BATCH_SIZES = (1024, 512, 256, 128)
MIN_STEPS_PER_EPOCH = 8


def converging_network_regime(n_train: int) -> dict[str, Any]:
    """A network regime that early-stops within minutes on a 2-core CPU: AdamW, the largest batch that still
    gives ``MIN_STEPS_PER_EPOCH`` steps per epoch (1024 at 10k rows), lr 3e-3 at batch 1024 scaled by the
    square root of the batch ratio (1e-3..3e-3 for batches 128..1024). Measured: docs/measurements.md "Budgeted
    schedules, measured"."""
    batch = next((b for b in CONVERGING_BATCH_SIZES if n_train >= MIN_STEPS_PER_EPOCH * b), CONVERGING_BATCH_SIZES[-1])
    lr = round(3e-3 * math.sqrt(batch / 1024), 6)
    return {"optimizer": "adamw", "lr": lr, "batch_size": batch, "weight_decay": 0.0}


# Expected cost of a fit: the converging regime early-stops after ~NETWORK_EPOCHS_TO_STOP epochs at
# ~NETWORK_CPU_SAMPLES_PER_S float32 training rows per second on 2 idle cores, ~18 s per 1,000 rows.
# Throughput: IRNet-17 at batch 1024, 4,536 float32 and 10,085 bf16 samples/s (2.22x; `python -m
# benchmarks.speed`, 2026-12-02, AMX CPU, 2 threads). Epochs: 49-100 at 10k formation_energy rows by patience
# and lr_decay (docs/measurements.md "Budgeted schedules, measured"); the quick trial 0 85 epochs (the default
# quick run). A GPU at batch >= 1024 is taken as 10x faster (conservative: an H100 measures well above that).
NETWORK_CPU_SAMPLES_PER_S = 4_500.0
NETWORK_EPOCHS_TO_STOP = 80
# Under a budgeted schedule (a preset's EpochBudget) the epochs are known: the same throughput times the epochs.
NETWORK_FIT_COST = FitCost(seconds_per_1k_rows=1_000.0 * NETWORK_EPOCHS_TO_STOP / NETWORK_CPU_SAMPLES_PER_S,
                           min_seconds=30.0, gpu_speedup=10.0, bf16_speedup=2.2,
                           seconds_per_1k_rows_epoch=1_000.0 / NETWORK_CPU_SAMPLES_PER_S)  # fmt: skip


# Every training setting a preset may set is a parameter of the networks (torch threads are process-wide).
NETWORK_ROLES = {"step_cap": "max_epochs", "patience": "patience", "batch_size": "batch_size", "lr_decay": "lr_decay",
                 "lr_schedule": "schedule", "warmup": "warmup",
                 "mixed_precision": "amp", "depth": "depth", "loss": "loss", "standardize_inputs": "standardize_inputs",
                 "clip_inputs": "clip_inputs", "standardize_target": "standardize_target"}  # fmt: skip


# The publications that define the networks (ModelInfo.bibtex): IRNet, SRNet and the plain network are the
# IRNet paper's three architectures; ElemNet is its authors' earlier network on element fractions.
IRNET_BIBTEX = (
    "@inproceedings{Jha2019IRNet, author = {Jha, Dipendu and Ward, Logan and Yang, Zijiang and Wolverton, "
    "Christopher and Foster, Ian and Liao, Wei-keng and Choudhary, Alok and Agrawal, Ankit}, title = {{IRNet}: A "
    "General Purpose Deep Residual Regression Framework for Materials Discovery}, booktitle = {Proceedings of the "
    "25th ACM SIGKDD International Conference on Knowledge Discovery and Data Mining}, pages = {2385--2393}, "
    "year = {2019}, doi = {10.1145/3292500.3330703}}"
)
ELEMNET_BIBTEX = (
    "@article{Jha2018ElemNet, author = {Jha, Dipendu and Ward, Logan and Paul, Arindam and Liao, Wei-keng and "
    "Choudhary, Alok and Wolverton, Chris and Agrawal, Ankit}, title = {{ElemNet}: Deep Learning the Chemistry of "
    "Materials From Only Elemental Composition}, journal = {Scientific Reports}, volume = {8}, pages = {17593}, "
    "year = {2018}, doi = {10.1038/s41598-018-35934-y}}"
)
SUMMARIES = {
    "irnet": "IRNet (Jha et al., KDD 2019): a deep fully connected network with a residual shortcut around every "
    "layer (batch norm, ReLU)",
    "srnet": "SRNet (Jha et al., KDD 2019): IRNet's layers with one residual shortcut around each stack of "
    "equal-width layers",
    "plain": "the plain deep network of the IRNet paper (Jha et al., KDD 2019): IRNet's layers without shortcuts",
    "elemnet": "ElemNet's layout (Jha et al., Sci. Rep. 2018): a 17-layer fully connected network with ReLU and "
    "dropout, no batch norm",
}


def _network(cls: type[NetworkModel], color: str) -> ModelInfo:
    search = NETWORK_SEARCH if cls.fixed_depth is None else AT_DEPTH_SEARCH
    summary = SUMMARIES[cls.arch]
    if issubclass(cls, AtDepthModel):
        summary += f", at depth {cls.fixed_depth} (not tuned)"
    return ModelInfo(name=cls.name, model_class=cls, family="network", group="networks", search=search,
                     color=color, packages={"torch": ("torch",)}, roles=NETWORK_ROLES, step_name="epoch",
                     fit_cost=NETWORK_FIT_COST, converging_regime=converging_network_regime,
                     summary=summary + "; trained with Adam(W), early stopping on the validation MAE",
                     bibtex=ELEMNET_BIBTEX if cls.arch == "elemnet" else IRNET_BIBTEX)  # fmt: skip


MODELS = (
    _network(IRNetModel, "#d62728"),
    _network(SRNetModel, "#1f77b4"),
    _network(PlainNetModel, "#7f7f7f"),
    _network(ElemNetModel, "#9467bd"),
    # The depth study (`--models irnet-17,irnet-24,irnet-48,plain-17,plain-24,plain-48`): lighter to darker.
    _network(IRNet17Model, "#f7a1a1"),
    _network(IRNet24Model, "#e34a4a"),
    _network(IRNet48Model, "#8b0000"),
    _network(Plain17Model, "#cccccc"),
    _network(Plain24Model, "#9e9e9e"),
    _network(Plain48Model, "#3f3f3f"),
)
