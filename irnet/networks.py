"""IRNet, SRNet, the plain deep network and ElemNet, built as published (Jha et al., KDD 2019).

The architectures are data: :data:`ARCHITECTURES` maps a depth to its stacks ``(width, n_layers)``. Depth counts
every Linear layer of the main path including the output head (17 = 16 hidden layers + head); shortcut
projections do not count towards depth.

- ``plain``:   every hidden layer is Linear(bias) -> BatchNorm1d(affine) -> ReLU.
- ``irnet``:   the same layers, each wrapped in a residual: ``y = layer(x) + shortcut(x)``, the sum taken after
  the ReLU. ``shortcut`` is the identity where the widths agree and a Linear(bias, no activation) projection
  where they differ, including the input -> first hidden width.
- ``srnet``:   the same shortcut, but once per stack: ``y = stack(x) + shortcut(x)``.
- ``elemnet``: Linear -> ReLU layers, no batch norm, dropout after each of the first four stacks; its Linear
  layers start as published (Glorot-uniform weights, zero biases), the others keep PyTorch's initialisation.
  Its dropout stays on when it predicts, as in the published code (:data:`ELEMNET_INFERENCE_PASSES`).

All four end in a head Linear(width, 1) with no norm and no activation. :meth:`Network.forward` returns a 1-D
tensor of shape ``(batch,)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# depth -> stacks of (width, number of layers); read from NU-CUCIS/IRNet.
ARCHITECTURES: dict[int, list[tuple[int, int]]] = {
    17: [(1024, 4), (512, 3), (256, 3), (128, 3), (64, 2), (32, 1)],
    24: [(1024, 4), (512, 4), (256, 4), (128, 4), (64, 3), (32, 2), (16, 2)],
    48: [
        (1024, 4),
        (1024, 4),
        (512, 4),
        (512, 4),
        (256, 4),
        (256, 4),
        (128, 4),
        (128, 4),
        (64, 4),
        (64, 4),
        (32, 4),
        (16, 3),
    ],
}

ARCHS: tuple[str, ...] = ("irnet", "srnet", "plain", "elemnet")

# ElemNet's keep probabilities 0.8, 0.9, 0.7, 0.8 after its first four stacks, as drop probabilities.
ELEMNET_DROPOUT: tuple[float, ...] = (0.2, 0.1, 0.3, 0.2)

# ElemNet predicts with its dropout on: the published code (NU-CUCIS/ElemNet, elemnet/dl_regressors.py) adds the
# dropout layers to its evaluation graph whenever it regresses one target (``train or num_labels == 1``), so its
# weights are trained, selected and scored for the stochastic network. Without batch norm, switching dropout off
# shifts every layer's activation statistics and the predictions shrink: on all 239,190 formation_energy rows,
# after 14 epochs of the published regime, validation MAE 0.180 with dropout off against 0.074 with it on (one
# pass) and 0.0717 for the mean of 8 passes (docs/measurements.md "ElemNet"). Here a prediction is the mean of this many
# passes with dropout on, under a fixed seed, so that it is reproducible and less noisy than the single pass.
ELEMNET_INFERENCE_PASSES = 8
INFERENCE_DROPOUT_SEED = 0


class DenseLayer(nn.Module):
    """One hidden layer of the main path: Linear(bias) -> [BatchNorm1d(affine)] -> ReLU."""

    def __init__(self, n_in: int, n_out: int, *, batch_norm: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=True)
        self.norm: nn.Module = nn.BatchNorm1d(n_out, affine=True) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity or a Linear(bias) projection, never activated."""

    def __init__(self, body: nn.Module, n_in: int, n_out: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut: nn.Module = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Network(nn.Module):
    """A feature extractor (``body``) followed by a Linear head to one output; returns shape ``(batch,)``.

    ``inference_passes`` > 0: in eval mode the dropout layers stay on and the output is the mean of that many
    passes, their masks drawn under :data:`INFERENCE_DROPOUT_SEED` (the same for every call, so a batch predicts
    the same way every time); 0: eval mode is PyTorch's, dropout off.
    """

    def __init__(
        self, arch: str, depth: int, n_features: int, body: nn.Sequential, last_width: int, inference_passes: int = 0
    ) -> None:
        super().__init__()
        self.arch = arch
        self.depth = depth
        self.n_features = n_features
        self.body = body
        self.head = nn.Linear(last_width, 1, bias=True)
        self.inference_passes = int(inference_passes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.inference_passes == 0:
            return self._forward_once(x)
        dropouts = [m for m in self.body.modules() if isinstance(m, nn.Dropout)]
        devices = [x.device] if x.device.type != "cpu" else []
        with torch.random.fork_rng(devices=devices, device_type=x.device.type if devices else "cuda"):
            torch.manual_seed(INFERENCE_DROPOUT_SEED)
            for module in dropouts:
                module.train()
            try:
                return torch.stack([self._forward_once(x) for _ in range(self.inference_passes)]).mean(0)
            finally:
                for module in dropouts:
                    module.eval()

    def _forward_once(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        # The head runs in float32 under bf16 autocast: its output is the prediction, and bf16's 8-bit mantissa
        # would round a standardised target to ~0.4%, a floor on the loss of a good fit.
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float()).squeeze(-1)


def _check(arch: str, depth: int, n_features: int) -> list[tuple[int, int]]:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
    if depth not in ARCHITECTURES:
        raise ValueError(f"unknown depth {depth!r}; valid: {', '.join(str(d) for d in ARCHITECTURES)}")
    if int(n_features) < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    return ARCHITECTURES[depth]


def build_network(
    arch: str,
    stacks: Sequence[tuple[int, int]],
    n_features: int,
    *,
    depth: int | None = None,
    dropout: Sequence[float] | None = None,
    inference_passes: int | None = None,
) -> Network:
    """Build ``arch`` from explicit ``stacks`` of (width, n_layers); :func:`build_model` is the published entry.

    Exposed so tests and experiments can build small networks with the same wiring. ``dropout`` and
    ``inference_passes`` apply to ElemNet only: the drop probabilities after the first ``len(dropout)`` stacks
    (default :data:`ELEMNET_DROPOUT`) and the passes averaged with dropout on when it predicts (default
    :data:`ELEMNET_INFERENCE_PASSES`; 0 predicts with dropout off, PyTorch's eval mode).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
    if not stacks or any(int(w) < 1 or int(n) < 1 for w, n in stacks):
        raise ValueError(f"stacks must be a non-empty list of positive (width, n_layers), got {list(stacks)}")
    if (dropout is not None or inference_passes is not None) and arch != "elemnet":
        raise ValueError(f"dropout and inference_passes are ElemNet options; {arch} has no dropout (as published)")
    passes = ELEMNET_INFERENCE_PASSES if inference_passes is None else int(inference_passes)
    if passes < 0:
        raise ValueError(f"inference_passes must be >= 0, got {inference_passes}")
    drops = tuple(ELEMNET_DROPOUT if dropout is None else dropout)
    if any(not 0.0 <= p < 1.0 for p in drops):
        raise ValueError(f"dropout probabilities must be in [0, 1), got {drops}")

    layers: list[nn.Module] = []
    n_in = int(n_features)
    for index, (width, n_layers) in enumerate(stacks):
        stack_in = n_in
        stack: list[nn.Module] = []
        for _ in range(n_layers):
            dense = DenseLayer(n_in, width, batch_norm=arch != "elemnet")
            # IRNet: a shortcut around every layer; the others get the bare layer.
            stack.append(Residual(dense, n_in, width) if arch == "irnet" else dense)
            n_in = width
        if arch == "srnet":
            layers.append(Residual(nn.Sequential(*stack), stack_in, width))
        else:
            layers.extend(stack)
        if arch == "elemnet" and index < len(drops) and drops[index] > 0.0:
            layers.append(nn.Dropout(p=drops[index]))
    n_main = sum(n for _, n in stacks) + 1
    network = Network(arch, depth if depth is not None else n_main, int(n_features), nn.Sequential(*layers), n_in,
                      inference_passes=passes if arch == "elemnet" and any(p > 0.0 for p in drops) else 0)  # fmt: skip
    if arch == "elemnet":
        _glorot_init(network)
    return network


def _glorot_init(network: nn.Module) -> None:
    """Glorot-uniform weights and zero biases in every Linear layer: ElemNet's published code (NU-CUCIS/ElemNet,
    ``elemnet/dl_regressors.py``) builds its layers with TF-slim ``fully_connected``, whose defaults these are.
    PyTorch's default (weights of variance 1/(3 fan_in), uniform biases) shrinks the signal ~3x more per ReLU
    layer; without batch norm nothing undoes that. At 30,000 formation_energy rows it made no measurable
    difference to ElemNet's validation MAE (docs/guide/networks.md "ElemNet"); it is kept because it is the
    published start.
    """
    for module in network.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(arch: str, depth: int, n_features: int, **options: Any) -> Network:
    """Build a published network: ``arch`` in :data:`ARCHS`, ``depth`` in :data:`ARCHITECTURES` (17, 24, 48).

    ``options`` (ElemNet only): ``dropout`` overrides the drop probabilities after its first stacks,
    ``inference_passes`` the passes averaged with dropout on when it predicts (0: dropout off).
    Raises ``ValueError`` naming the valid values for an unknown architecture, depth or option.
    """
    stacks = _check(arch, depth, n_features)
    unknown = set(options) - {"dropout", "inference_passes"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; valid: ['dropout', 'inference_passes'] (elemnet only)")
    return build_network(arch, stacks, n_features, depth=depth, **options)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
