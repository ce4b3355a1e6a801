"""Composition identity of formulas: the chemical system (for grouped splits) and the normalised composition
(for duplicate checks), parsed once per distinct formula string.

Two formulas are the same composition when their element fractions agree (``O3.0Pu2.0``, ``Pu2O3`` and
``Pu4O6`` are one composition); the chemical system is the sorted set of elements (``O-Pu``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.features import element_table, parse_formulas
from benchmarks.splits import Fold

FRACTION_DIGITS = 6  # element fractions agreeing to 1e-6 are one composition (stoichiometries from text)


def _keys_of_distinct(formulas: list[str]) -> list[tuple[str, str] | None]:
    """``(chemical system, normalised composition)`` of each distinct formula, None where it cannot be read.

    Parsed by the featuriser's own parser (pymatgen's rules; see :func:`benchmarks.features.parse_formula`), so
    a formula counts here exactly when it can be featurised.
    """
    comps = parse_formulas(formulas)
    symbols = element_table().symbols
    out: list[tuple[str, str] | None] = []
    for i in range(len(formulas)):
        if not comps.valid[i]:
            out.append(None)
            continue
        part = slice(comps.start[i], comps.start[i + 1])
        amounts = dict(zip((symbols[e] for e in comps.element[part]), comps.amount[part].tolist(), strict=True))
        total = sum(amounts.values())
        elements = sorted(amounts)
        key = " ".join(f"{el}:{amounts[el] / total:.{FRACTION_DIGITS}f}" for el in elements)
        out.append(("-".join(elements), key))
    return out


def parse_formula(formula: str) -> tuple[str, str] | None:
    """``(chemical system, normalised composition)`` of one formula, or None when it cannot be parsed."""
    return _keys_of_distinct([formula])[0]


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
    distinct, inverse = np.unique(np.asarray(formulas, dtype=str), return_inverse=True)
    keys = _keys_of_distinct(distinct.tolist())
    parsed = [keys[j] for j in inverse.ravel()]
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
