"""Numerical inputs derived from composition (and structure, where a task has structures), cached on disk.

Featurisers:
- ``magpie``: the 145 attributes of Ward et al. 2016 that IRNet uses (matminer ElementProperty "magpie" 132 +
  Stoichiometry 6 + ValenceOrbital fractions 4 + IonProperty 3).
- ``elemnet``: the fractions of the 86 elements ElemNet uses.
- ``ward2017``: ``magpie`` plus the Ward et al. 2017 structural attributes; needs crystal structures.

The cache is keyed by the task's data checksum, the featuriser and its version, and filled chunk by chunk, so
an interrupted featurisation resumes and a run that needs only some rows computes only those.
"""
from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from benchmarks.atomic import atomic_write
from benchmarks.errors import UsageError
from benchmarks.paths import cache_dir as default_cache_dir

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000
FEATURE_SCHEMA_VERSION = 1  # bump when a featuriser's definition here changes

# ElemNet (Jha et al. 2018) input: fractions of these 86 elements, in this order.
ELEMNET_ELEMENTS = (
    "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo "
    "Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt "
    "Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()
FEATURIZERS = ("magpie", "elemnet", "ward2017")


@dataclass(frozen=True)
class FeatureMatrix:
    """Features aligned with a task's rows. Rows not requested or not featurisable have ``valid`` False."""

    X: np.ndarray  # float32 [n_rows, n_features], NaN where not valid
    names: tuple[str, ...]
    valid: np.ndarray  # bool [n_rows]
    featurizer: str
    version: str


@cache
def _magpie():
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital

    featurizer = MultipleFeaturizer(
        [
            ElementProperty.from_preset("magpie"),
            Stoichiometry(),
            ValenceOrbital(props=["frac"]),
            IonProperty(fast=True),
        ]
    )
    featurizer.set_n_jobs(1)  # matminer's multiprocessing is slower than one process on small machines
    return featurizer


def feature_names(featurizer: str) -> tuple[str, ...]:
    if featurizer == "magpie":
        return tuple(_magpie().feature_labels())
    if featurizer == "elemnet":
        return tuple(f"frac_{el}" for el in ELEMNET_ELEMENTS)
    if featurizer == "ward2017":
        return feature_names("magpie") + tuple(_ward2017_structure().feature_labels())
    raise UsageError(f"unknown featurizer {featurizer!r}; use one of {', '.join(FEATURIZERS)}")


def featurizer_version(featurizer: str) -> str:
    import matminer

    return f"{featurizer}-matminer{matminer.__version__}-v{FEATURE_SCHEMA_VERSION}"


def _parse(formula: str):
    """A pymatgen Composition, or None when the formula cannot be parsed."""
    from pymatgen.core import Composition

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = Composition(formula)
        return comp if comp.num_atoms > 0 else None
    except Exception:  # pymatgen raises ValueError, KeyError or CompositionError for bad formulas
        return None


def magpie_features(formulas: Sequence[str]) -> np.ndarray:
    """The 145 Ward 2016 attributes per formula; a row of NaN where the formula cannot be featurised."""
    featurizer = _magpie()
    out = np.full((len(formulas), len(featurizer.feature_labels())), np.nan, dtype=np.float32)
    for i, formula in enumerate(formulas):
        comp = _parse(formula)
        if comp is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[i] = featurizer.featurize(comp)
            except Exception:  # an element without tabulated data; counted by the caller
                continue
    return out


def elemnet_features(formulas: Sequence[str]) -> np.ndarray:
    """Element fractions over ELEMNET_ELEMENTS; NaN rows for unparseable formulas or other elements."""
    index = {el: j for j, el in enumerate(ELEMNET_ELEMENTS)}
    out = np.full((len(formulas), len(ELEMNET_ELEMENTS)), np.nan, dtype=np.float32)
    for i, formula in enumerate(formulas):
        comp = _parse(formula)
        if comp is None:
            continue
        fractions = comp.fractional_composition.get_el_amt_dict()
        if not set(fractions) <= index.keys():
            continue
        out[i] = 0.0
        for el, frac in fractions.items():
            out[i, index[el]] = frac
    return out


@cache
def _ward2017_structure():
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.structure import (
        ChemicalOrdering,
        DensityFeatures,
        MaximumPackingEfficiency,
        SiteStatsFingerprint,
        StructuralHeterogeneity,
    )

    featurizer = MultipleFeaturizer(
        [
            SiteStatsFingerprint.from_preset("CoordinationNumber_ward-prb-2017"),
            SiteStatsFingerprint.from_preset("LocalPropertyDifference_ward-prb-2017"),
            StructuralHeterogeneity(),
            ChemicalOrdering(),
            MaximumPackingEfficiency(),
            DensityFeatures(),
        ]
    )
    featurizer.set_n_jobs(1)
    return featurizer


def ward2017_features(formulas: Sequence[str], structures: Sequence) -> np.ndarray:
    """``magpie`` features of the structure's composition plus the Ward 2017 structural attributes."""
    structural = _ward2017_structure()
    n_struct = len(structural.feature_labels())
    out = np.full((len(formulas), 145 + n_struct), np.nan, dtype=np.float32)
    out[:, :145] = magpie_features(formulas)
    for i, structure in enumerate(structures):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[i, 145:] = structural.featurize(structure)
            except Exception:  # a structure matminer cannot analyse; the row is counted as not featurisable
                out[i, 145:] = np.nan
    return out


def _compute(featurizer: str, task, rows: np.ndarray) -> np.ndarray:
    formulas = task.formulas[rows]
    if featurizer == "ward2017":
        if task.structures is None:
            raise UsageError(
                f"featurizer ward2017 needs crystal structures and {task.spec.name} has none here; "
                "use --featurizer magpie, or --source matminer (online) for Matbench structure tasks"
            )
        return ward2017_features(formulas, [task.structures[i] for i in rows])
    compute: Callable[[Sequence[str]], np.ndarray] = magpie_features if featurizer == "magpie" else elemnet_features
    # Featurise each distinct formula once: Matbench and OQMD sets repeat formulas.
    unique, inverse = np.unique(formulas.astype(str), return_inverse=True)
    return compute(list(unique))[inverse]


def _cache_folder(task, featurizer: str, root: Path) -> Path:
    return root / "features" / task.spec.name / f"{task.sha256[:16]}-{featurizer_version(featurizer)}"


def _read_chunk(path: Path, n_rows: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    if path.is_file():
        try:
            with np.load(path) as data:
                X, done = data["X"], data["done"]
            if X.shape == (n_rows, n_features) and done.shape == (n_rows,):
                return X, done
        except (OSError, ValueError, KeyError, EOFError):  # a damaged chunk: recompute it
            pass
        log.warning("feature cache chunk %s is damaged; recomputing it", path.name)
    return np.full((n_rows, n_features), np.nan, dtype=np.float32), np.zeros(n_rows, dtype=bool)


def _write_chunk(path: Path, X: np.ndarray, done: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, done=done)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def featurize(
    task,
    featurizer: str = "magpie",
    *,
    rows: np.ndarray | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FeatureMatrix:
    """Features of ``task`` (a :class:`benchmarks.loader.TaskData`), computing only ``rows`` (all when None)
    that the cache lacks. Unfeaturisable rows are counted and shown by example in the log."""
    names = feature_names(featurizer)
    folder = _cache_folder(task, featurizer, Path(cache_dir) if cache_dir else default_cache_dir())
    n = task.n_rows
    wanted = np.zeros(n, dtype=bool)
    wanted[np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)] = True
    X = np.full((n, len(names)), np.nan, dtype=np.float32)
    done = np.zeros(n, dtype=bool)
    starts = range(0, n, CHUNK_ROWS)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(wanted.sum()), desc=f"features {task.spec.name} ({featurizer})", unit="row", leave=False)
    for start in starts:
        stop = min(n, start + CHUNK_ROWS)
        path = folder / f"chunk-{start // CHUNK_ROWS:05d}.npz"
        chunk_X, chunk_done = _read_chunk(path, stop - start, len(names))
        missing = np.flatnonzero(wanted[start:stop] & ~chunk_done)
        if missing.size:
            chunk_X[missing] = _compute(featurizer, task, start + missing)
            chunk_done[missing] = True
            _write_chunk(path, chunk_X, chunk_done)  # per chunk, so an interrupted run keeps what it did
        X[start:stop], done[start:stop] = chunk_X, chunk_done
        if bar is not None:
            bar.update(int(wanted[start:stop].sum()))
    if bar is not None:
        bar.close()
    valid = wanted & done & np.isfinite(X).all(axis=1)
    failed = np.flatnonzero(wanted & ~valid)
    if failed.size:
        examples = ", ".join(repr(str(f)) for f in task.formulas[failed[:5]])
        log.warning("%s: %d of %d rows could not be featurised with %s and are dropped (e.g. %s)",
                    task.spec.name, failed.size, int(wanted.sum()), featurizer, examples)  # fmt: skip
    X[~valid] = np.nan
    return FeatureMatrix(X=X, names=names, valid=valid, featurizer=featurizer, version=featurizer_version(featurizer))
