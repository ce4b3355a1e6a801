"""TabM (Gorishniy et al., "TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling", ICLR 2025)
under the model contract: the ``tabm`` package's network (yandex-research/tabm), trained by this suite's loop.

One TabM is ``k`` MLPs that share their weights except for per-member scalings (BatchEnsemble, the paper's
``tabm`` architecture): each training row goes through all ``k`` members, each member's prediction is trained on
the target (the mean of their losses, as in the paper), and a prediction is the mean of the ``k`` (in eval mode).
Inputs are the 145 numerical attributes, with no numerical embeddings (the paper's plain TabM). Its parameters are
its own (``n_blocks``, ``d_block``, ``dropout``, ``k``): it has no depth of IRNet's kind, so the convergence
figures, which group networks by depth, leave it out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import tabm
import torch
from torch import nn

from benchmarks.contract import FitCost, ModelInfo
from benchmarks.searchspace import ModelSearch, Spec, int_range, log_uniform, optional, uniform
from irnet.models import NETWORK_ROLES, TorchNetworkModel, converging_network_regime


class TabMNetwork(nn.Module):
    """The ``tabm`` package's TabM on numerical inputs, its output layer (one linear head per member) run in
    float32 under bf16 autocast, as IRNet's head is. Returns ``(batch, k)`` in training mode (each member's
    prediction) and their mean, ``(batch,)``, in eval mode."""

    def __init__(self, n_features: int, *, n_blocks: int, d_block: int, dropout: float, k: int) -> None:
        super().__init__()
        # d_out=None: the backbone's k outputs; the head below is TabM's own output layer (LinearEnsemble).
        self.tabm = tabm.TabM.make(n_num_features=n_features, cat_cardinalities=[], d_out=None, n_blocks=n_blocks,
                                   d_block=d_block, dropout=dropout, k=k)  # fmt: skip
        self.head = tabm.LinearEnsemble(d_block, 1, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.tabm(x_num=x)  # (batch, k, d_block)
        with torch.autocast(features.device.type, enabled=False):
            members = self.head(features.float()).squeeze(-1)  # (batch, k)
        return members if self.training else members.mean(dim=1)


class TabMModel(TorchNetworkModel):
    """TabM trained like the suite's other networks (optimiser, schedule, early stopping, standardisation)."""

    name: ClassVar[str] = "tabm"
    arch: ClassVar[str] = "tabm"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The training defaults of the suite's networks, with TabM's own defaults (the ``tabm`` package's
        ``TabM.make``: 3 blocks of 512, dropout 0.1, k = 32) and its README's optimiser (AdamW, lr 2e-3,
        weight decay 3e-4) at batch 256."""
        return {
            **super().default_params(),
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 3e-4,
            "batch_size": 256,
            "loss": "mse",
            "n_blocks": 3,
            "d_block": 512,
            "dropout": 0.1,
            "k": 32,
        }

    def build(self, n_features: int) -> nn.Module:
        p = self.params
        return TabMNetwork(n_features, n_blocks=int(p["n_blocks"]), d_block=int(p["d_block"]),
                           dropout=float(p["dropout"]), k=int(p["k"]))  # fmt: skip


# TabM's tuning space as its authors give it for TabArena (yandex-research/tabm, exp/*/0-tuning.toml; the
# "tabarena" TabM config generator): lr log-uniform 1e-4..3e-3, weight decay off or log-uniform 1e-4..1e-1,
# 2-5 blocks of 128-1024 units, dropout off or uniform 0..0.5, k = 32. The batch size is the preset's.
TABM_SPACE: dict[str, Spec] = {
    "lr": log_uniform(1e-4, 3e-3),
    "weight_decay": optional(log_uniform(1e-4, 1e-1), off=0.0),
    "n_blocks": int_range(2, 5),
    "d_block": int_range(128, 1024),
    "dropout": optional(uniform(0.0, 0.5), off=0.0),
}

MODELS = (
    ModelInfo(
        name="tabm",
        model_class=TabMModel,
        family="network",
        group="networks",
        search=ModelSearch(TABM_SPACE, report_every=1, warmup_steps=5, source="TabM authors' TabArena space"),
        color="#17a589",
        packages={"tabm": ("tabm",), "torch": ("torch",)},
        roles={role: param for role, param in NETWORK_ROLES.items() if role != "depth"},
        step_name="epoch",
        # Measured 2026-12-05 (AMX CPU, one thread, 10,000 formation_energy rows, batch 1024, the defaults'
        # 3 x 512, k = 32): 23.8 s per epoch in float32, 19.3 s in bf16 (1.2x; IRNet-17: 1.2 s in bf16, so
        # TabM costs ~15x IRNet per epoch). Taken as half that on the reference 2 threads, stopping after the
        # networks' ~80 epochs: ~95 s per 1,000 rows in float32.
        # Under a budgeted schedule: 23.8 s per epoch per 10,000 float32 rows on one thread, 2.38 s per 1,000 rows.
        fit_cost=FitCost(
            seconds_per_1k_rows=95.0,
            min_seconds=30.0,
            gpu_speedup=10.0,
            bf16_speedup=1.2,
            seconds_per_1k_rows_epoch=2.38,
        ),
        converging_regime=converging_network_regime,
        summary="TabM (Gorishniy et al., ICLR 2025): an MLP whose k members share most weights (BatchEnsemble), "
        "their mean predicted; trained with the suite's optimiser, schedule and early stopping",
        bibtex="@inproceedings{Gorishniy2025TabM, author = {Gorishniy, Yury and Kotelnikov, Akim and Babenko, "
        "Artem}, title = {{TabM}: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling}, "
        "booktitle = {International Conference on Learning Representations (ICLR)}, year = {2025}}",
    ),
)
