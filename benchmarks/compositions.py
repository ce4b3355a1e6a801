"""Composition identity of formulas: the chemical system (for grouped splits) and the normalised composition
(for duplicate checks), parsed once per distinct formula string.

Two formulas are the same composition when their element fractions agree (``O3.0Pu2.0``, ``Pu2O3`` and
``Pu4O6`` are one composition); the chemical system is the sorted set of elements (``O-Pu``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from benchmarks.splits import Fold

FRACTION_DIGITS = 6  # element fractions agreeing to 1e-6 are one composition (stoichiometries from text)


@lru_cache(maxsize=1_000_000)
def parse_formula(formula: str) -> tuple[str, str] | None:
    """``(chemical system, normalised composition)`` of one formula, or None when it cannot be parsed.

    The one place that parses formulas here (pymatgen's Composition); swap it for a faster parser as one unit.
    """
    from pymatgen.core import Composition, Element

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            composition = Composition(formula)
            if not all(isinstance(el, Element) for el in composition.elements):
                return None  # pymatgen reads unknown symbols ("Xx9Qq") as dummy species; they are not elements
            amounts = composition.get_el_amt_dict()
    except Exception:  # pymatgen raises ValueError, KeyError or CompositionError for bad formulas
        return None
    total = sum(amounts.values())
    if not amounts or total <= 0 or any(v < 0 for v in amounts.values()):
        return None
    elements = sorted(amounts)
    key = " ".join(f"{el}:{amounts[el] / total:.{FRACTION_DIGITS}f}" for el in elements)
    return "-".join(elements), key


@dataclass(frozen=True)
class CompositionKeys:
    """Per row: chemical system and normalised composition ("" where the formula does not parse)."""

    chemsys: np.ndarray  # str
    composition: np.ndarray  # str

    @property
    def parsed(self) -> np.ndarray:
        return self.composition != ""


def composition_keys(formulas: np.ndarray) -> CompositionKeys:
    """Chemical system and normalised composition of every formula."""
    parsed = [parse_formula(str(f)) for f in formulas]
    chemsys = np.array([p[0] if p else "" for p in parsed], dtype=object)
    composition = np.array([p[1] if p else "" for p in parsed], dtype=object)
    return CompositionKeys(chemsys, composition)


def train_test_duplicates(keys: CompositionKeys, fold: Fold) -> int:
    """Test rows of ``fold`` whose composition also occurs among its training (or validation) rows."""
    seen = set(keys.composition[fold.train])
    if fold.val is not None:
        seen |= set(keys.composition[fold.val])
    seen.discard("")
    return int(sum(1 for key in keys.composition[fold.test] if key in seen))


def duplicate_rows(keys: CompositionKeys) -> int:
    """Rows whose composition occurs in an earlier row (what ``--dedupe first|mean`` would remove)."""
    parsed = keys.composition[keys.parsed]
    return int(len(parsed) - len(set(parsed)))
