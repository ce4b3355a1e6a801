"""The models the suite knows: discovered from the ``MODELS`` declarations of the model packages.

Every module of :data:`MODEL_PACKAGES` that defines a module-level ``MODELS`` tuple of
:class:`benchmarks.contract.ModelInfo` contributes its models; a new model is one new file there. Models outside
this repository come in through the Python entry-point group :data:`ENTRY_POINT_GROUP` (the packaging
ecosystem's plugin convention): a distribution that declares, in its ``pyproject.toml``,

    [project.entry-points."irnet_bench.models"]
    ridge = "my_package.ridge"

contributes the ``MODELS`` of ``my_package.ridge`` once it is installed. Discovery fails loudly (RuntimeError
naming the module) on a module that cannot be imported, a malformed declaration or a name declared twice.
Names are the values of the MLflow ``model`` tag and of ``--models``.

:func:`use_registry` swaps the registry for the duration of a ``with`` block (tests add a model from a file
of their own that way).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable, Iterator
from types import ModuleType

from benchmarks.contract import Model, ModelInfo
from benchmarks.errors import UsageError

# The default comparison, in the order of the console leaderboard's ties: IRNet, the subject of the suite, first,
# then what it is compared with. Every other discovered model runs only when named in --models.
BENCHMARK_MODELS: tuple[str, ...] = ("irnet", "srnet", "plain", "rf", "xgboost", "lightgbm")
FOCUS_MODEL = BENCHMARK_MODELS[0]  # the model every report comparison is made against
MODEL_PACKAGES: tuple[str, ...] = ("irnet", "baselines")
ENTRY_POINT_GROUP = "irnet_bench.models"  # installed plugins: entry point -> a module that declares MODELS


class Registry:
    """Model name -> :class:`ModelInfo`, in a stable order: the default comparison first, then by name."""

    def __init__(self, infos: Iterable[ModelInfo]) -> None:
        found: dict[str, ModelInfo] = {}
        for info in infos:
            if info.name in found:
                raise RuntimeError(f"model {info.name!r} is declared twice ({found[info.name].model_class.__module__} "
                                   f"and {info.model_class.__module__}); model names must be unique")  # fmt: skip
            try:
                info.check()
            except ValueError as exc:
                raise RuntimeError(f"{info.model_class.__module__}: broken model declaration: {exc}") from None
            found[info.name] = info
        missing = [name for name in BENCHMARK_MODELS if name not in found]
        if missing:
            raise RuntimeError(f"the default comparison names model(s) no module declares: {', '.join(missing)}")
        order = {name: i for i, name in enumerate(BENCHMARK_MODELS)}
        self._infos = dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    @classmethod
    def discover(cls, packages: Iterable[str] = MODEL_PACKAGES, modules: Iterable[str] = (),
                 plugins: bool = True) -> Registry:  # fmt: skip
        """The models declared by every module of ``packages``, by the named ``modules`` and, with ``plugins``,
        by the modules installed distributions name in the entry-point group :data:`ENTRY_POINT_GROUP`."""
        names = [m.name for package in packages for m in pkgutil.iter_modules(_import(package).__path__, package + ".")]
        if plugins:
            names += [entry.value for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
        infos: list[ModelInfo] = []
        for name in dict.fromkeys([*names, *modules]):  # a module named twice declares its models once
            declared = getattr(_import(name), "MODELS", ())
            if not all(isinstance(info, ModelInfo) for info in declared):
                raise RuntimeError(f"{name}: MODELS must be a tuple of benchmarks.contract.ModelInfo")
            infos.extend(declared)
        return cls(infos)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._infos)

    def info(self, name: str) -> ModelInfo:
        """The declaration of ``name``; UsageError (exit 2) listing the valid names when there is none."""
        if name not in self._infos:
            close = difflib.get_close_matches(name, self.names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(f"unknown model {name!r}; {hint}valid models: {', '.join(self.names)}")
        return self._infos[name]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._infos.values())


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a model module that cannot load must not silently drop its models
        raise RuntimeError(f"cannot import model module {name}: {type(exc).__name__}: {exc}") from exc


_current: Registry | None = None


def registry() -> Registry:
    """The registry in use (discovered on first use)."""
    global _current
    if _current is None:
        _current = Registry.discover()
    return _current


@contextlib.contextmanager
def use_registry(replacement: Registry) -> Iterator[Registry]:
    """Use ``replacement`` as the registry inside the ``with`` block."""
    global _current
    before, _current = _current, replacement
    try:
        yield replacement
    finally:
        _current = before


def model_info(name: str) -> ModelInfo:
    """The declaration of model ``name`` (UsageError for an unknown name)."""
    return registry().info(name)


def get_model_class(name: str) -> type[Model]:
    """The class registered as ``name``; UsageError (exit 2) listing valid names when there is none."""
    return model_info(name).model_class


def model_names() -> tuple[str, ...]:
    """Every registered model: the default comparison first."""
    return registry().names


def parse_model_list(text: str | None) -> list[str]:
    """``"irnet,rf"`` -> ``["irnet", "rf"]``, checked; None or "all" -> the default comparison. An empty list
    (``--models ''``, e.g. from an unset shell variable) is refused rather than read as the defaults, which
    would silently run all of them."""
    if text is None or text.strip() == "all":
        return list(BENCHMARK_MODELS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"--models is empty ({text!r}); name models such as irnet,xgboost, or 'all', or drop the flag "
                         f"for the default {','.join(BENCHMARK_MODELS)}")  # fmt: skip
    for name in names:
        model_info(name)  # raises with the valid names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--models names {', '.join(duplicates)} more than once")
    return names
