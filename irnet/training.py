"""One training loop for every network in :mod:`irnet.networks`.

Paper setup (Jha et al., KDD 2019; NU-CUCIS/IRNet): Adam, learning rate 1e-4, batch 32, L1 loss, early stopping on
validation MAE with patience 200 epochs, inputs not scaled. Departures, each a switch:

- ``standardize_inputs`` (default on): features are standardised with the mean and standard deviation of the
  *training rows only*; zero-variance columns are only centred. Off reproduces the paper's raw inputs.
- ``clip_inputs`` (default on): every feature is clipped to the range it spans in the *training rows* before
  scaling. A network extrapolates without bound on inputs beyond that range (a composition with an element the
  training rows never held), where a tree ensemble's prediction stays within the training targets; measured on
  formation_energy with 1,000 training rows, one plain-17 fit predicted 2,418 eV/atom off on one test row
  (scripts/clip_inputs_check.py).
  Off reproduces the paper.
- ``standardize_target`` (default on): the network learns ``(y - mean) / std``; every MAE reported here (curve,
  best_val_mae) and every prediction is in the target's original units.
- ``lr_decay`` (default 1.0: a constant learning rate, the paper): below 1, the learning rate is multiplied by it
  after every ``patience // 2`` epochs without a lower validation MAE (PyTorch's ``ReduceLROnPlateau``), so
  a fit that stalls at a large step size gets a finer one before early stopping ends it.
- ``schedule`` (default ``"plateau"``: the constant rate or ``lr_decay`` above): ``"cosine"`` is a budgeted
  schedule, a linear warm-up over the first ``warmup`` fraction of the ``max_epochs * steps per epoch``
  optimiser steps, then cosine decay to zero by the last step (Loshchilov & Hutter, ICLR 2017, "SGDR"; the
  warm-up of Goyal et al. 2017); ``"linear"`` the same warm-up, then linear decay to zero (Smith 2018's
  one-cycle shape without its momentum cycle). The rate is set per step. ``max_epochs`` is then the budget the
  schedule spends, not only a cap: measured on all 239,190 formation_energy rows, IRNet-17 (AdamW, lr 3e-3,
  batch 1024) reached a lower test MAE with a 40-epoch cosine schedule than with the plateau rule's 104 epochs
  (docs/guide/budgets.md "Budgeted schedules"). Early stopping still keeps the best validation epoch; ``patience`` still
  applies (a preset sets it to the budget to let the schedule finish).
- ``optimizer="adamw"``, ``weight_decay``, ``loss="mse"`` are options.
- ``amp``: bf16 autocast of the training forward where the device runs bf16 natively (CUDA; a CPU with AMX or
  AVX-512 bf16 instructions, :func:`native_cpu_bf16`); elsewhere float32 with one log line. The weights, the
  optimiser, the head's output, validation and prediction stay float32 (:func:`training_precision`); the
  kernel that ran is recorded in ``FitReport.extra['precision']``.
- Blow-up guard (always on; it never fires in a fit that does not blow up): an epoch whose training MAE is
  more than :data:`EXPLOSION_FACTOR` times the lowest of the epochs before it, and above the MAE of predicting
  the training mean (after the fit had got below it), sends the fit back to its best weights with fresh
  optimiser moments and the rate times :data:`ROLLBACK_LR_FACTOR`, instead of letting early stopping end it
  near the blown-up weights. Seen on all 239,190 formation_energy rows in bf16 (AdamW, lr 3e-3, batch 1024):
  the training MAE jumped from 0.09 to 3.98 eV/atom at epoch 20 and never recovered. ``FitReport.extra``
  lists the epochs in ``rollback_epochs``.
- ``compile`` (default off) wraps the training forward in ``torch.compile``; it needs a C compiler on CPU and
  pays a one-off compilation of tens of seconds, so it only pays on long GPU runs.

Speed (measured by ``python -m benchmarks.speed``): the scaled data set lives on the device and batches are
index gathers of a seeded ``torch.randperm`` (no DataLoader); the running train loss and MAE are summed on the
device and read once per epoch (no per-step host synchronisation); the optimizer uses the fused kernel on CUDA
and the per-tensor loop on CPU, measured faster there than ``foreach`` (:func:`make_optimizer`); evaluation
runs in batches of :data:`EVAL_BATCH_SIZE` rows under ``torch.inference_mode``.

Resumable fits: with a ``checkpoint_path`` the whole training state is saved atomically every
:data:`CHECKPOINT_EVERY_S` seconds (between epochs) and a rerun of the same fit continues from it
(:func:`train_network`).

Reproducibility: the caller seeds the weight initialisation (``torch.manual_seed`` before building the network);
:func:`train_network` seeds again for dropout and uses its own ``torch.Generator`` for the shuffling, so the same
seed, data and thread count give the same curve and weights on CPU.

The curve's ``train_mae`` is the running mean, over the epoch's training batches, of the batch MAE measured in
train mode during the forward pass that produced the gradient (so it mixes weights from the whole epoch and
includes dropout / batch-norm batch statistics). It costs nothing extra; it is not an eval-mode pass.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.atomic import atomic_write
from benchmarks.contract import CurvePoint, FitReport, StepCallback
from benchmarks.metrics import mae

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 8192  # rows per forward pass for validation and prediction (no gradients kept)
LOSSES = ("mae", "mse")
OPTIMIZERS = ("adam", "adamw")
# Adam/AdamW kernel on CPU; see make_optimizer and the measurement in docs/measurements.md "Training throughput".
# Measured (docs/measurements.md "Training throughput"): the per-tensor loop beat foreach by 1-20% on 2 cores,
# most at batch 32.
CPU_OPTIMIZER_IMPLEMENTATION = "loop"
CHECKPOINT_EVERY_S = 30.0  # a fit with a checkpoint path saves its state after an epoch once this long has passed
CHECKPOINT_FORMAT = 3  # bump when the checkpoint's contents change; other formats are ignored (fit starts over)
# Blow-up guard (:func:`_blew_up`): an epoch whose training MAE exceeds EXPLOSION_FACTOR x the lowest before it
# sends the fit back to its best weights with fresh optimiser moments and the rate times ROLLBACK_LR_FACTOR.
EXPLOSION_FACTOR = 5.0
SCHEDULES = ("plateau", "cosine", "linear")
BUDGETED_SCHEDULES = ("cosine", "linear")  # the rate reaches zero at max_epochs
ROLLBACK_LR_FACTOR = 0.3


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; defaults are the paper's except the two standardisation switches."""

    lr: float = 1e-4
    batch_size: int = 32
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "mae"
    patience: int = 200
    max_epochs: int = 1000
    lr_decay: float = 1.0  # < 1: learning rate times this after patience // 2 epochs without improvement
    schedule: str = "plateau"  # "cosine"/"linear": warm-up, then decay to zero over max_epochs (module docstring)
    warmup: float = 0.05  # budgeted schedules: the fraction of the optimiser steps spent warming up linearly
    standardize_inputs: bool = True
    clip_inputs: bool = True
    standardize_target: bool = True
    amp: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if int(self.batch_size) < 1 or int(self.patience) < 1 or int(self.max_epochs) < 1:
            raise ValueError(
                f"batch_size, patience and max_epochs must be >= 1, got "
                f"{self.batch_size}, {self.patience}, {self.max_epochs}"
            )
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1] (1: constant learning rate), got {self.lr_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is the fraction of the schedule spent warming up, in [0, 1); got "
                             f"{self.warmup} (a warm-up as long as the budget would never decay)")  # fmt: skip
        if self.schedule in BUDGETED_SCHEDULES and self.lr_decay < 1:
            raise ValueError(f"lr_decay {self.lr_decay} belongs to the plateau schedule; the {self.schedule} "
                             "schedule decays by itself: leave lr_decay at 1")  # fmt: skip
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        """The config from a model's params dict (keys that are not training settings are ignored)."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in params.items() if k in names})


@dataclass(frozen=True)
class Scaler:
    """``(x - mean) / scale`` per column, fitted on training rows; ``scale`` is 1 where a column is constant.

    With ``low``/``high`` (the training rows' per-column range) values are first clipped to that range."""

    mean: np.ndarray
    scale: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @classmethod
    def fit(cls, values: np.ndarray, *, standardize: bool = True, clip: bool = False) -> Scaler:
        values = np.asarray(values, dtype=np.float64)
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        # Guard constant (or numerically constant) columns: centre them, do not divide by ~0.
        scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        if not standardize:
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        low, high = (values.min(axis=0), values.max(axis=0)) if clip else (None, None)
        return cls(mean=mean, scale=scale, low=low, high=high)

    @classmethod
    def identity(cls, n_columns: int | None = None) -> Scaler:
        shape = () if n_columns is None else (n_columns,)
        return cls(mean=np.zeros(shape), scale=np.ones(shape))

    def transform(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.low is not None and self.high is not None:
            values = np.clip(values, self.low, self.high)
        return (values - self.mean) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale + self.mean

    def to_state(self) -> dict[str, np.ndarray]:
        state = {"mean": np.array(self.mean, dtype=np.float64), "scale": np.array(self.scale, dtype=np.float64)}
        if self.low is not None and self.high is not None:
            state.update(low=np.array(self.low, dtype=np.float64), high=np.array(self.high, dtype=np.float64))
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Scaler:
        bounds = {k: np.asarray(state[k], dtype=np.float64) for k in ("low", "high") if k in state}
        return cls(
            mean=np.asarray(state["mean"], dtype=np.float64),
            scale=np.asarray(state["scale"], dtype=np.float64),
            **bounds,
        )


@dataclass
class TrainResult:
    """What :func:`train_network` returns: the report and the scalers the fitted network needs to predict."""

    report: FitReport
    x_scaler: Scaler
    y_scaler: Scaler


def _check_xy(X: np.ndarray, y: np.ndarray, what: str, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(
            f"{what}: need X of shape (n, features) and y of shape (n,) with n > 0; got {X.shape}, {y.shape}"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{what}: expected {n_features} features, got {X.shape[1]}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError(f"{what}: features or targets contain NaN or inf; impute or drop those rows first")
    return X, y


def native_cpu_bf16() -> str | None:
    """The CPU instruction set that runs bf16 matrix products natively and faster than float32 ("amx_bf16",
    "avx512_bf16" on x86, "bf16" on Arm), or None where bf16 would be emulated, measures slower, or cannot be
    checked.

    Read from /proc/cpuinfo (Linux), confirmed by torch's oneDNN check (oneDNN picks AMX over AVX-512 where both
    exist; oneDNN docs, "CPU ISA hints"), then measured once per process (:func:`bf16_speedup`): the flag alone
    does not say it pays. Measured with `python -m benchmarks.speed`, IRNet-17 at batch 1024: 2.2x float32 on
    an AMX Xeon and ~2x on an AMD EPYC with avx512_bf16, but slower than float32 on a 2-core Xeon VM that shows
    avx512_bf16 without amx_bf16 (2026-12-08: 1,500 against 2,400 samples/s, one thread)."""
    kernel = _cpu_bf16_flag()
    if kernel is None or bf16_speedup() < MIN_BF16_SPEEDUP:
        return None
    return kernel


MIN_BF16_SPEEDUP = 1.15  # bf16 must beat float32 by this much to be used: the two also differ in accuracy


@functools.lru_cache(maxsize=1)
def _cpu_bf16_flag() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    kernel = next((f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags), None)
    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        supported = False
    return kernel if supported else None


@functools.lru_cache(maxsize=1)
def bf16_speedup(batch: int = 1024, width: int = 1024, steps: int = 3) -> float:
    """float32 seconds over bf16-autocast seconds of a training step (forward, backward, AdamW) of a 4-layer,
    ``width``-wide MLP on ``batch`` rows, on this CPU with torch's current threads: 1-3 s, once per process.
    Both precisions are timed alternately (best of ``steps`` each, after one warm-up), so load on the machine
    slows both alike."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, width, generator=generator)
    model = nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(4)), nn.Linear(width, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(bf16: bool) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().abs().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    step(False), step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    return min(times[False]) / min(times[True])


@dataclass(frozen=True)
class Precision:
    """What a fit computes in: ``bf16`` (autocast of the training forward) and a name for the record."""

    bf16: bool
    kernel: str  # e.g. "bf16 autocast (CPU amx_bf16)", "bf16 autocast (CUDA)", "float32"


_warned_no_bf16 = False


def training_precision(device: torch.device, amp: bool) -> Precision:
    """bf16 where asked and the device has it natively (CUDA; a CPU per :func:`native_cpu_bf16`); float32
    otherwise, with one log line per process when ``amp`` was asked for on a CPU without native bf16 (it would
    run emulated, slower than float32)."""
    global _warned_no_bf16
    if not amp:
        return Precision(False, "float32")
    if device.type == "cuda":
        return Precision(True, "bf16 autocast (CUDA)")
    kernel = native_cpu_bf16() if device.type == "cpu" else None
    if kernel is None:
        if not _warned_no_bf16:
            log.warning(
                "amp: this %s has no native bf16, or it measures slower than float32; training in float32",
                device.type.upper(),
            )
            _warned_no_bf16 = True
        return Precision(False, "float32 (amp asked; no native or no faster bf16)")
    return Precision(True, f"bf16 autocast (CPU {kernel})")


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast of the training forward; validation and prediction always run in float32 (weights are
    float32 throughout), so that scores are not rounded to bf16's 8-bit mantissa."""
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def predict_scaled(model: nn.Module, X: torch.Tensor) -> np.ndarray:
    """Eval-mode float32 predictions (in the network's scaled target units) of an already-scaled float32 tensor."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for start in range(0, X.shape[0], EVAL_BATCH_SIZE):
                out.append(model(X[start : start + EVAL_BATCH_SIZE]).float())
    finally:
        model.train(was_training)
    return torch.cat(out).cpu().numpy().astype(np.float64)


def predict(
    model: nn.Module,
    X: np.ndarray,
    x_scaler: Scaler,
    y_scaler: Scaler,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predictions in original target units as a 1-D float64 array (float32 arithmetic, also after bf16 training)."""
    device = torch.device(device)
    Xt = torch.as_tensor(x_scaler.transform(X), dtype=torch.float32, device=device)
    return y_scaler.inverse(predict_scaled(model, Xt))


def make_optimizer(
    parameters: Any, config: TrainConfig, device: torch.device, *, implementation: str | None = None
) -> torch.optim.Optimizer:
    """Adam or AdamW for ``config``: the fused kernel on CUDA, :data:`CPU_OPTIMIZER_IMPLEMENTATION` elsewhere.

    ``implementation`` ("fused", "foreach", "loop") overrides the choice, for speed measurements only; all three
    compute the same update up to float rounding (torch.optim.Adam docs).
    """
    if implementation is None:
        implementation = "fused" if device.type == "cuda" else CPU_OPTIMIZER_IMPLEMENTATION
    if implementation not in ("fused", "foreach", "loop"):
        raise ValueError(f"unknown optimizer implementation {implementation!r}; valid: fused, foreach, loop")
    optimizer_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # (fused, foreach); None leaves torch's default
    fused, foreach = {"fused": (True, None), "foreach": (None, True), "loop": (None, False)}[implementation]
    return optimizer_cls(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused, foreach=foreach)


def _batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device, drop_single: bool
) -> Iterator[torch.Tensor]:
    """Shuffled row indices per batch, on ``device``."""
    order = torch.randperm(n, generator=generator)  # CPU generator: same order on CPU and CUDA
    if device.type != "cpu":
        order = order.to(device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if drop_single and index.shape[0] == 1:
            continue  # BatchNorm cannot normalise a single row in train mode
        yield index


def steps_per_epoch(n: int, batch_size: int, drop_single: bool) -> int:
    """Optimiser steps in one epoch of :func:`_batches` over ``n`` rows."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if drop_single and n % batch_size == 1 and steps > 1 else steps


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The factor on the base rate of a budgeted schedule at optimiser step ``step`` (0-based): linear warm-up
    from ``1 / warmup_steps`` to 1 over ``warmup_steps`` steps, then cosine (or linear) decay to 0 at
    ``total_steps``; 0 past the end."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def make_step_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, epoch_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The per-step rate of a budgeted schedule over ``config.max_epochs`` epochs of ``epoch_steps`` steps; None
    for the plateau schedule (its rate changes between epochs, :func:`_adjust_after_epoch`)."""
    if config.schedule not in BUDGETED_SCHEDULES:
        return None
    total = int(config.max_epochs) * epoch_steps
    warmup_steps = round(config.warmup * total)

    def factor(step: int) -> float:
        return lr_multiplier(step, total, warmup_steps, config.schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------------------- checkpoints ---


@dataclass
class _Progress:
    """What the loop has done so far, besides the modules' own states: all of it is saved in a checkpoint."""

    curve: list[CurvePoint] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    lr_decay_epochs: list[int] = field(default_factory=list)  # epochs after which the rate was multiplied by lr_decay
    rollback_epochs: list[int] = field(default_factory=list)  # epochs that blew up and sent the fit to best_state
    resumed_from_epoch: int | None = None

    @property
    def epoch(self) -> int:
        return self.curve[-1].step if self.curve else 0

    def record(self, point: CurvePoint, model: nn.Module) -> None:
        self.curve.append(point)
        if point.val_mae < self.best_val:
            self.best_val, self.best_epoch = point.val_mae, point.step
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def checkpoint_identity(model: nn.Module, config: TrainConfig, seed: int, arrays: tuple[np.ndarray, ...]) -> str:
    """Digest of what a fit depends on: the architecture (parameter names and shapes), the training config
    (``compile`` aside: it changes speed, not the result), the seed and the data. A checkpoint with another
    identity belongs to another fit and is never resumed."""
    digest = hashlib.sha256()
    shapes = [(name, list(value.shape)) for name, value in model.state_dict().items()]
    settings = {k: v for k, v in asdict(config).items() if k != "compile"}
    digest.update(json.dumps([shapes, settings, int(seed)], sort_keys=True).encode())
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=np.float64)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass
class _LoopState:
    """Everything a fit changes as it goes: the modules' states, the shuffling generator and the counters. A
    checkpoint is this, whole; restoring it continues the fit as if it had never stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    step_scheduler: torch.optim.lr_scheduler.LambdaLR | None  # a budgeted schedule, stepped after every batch
    generator: torch.Generator
    device: torch.device
    progress: _Progress = field(default_factory=lambda: _Progress())

    def to_dict(self, seconds: float) -> dict[str, Any]:
        progress = self.progress
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "step_scheduler": self.step_scheduler.state_dict() if self.step_scheduler is not None else None,
            "best_state": progress.best_state,
            "best_val": progress.best_val,
            "best_epoch": progress.best_epoch,
            "curve": [[p.step, p.train_mae, p.val_mae, p.seconds] for p in progress.curve],
            "lr_decay_epochs": list(progress.lr_decay_epochs),
            "rollback_epochs": list(progress.rollback_epochs),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "seconds": seconds,
        }

    def restore(self, saved: dict[str, Any]) -> float:
        """Continue from ``saved`` (:meth:`to_dict`); the seconds spent before it."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        if self.step_scheduler is not None and saved["step_scheduler"] is not None:
            self.step_scheduler.load_state_dict(saved["step_scheduler"])
        self.progress = _Progress(
            curve=[CurvePoint(int(s), float(t), float(v), float(sec)) for s, t, v, sec in saved["curve"]],
            best_val=float(saved["best_val"]),
            best_epoch=int(saved["best_epoch"]),
            best_state={k: v.to(self.device) for k, v in saved["best_state"].items()},
            lr_decay_epochs=[int(e) for e in saved["lr_decay_epochs"]],
            rollback_epochs=[int(e) for e in saved["rollback_epochs"]],
        )
        self.progress.resumed_from_epoch = self.progress.epoch
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
        return float(saved["seconds"])


@dataclass
class _Checkpoints:
    """Where a fit keeps its state (``path``; None: nowhere), saved after an epoch once ``every_s`` seconds have
    passed since the last save, and resumed from when it belongs to this fit (``identity``)."""

    path: Path | None
    identity: str
    every_s: float
    last_save: float = field(default_factory=time.perf_counter)

    def resume(self, state: _LoopState) -> float:
        """Restore ``state`` from this fit's checkpoint, if there is one; the seconds spent before it (0: none)."""
        saved = _load_checkpoint(self.path, self.identity) if self.path is not None else None
        if saved is None:
            return 0.0
        spent = state.restore(saved)
        log.info("resuming the fit from its checkpoint %s after epoch %d (%.0f s spent before)", self.path,
                 state.progress.epoch, spent)  # fmt: skip
        return spent

    def after_epoch(self, state: _LoopState, seconds: float) -> None:
        if self.path is not None and time.perf_counter() - self.last_save >= self.every_s:
            _save_checkpoint(self.path, self.identity, state.to_dict(seconds))
            self.last_save = time.perf_counter()


def _save_checkpoint(path: Path, identity: str, state: dict[str, Any]) -> None:
    """Write the whole training state atomically (a kill mid-write leaves the previous checkpoint)."""
    with atomic_write(path, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, "identity": identity, **state}, handle)


def _load_checkpoint(path: Path, identity: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is whole and belongs to this fit; None (and one warning line) if it is
    damaged, of another format, or of another fit (other data, configuration or seed)."""
    if not path.exists():
        return None
    try:
        # weights_only: tensors and plain containers only, so a damaged or foreign file cannot run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {state.get('format') if isinstance(state, dict) else None!r}, "
                             f"expected {CHECKPOINT_FORMAT}")  # fmt: skip
    except Exception as exc:  # any unreadable file: truncated, garbage, another torch's format
        log.warning("checkpoint %s is unreadable (%s: %s); ignoring it, the fit starts over", path,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")  # fmt: skip
        return None
    if state.get("identity") != identity:
        log.warning("checkpoint %s belongs to another fit (other data, configuration or seed); ignoring it, "
                    "the fit starts over", path)  # fmt: skip
        return None
    return state


# ------------------------------------------------------------------------------------------- the loop ---


def _train_epoch(
    forward: Callable[[torch.Tensor], torch.Tensor],  # the model, or torch.compile's wrapper of it
    optimizer: torch.optim.Optimizer,
    step_scheduler: torch.optim.lr_scheduler.LambdaLR | None,
    loss_fn: Any,
    Xt: torch.Tensor,
    yt: torch.Tensor,
    batches: Iterator[torch.Tensor],
    precision: Precision,
    deadline: float | None,
) -> tuple[float, float, int]:
    """One pass over the shuffled batches: (mean loss, mean train-mode MAE in scaled units, rows seen). Stops
    early, between batches, once ``deadline`` (a ``time.perf_counter`` value) has passed."""
    device = Xt.device
    loss_sum = torch.zeros((), device=device)
    abs_sum = torch.zeros((), device=device)
    seen = 0
    for index in batches:
        xb, yb = Xt[index], yt[index]
        with _autocast(device, precision.bf16):
            pred = forward(xb)
        pred = pred.float()
        if pred.ndim == 2:  # an ensemble (TabM): each member's prediction learns the target, the mean is the fit
            loss = loss_fn(pred, yb.unsqueeze(1).expand_as(pred))
            pred = pred.mean(dim=1)
        else:
            loss = loss_fn(pred, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        rows = index.shape[0]
        # Accumulate on the device; one host sync per epoch, not per batch.
        loss_sum += loss.detach() * rows
        abs_sum += (pred.detach() - yb).abs().sum()
        seen += rows
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return float(loss_sum) / max(seen, 1), float(abs_sum) / max(seen, 1), seen


@dataclass(frozen=True)
class _EpochData:
    """What every epoch reads: the scaled training tensors, the validation rows and the scalers."""

    Xt: torch.Tensor
    yt: torch.Tensor
    Xv: torch.Tensor
    y_val: np.ndarray
    x_scaler: Scaler
    y_scaler: Scaler
    drop_single: bool  # a batch-norm network drops a last batch of one row


def _run_epoch(state: _LoopState, forward: Callable[[torch.Tensor], torch.Tensor], config: TrainConfig,
               data: _EpochData, precision: Precision, start_time: float, deadline: float | None) -> bool:  # fmt: skip
    """Train one epoch, validate, and record it in ``state.progress``; whether the deadline cut it short.
    Raises FloatingPointError when the loss or the validation predictions are not finite."""
    epoch = state.progress.epoch + 1
    state.model.train()
    n, batch_size = data.Xt.shape[0], int(config.batch_size)
    batches = _batches(n, batch_size, state.generator, state.device, data.drop_single)
    loss_fn = F.l1_loss if config.loss == "mae" else F.mse_loss
    mean_loss, train_mae, seen = _train_epoch(forward, state.optimizer, state.step_scheduler, loss_fn, data.Xt,
                                              data.yt, batches, precision, deadline)  # fmt: skip
    rows_per_epoch = n - (1 if data.drop_single and n % batch_size == 1 else 0)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"training diverged: loss is {mean_loss} at epoch {epoch}")
    val_pred = data.y_scaler.inverse(predict_scaled(state.model, data.Xv))
    if not np.isfinite(val_pred).all():
        raise FloatingPointError(f"training diverged: validation predictions are not finite at epoch {epoch}")
    point = CurvePoint(epoch, train_mae * float(data.y_scaler.scale), mae(data.y_val, val_pred),
                       time.perf_counter() - start_time)  # fmt: skip
    state.progress.record(point, state.model)
    return seen < rows_per_epoch


def _adjust_after_epoch(state: _LoopState, point: CurvePoint, mean_predictor_mae: float) -> None:
    """A blown-up epoch sends the fit back to its best weights (:func:`_roll_back`); otherwise the plateau
    schedule may lower the rate."""
    if _blew_up(state.progress.curve, mean_predictor_mae):
        _roll_back(state)
    elif state.scheduler is not None:
        lr_before = state.optimizer.param_groups[0]["lr"]
        state.scheduler.step(point.val_mae)
        if state.optimizer.param_groups[0]["lr"] < lr_before:
            state.progress.lr_decay_epochs.append(point.step)


def _blew_up(curve: list[CurvePoint], mean_predictor_mae: float) -> bool:
    """Whether the last epoch blew up: its training MAE is over :data:`EXPLOSION_FACTOR` x the lowest of the
    epochs before it and above ``mean_predictor_mae`` (predicting the training mean), which the fit had beaten.
    The second condition keeps the ordinary noise of a fit near zero error from counting."""
    if len(curve) < 2:
        return False
    lowest = min(point.train_mae for point in curve[:-1])
    last = curve[-1].train_mae
    return lowest < mean_predictor_mae < last and last > EXPLOSION_FACTOR * lowest


def _roll_back(state: _LoopState) -> None:
    """Back to the best weights, with fresh Adam moments (the blown-up ones would repeat the step) and a lower
    rate (under a budgeted schedule: the rest of the schedule at a lower base rate)."""
    progress = state.progress
    assert progress.best_state is not None
    state.model.load_state_dict(progress.best_state)
    state.optimizer.state.clear()
    for group in state.optimizer.param_groups:
        group["lr"] *= ROLLBACK_LR_FACTOR
    if state.step_scheduler is not None:
        state.step_scheduler.base_lrs = [rate * ROLLBACK_LR_FACTOR for rate in state.step_scheduler.base_lrs]
    progress.rollback_epochs.append(progress.epoch)
    log.warning("epoch %d blew up (training MAE %.4g, lowest before %.4g): back to the weights of epoch %d, "
                "learning rate x%g", progress.epoch, progress.curve[-1].train_mae,
                min(p.train_mae for p in progress.curve[:-1]), progress.best_epoch, ROLLBACK_LR_FACTOR)  # fmt: skip


def _stop_reason(progress: _Progress, config: TrainConfig, cut: bool, deadline: float | None) -> str | None:
    """Why the fit stops after this epoch, or None to go on: "time_limit" when the epoch was cut short,
    then "early_stopping", then "time_limit" when the limit passed at the epoch's end, then "max_steps"."""
    if cut:
        return "time_limit"
    if progress.epoch - progress.best_epoch >= int(config.patience):
        return "early_stopping"
    if deadline is not None and time.perf_counter() >= deadline:
        return "time_limit"
    if progress.epoch >= int(config.max_epochs):
        return "max_steps"
    return None


def train_network(
    model: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_step: StepCallback | None = None,
    time_limit_s: float | None = None,
    optimizer_implementation: str | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every_s: float | None = None,
) -> TrainResult:
    """Train ``model`` in place; on return it holds the weights of the epoch with the lowest validation MAE.

    Stops on the first of: ``patience`` epochs without a strictly lower validation MAE ("early_stopping"),
    ``max_epochs`` ("max_steps"), or ``time_limit_s`` seconds ("time_limit"; checked between batches, and an
    interrupted epoch is validated and recorded before stopping, flagged in ``extra['partial_last_epoch']``).
    ``on_step(epoch, val_mae)`` is called after every epoch (after a resume, first once for each restored
    epoch, in order); whatever it raises propagates.
    Raises ``FloatingPointError`` when the training loss or the validation predictions become non-finite.
    ``optimizer_implementation`` is passed to :func:`make_optimizer` (speed measurements only).

    With ``checkpoint_path``, the whole training state (weights, optimiser, learning-rate scheduler, the best
    weights so far, the curve, the early-stopping counters, the shuffling generator and torch's RNG, the
    seconds spent) is saved there atomically after an epoch once ``checkpoint_every_s`` seconds (default
    :data:`CHECKPOINT_EVERY_S`) have passed
    since the last save, and a fit that finds a checkpoint of itself there (same architecture, config, seed
    and data: :func:`checkpoint_identity`) continues from it: on a CPU it ends with the same weights and curve as
    the fit left alone. ``time_limit_s`` counts the seconds spent before the resume. The caller deletes the
    file once it has recorded the fit.
    """
    start_time = time.perf_counter()
    X_train, y_train = _check_xy(X_train, y_train, "training data")
    X_val, y_val = _check_xy(X_val, y_val, "validation data", n_features=X_train.shape[1])
    device = torch.device(device)
    precision = training_precision(device, config.amp)
    drop_single = _has_batch_norm(model)
    if drop_single and (X_train.shape[0] < 2 or int(config.batch_size) < 2):
        raise ValueError("a network with batch norm needs batch_size >= 2 and at least 2 training rows")

    x_scaler = (
        Scaler.fit(X_train, standardize=config.standardize_inputs, clip=config.clip_inputs)
        if config.standardize_inputs or config.clip_inputs
        else Scaler.identity(X_train.shape[1])
    )
    y_scaler = Scaler.fit(y_train) if config.standardize_target else Scaler.identity()
    mean_predictor_mae = mae(y_train, np.full_like(y_train, y_train.mean()))

    # The whole (scaled) data set lives on the device; batches are index gathers there.
    Xt = torch.as_tensor(x_scaler.transform(X_train), dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_scaler.transform(y_train), dtype=torch.float32, device=device)
    Xv = torch.as_tensor(x_scaler.transform(X_val), dtype=torch.float32, device=device)

    torch.manual_seed(seed)  # dropout masks
    model.to(device)
    optimizer = make_optimizer(model.parameters(), config, device, implementation=optimizer_implementation)
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay, patience=max(0, int(config.patience) // 2 - 1), threshold=0.0
        )
        if config.lr_decay < 1
        else None
    )
    step_scheduler = make_step_scheduler(optimizer, config, steps_per_epoch(Xt.shape[0], int(config.batch_size),
                                                                            drop_single))  # fmt: skip
    state = _LoopState(model, optimizer, scheduler, step_scheduler, torch.Generator().manual_seed(seed), device)
    identity = checkpoint_identity(model, config, seed, (X_train, y_train, X_val, y_val)) if checkpoint_path else ""
    checkpoints = _Checkpoints(None if checkpoint_path is None else Path(checkpoint_path), identity,
                               CHECKPOINT_EVERY_S if checkpoint_every_s is None else checkpoint_every_s)  # fmt: skip
    start_time -= checkpoints.resume(state)  # the time limit and the curve count the earlier seconds
    if on_step is not None:
        for point in state.progress.curve:
            on_step(point.step, point.val_mae)

    # The compiled module shares the parameters with ``model``; evaluation and state_dict use ``model``.
    forward = torch.compile(model) if config.compile else model
    epoch_data = _EpochData(Xt, yt, Xv, y_val, x_scaler, y_scaler, drop_single)
    deadline = None if time_limit_s is None else start_time + time_limit_s
    stopped: str | None = None
    partial = False
    while state.progress.epoch < int(config.max_epochs) and stopped is None:
        partial = _run_epoch(state, forward, config, epoch_data, precision, start_time, deadline)
        point = state.progress.curve[-1]
        if on_step is not None:
            on_step(point.step, point.val_mae)
        _adjust_after_epoch(state, point, mean_predictor_mae)
        stopped = _stop_reason(state.progress, config, partial, deadline)
        if stopped is None:
            checkpoints.after_epoch(state, time.perf_counter() - start_time)

    progress = state.progress
    assert progress.best_state is not None  # at least one epoch ran and val_mae is finite
    model.load_state_dict(progress.best_state)
    model.eval()
    extra: dict[str, Any] = {
        "epochs": len(progress.curve),
        "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "amp": precision.bf16,
        "precision": precision.kernel,
        "compile": bool(config.compile),
        "train_mae_kind": "running mean of train-mode batch MAE over the epoch",
        "partial_last_epoch": partial,
        "lr_decay_epochs": progress.lr_decay_epochs,
        "rollback_epochs": progress.rollback_epochs,
        "final_lr": float(state.optimizer.param_groups[0]["lr"]),
        "schedule": config.schedule,
        "standardize_inputs": bool(config.standardize_inputs),
        "clip_inputs": bool(config.clip_inputs),
        "standardize_target": bool(config.standardize_target),
    }
    if progress.resumed_from_epoch is not None:
        extra["resumed_from_epoch"] = progress.resumed_from_epoch
    report = FitReport(
        curve=progress.curve,
        best_step=progress.best_epoch,
        best_val_mae=progress.best_val,
        fit_seconds=time.perf_counter() - start_time,
        device=_device_name(device),
        stopped=stopped or "max_steps",
        extra=extra,
    )
    return TrainResult(report=report, x_scaler=x_scaler, y_scaler=y_scaler)
