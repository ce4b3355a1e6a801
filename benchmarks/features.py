"""Numerical inputs derived from composition (and structure, where a task has structures), cached on disk.

Featurisers:
- ``magpie``: the 145 attributes of Ward et al. 2016 that IRNet uses (matminer ElementProperty "magpie" 132 +
  Stoichiometry 6 + ValenceOrbital fractions 4 + IonProperty(fast=True) 3), computed here with numpy from the
  element table ``benchmarks/data/magpie_elements.csv`` (written by ``scripts/make_element_table.py``).
- ``magpie-matminer``: the same 145 attributes computed by matminer itself, one composition at a time: the
  reference that ``tests/test_featurizer_parity.py`` holds ``magpie`` to.
- ``elemnet``: the fractions of the 86 elements ElemNet uses.
- ``ward2017``: ``magpie`` plus the Ward et al. 2017 structural attributes (matminer); needs crystal structures.

The cache is keyed by the task's data checksum, the featuriser and its version, and filled chunk by chunk, so
an interrupted featurisation resumes and a run that needs only some rows computes only those.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmarks.atomic import atomic_write
from benchmarks.errors import BenchError, DataError, UsageError
from benchmarks.paths import cache_dir as default_cache_dir

if TYPE_CHECKING:
    from pymatgen.core.composition import Composition

    from benchmarks.loader import TaskData

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000
FEATURE_SCHEMA_VERSION = 2  # bump when a featuriser's definition here changes (2: numpy magpie/elemnet)
PROGRESS_SECONDS = 30.0  # a log line at least this often during long featurisation
MATMINER_BLOCK_ROWS = 2_000  # matminer does ~600 rows/s: log between blocks of this many
BLOCK_FORMULAS = 16_384  # numpy path: formulas per block, so that its temporaries stay in the CPU cache

# ElemNet (Jha et al. 2018) input: fractions of these 86 elements, in this order.
ELEMNET_ELEMENTS = (
    "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo "
    "Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt "
    "Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()
FEATURIZERS = ("magpie", "magpie-matminer", "elemnet", "ward2017")

ELEMENT_TABLE = Path(__file__).parent / "data" / "magpie_elements.csv"
# ElementProperty.from_preset("magpie") (matminer/featurizers/composition/composite.py): properties and
# statistics, in the order of its feature labels.
MAGPIE_PROPERTIES = (
    "Number MendeleevNumber AtomicWeight MeltingT Column Row CovalentRadius Electronegativity NsValence "
    "NpValence NdValence NfValence NValence NsUnfilled NpUnfilled NdUnfilled NfUnfilled NUnfilled GSvolume_pa "
    "GSbandgap GSmagmom SpaceGroupNumber"
).split()
MAGPIE_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
STOICHIOMETRY_P = (0, 2, 3, 5, 7, 10)  # Stoichiometry() default p_list
ORBITALS = ("s", "p", "d", "f")
MAGPIE_NAMES = (
    *(f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES for stat in MAGPIE_STATS),
    *(f"{p}-norm" for p in STOICHIOMETRY_P),
    *(f"frac {orbital} valence electrons" for orbital in ORBITALS),
    "compound possible",
    "max ionic char",
    "avg ionic char",
)
# pymatgen's Composition: amounts below this are dropped (Composition.amount_tolerance); numpy's isclose
# defaults, which matminer's "mode" statistic and IonProperty use.
AMOUNT_TOLERANCE = 1e-8
ISCLOSE_RTOL, ISCLOSE_ATOL = 1e-5, 1e-8
ISOTOPES = {"D": "H", "T": "H"}  # pymatgen reads deuterium and tritium as hydrogen


@dataclass(frozen=True)
class FeatureMatrix:
    """Features aligned with a task's rows. Rows not requested or not featurisable have ``valid`` False."""

    X: np.ndarray  # float32 [n_rows, n_features], NaN where not valid
    names: tuple[str, ...]
    valid: np.ndarray  # bool [n_rows]
    featurizer: str
    version: str


class ElementTableError(BenchError):
    """The shipped element table is missing or damaged (a broken install)."""


@dataclass(frozen=True)
class ElementTable:
    """Per-element data behind ``magpie``, indexed by Z - 1."""

    symbols: tuple[str, ...]
    magpie: np.ndarray  # float64 [n_elements, 22], columns in MAGPIE_PROPERTIES order
    electronegativity: np.ndarray  # float64 [n_elements], pymatgen's X as IonProperty reads it
    oxidation_states: np.ndarray  # float64 [n_elements, max states], NaN-padded common oxidation states
    n_oxidation_states: np.ndarray  # int [n_elements]
    sha256: str  # of the file: part of the featuriser version, so a new table never reuses old caches


def load_element_table(path: Path | None = None) -> ElementTable:
    """Read the element table (default: the shipped one, ELEMENT_TABLE); a missing or damaged file raises
    ElementTableError naming it."""
    path = Path(path) if path is not None else ELEMENT_TABLE
    fix = "reinstall irnet-bench or regenerate it with scripts/make_element_table.py"
    try:
        raw = path.read_bytes()
        lines = [line for line in raw.decode("utf-8").splitlines() if line and not line.startswith("#")]
        header, *rows = list(csv.reader(lines))
        expected = ["symbol", "Z", *MAGPIE_PROPERTIES, "X", "common_oxidation_states"]
        if header != expected:
            raise ValueError("unexpected columns")
        if any(len(r) != len(expected) for r in rows):
            raise ValueError(f"a row without {len(expected)} columns")
        if [int(r[1]) for r in rows] != list(range(1, len(rows) + 1)) or len(rows) < len(ELEMNET_ELEMENTS):
            raise ValueError("rows are not elements Z = 1, 2, ...")
        magpie = np.array([[float(v) for v in r[2 : 2 + len(MAGPIE_PROPERTIES)]] for r in rows])
        electronegativity = np.array([float(r[-2]) for r in rows])
        states = [[float(s) for s in r[-1].split()] for r in rows]
        if not (np.isfinite(magpie).all() and np.isfinite(electronegativity).all()):
            raise ValueError("non-finite values")
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise ElementTableError(f"element table {path} is missing or damaged ({exc}); {fix}") from None
    width = max(len(s) for s in states)
    padded = np.full((len(rows), width), np.nan)
    for i, s in enumerate(states):
        padded[i, : len(s)] = s
    return ElementTable(
        symbols=tuple(r[0] for r in rows),
        magpie=magpie,
        electronegativity=electronegativity,
        oxidation_states=padded,
        n_oxidation_states=np.array([len(s) for s in states]),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


@cache
def element_table() -> ElementTable:
    """The shipped element table, read once."""
    return load_element_table()


def reload_element_table() -> None:
    """Forget the table read so far (and the symbol lookups built from it): the next use reads the file again."""
    element_table.cache_clear()
    _symbol_lookup.cache_clear()


# ---------------------------------------------------------------------------------------------------------
# Formula parsing. The rules are pymatgen's Composition(str) (pymatgen/core/composition.py,
# _parse_formula): element tokens "[A-Z][a-z]*" with optional amounts, "(...)n" groups (also [] and {}),
# nested; "@" ignored (Y3N@C80); duplicated symbols summed; amounts below 1e-8 dropped; negative amounts,
# leftover characters and strings of only digits/space/./*// rejected. pymatgen has no hydrate notation:
# "CuSO4.5H2O" reads as O4.5 and "·" is rejected, and so here. Common formulas (symbols and plain decimal
# amounts) are tokenised with numpy over the bytes of all of them at once; anything else goes through the
# general port below, one formula at a time.

# ASCII digits only: "\d" would also take other scripts' digits, which float() reads and so does the general path
# Each amount can match in one way only: an ambiguous pattern backtracks exponentially on a failing block.
_SIMPLE_FORMULA = re.compile(r"(?:[A-Z][a-z]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)?)+")
_SIMPLE_LINES = re.compile(r"(?:(?:[A-Z][a-z]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)?)+\n)*")
_MAX_DIGITS = 15  # amounts with more digits take the general path: below 2**53 the fast path is exact
_INVALID_FORMULA = re.compile(r"[\s\d.*/]*$")
_GROUP = re.compile(r"([A-Z][a-z]*)\s*([-*\.e\d]*)")
_PARENTHESES = re.compile(r"\(([^\(\)]+)\)\s*([\.e\d]*)")
_BRACKETS = str.maketrans("[]{}", "()()")
_CODE_BASE = 128  # a symbol of one or two ASCII letters -> an integer code for table lookups


def _symbol_amounts(text: str, factor: float) -> dict[str, float]:
    """Element tokens of a formula without parentheses, amounts summed; ValueError for leftover text."""
    amounts: dict[str, float] = {}
    for match in _GROUP.finditer(text):
        amount = float(match[2]) if match[2].strip() != "" else 1.0
        amounts[match[1]] = amounts.get(match[1], 0.0) + amount * factor
        text = text.replace(match.group(), "", 1)
    if text.strip():
        raise ValueError(text)
    return amounts


def parse_formula(formula: str) -> dict[str, float] | None:
    """{symbol: amount} by pymatgen's rules (before isotopes are merged), or None where pymatgen rejects it."""
    if _INVALID_FORMULA.match(formula):
        return None
    formula = formula.replace("@", "").translate(_BRACKETS)
    try:
        match = _PARENTHESES.search(formula)
        while match:
            factor = float(match[2]) if match[2] != "" else 1.0
            # pymatgen writes the expanded group back as text (repr of each amount) and parses it again
            expanded = "".join(f"{el}{amt}" for el, amt in _symbol_amounts(match[1], factor).items())
            formula = formula.replace(match.group(), expanded, 1)
            match = _PARENTHESES.search(formula)
        amounts = _symbol_amounts(formula, 1.0)
    except ValueError:
        return None
    if any(amount < -AMOUNT_TOLERANCE for amount in amounts.values()):
        return None
    return {el: amount for el, amount in amounts.items() if abs(amount) >= AMOUNT_TOLERANCE}


@cache
def _symbol_lookup() -> tuple[dict[str, int], np.ndarray]:
    """symbol -> element index, and the same as an array indexed by the symbol's integer code (-1: none)."""
    table = element_table()
    index = {symbol: i for i, symbol in enumerate(table.symbols)}
    index.update({isotope: index[element] for isotope, element in ISOTOPES.items()})
    by_code = np.full(_CODE_BASE * _CODE_BASE, -1, dtype=np.int64)
    for symbol, i in index.items():
        by_code[_symbol_code(symbol)] = i
    return index, by_code


def _symbol_code(symbol: str) -> int:
    return ord(symbol[0]) * _CODE_BASE + (ord(symbol[1]) if len(symbol) > 1 else 0)


@dataclass(frozen=True)
class Compositions:
    """Parsed formulas as a ragged array: formula i has elements ``element[start[i]:start[i+1]]`` (each once,
    isotopes merged) with ``amount`` (> 0); ``valid`` False where the formula cannot be read (no elements)."""

    start: np.ndarray  # int64 [n + 1]
    element: np.ndarray  # int64 [nnz], index into the element table
    amount: np.ndarray  # float64 [nnz]
    valid: np.ndarray  # bool [n]


def _merge(
    row: np.ndarray, key: np.ndarray, amount: np.ndarray, n_keys: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the amounts of equal (row, key) pairs; the result is sorted by row, then key."""
    combined = row * n_keys + key
    unique, inverse = np.unique(combined, return_inverse=True)
    return unique // n_keys, unique % n_keys, np.bincount(inverse, weights=amount, minlength=len(unique))


def _tokenize_simple(formulas: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens of formulas that match _SIMPLE_FORMULA, all at once with numpy over their bytes: (formula
    index, symbol code, amount) per token, and the formulas whose amounts are too long for this path.

    An amount "I.F" is computed as the integer of its digits over 10**len(F): both are exact in float64
    (at most _MAX_DIGITS digits) and IEEE division rounds correctly, so it equals Python's float("I.F")."""
    text = np.frombuffer(("\n".join(formulas) + "\n").encode("ascii"), dtype=np.uint8).astype(np.int64)
    upper = (text >= 65) & (text <= 90)
    newline = text == 10
    starts = np.flatnonzero(upper)
    formula = np.searchsorted(np.flatnonzero(newline), starts)
    second = text[starts + 1]
    has_second = (second >= 97) & (second <= 122)
    code = text[starts] * _CODE_BASE + np.where(has_second, second, 0)
    boundaries = np.flatnonzero(upper | newline)
    ends = boundaries[np.searchsorted(boundaries, starts) + 1]
    amount_start = starts + 1 + has_second
    length = ends - amount_start  # characters of the amount: digits and at most one "."
    amount = np.ones(len(starts))
    too_long = np.zeros(len(formulas), dtype=bool)
    too_long[formula[length > _MAX_DIGITS + 1]] = True  # more digits than exact here (and bounded memory)
    width = min(int(length.max()) if len(length) else 0, _MAX_DIGITS + 1)
    if width:
        positions = amount_start[:, None] + np.arange(width)
        inside = np.arange(width) < length[:, None]
        chars = np.where(inside, text[np.minimum(positions, len(text) - 1)], 0)
        is_digit = (chars >= 48) & (chars <= 57)
        digits_after: np.ndarray = np.cumsum(is_digit[:, ::-1], axis=1)[:, ::-1] - is_digit  # digits to the right
        dot = chars == 46
        after_dot = np.cumsum(dot, axis=1) > 0
        n_digits = is_digit.sum(axis=1)
        too_long[formula[n_digits > _MAX_DIGITS]] = True
        power = np.minimum(digits_after, _MAX_DIGITS)
        mantissa = (np.where(is_digit, chars - 48, 0) * 10**power).sum(axis=1)
        decimals = (is_digit & after_dot).sum(axis=1)
        amount = np.where(length > 0, mantissa / 10.0**decimals, 1.0)
    return formula, code, amount, too_long


def parse_formulas(formulas: Sequence[str]) -> Compositions:
    """Parse many distinct formulas at once (see :func:`parse_formula` for the rules)."""
    n = len(formulas)
    formulas = list(formulas)
    if _SIMPLE_LINES.fullmatch("\n".join(formulas) + "\n"):  # the common case: every formula is simple
        simple = np.ones(n, dtype=bool)
    else:
        simple = np.fromiter((_SIMPLE_FORMULA.fullmatch(f) is not None for f in formulas), dtype=bool, count=n)
    simple_rows = np.flatnonzero(simple)
    row, code, amounts, too_long = _tokenize_simple([formulas[i] for i in simple_rows])
    row = simple_rows[row]
    if too_long.any():
        simple[simple_rows[too_long]] = False
        keep = simple[row]
        row, code, amounts = row[keep], code[keep], amounts[keep]
    # General path: the full pymatgen rules, one formula at a time (parentheses, spaces, exponents, ...).
    index, by_code = _symbol_lookup()
    extra_row, extra_code, extra_amount = [], [], []
    rejected = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~simple):
        parsed = parse_formula(formulas[i])
        if parsed is None or not all(symbol in index for symbol in parsed):  # unknown symbols: no data
            rejected[i] = True
            continue
        for symbol, amount in parsed.items():
            extra_row.append(i)
            extra_code.append(_symbol_code(symbol))
            extra_amount.append(amount)
    if extra_row:
        row = np.concatenate([row, np.asarray(extra_row, dtype=np.int64)])
        code = np.concatenate([code, np.asarray(extra_code, dtype=np.int64)])
        amounts = np.concatenate([amounts, np.asarray(extra_amount, dtype=np.float64)])
    # Sum duplicated symbols and drop tiny amounts (pymatgen does both per symbol, before looking the symbol
    # up), then merge isotopes into their element.
    row, code, amounts = _merge(row, code, amounts, _CODE_BASE * _CODE_BASE)
    present = amounts >= AMOUNT_TOLERANCE
    element = by_code[code]
    rejected[row[present & (element < 0)]] = True
    keep = present & ~rejected[row]
    row, element, amounts = row[keep], element[keep], amounts[keep]
    if np.isin(code, [_symbol_code(isotope) for isotope in ISOTOPES]).any():
        row, element, amounts = _merge(row, element, amounts, len(element_table().symbols))
    counts = np.bincount(row, minlength=n)
    start = np.concatenate([[0], np.cumsum(counts)])
    return Compositions(start=start, element=element, amount=amounts, valid=counts > 0)


# ---------------------------------------------------------------------------------------------------------
# The 145 attributes. Formulas with the same number of elements k are computed together as dense [m, k]
# arrays; each block follows matminer 0.10.1's definition, cited per function.


def _element_property_stats(values: np.ndarray, amount: np.ndarray, out: np.ndarray) -> np.ndarray:
    """ElementProperty "magpie" (matminer featurizers/composition/composite.py, statistics from
    featurizers/utils/stats.py PropertyStats) into ``out`` [m, 22, 6]: per property the minimum, maximum,
    range, amount-weighted mean, mean absolute deviation from that mean, and mode (the value of the element
    with the largest amount; amounts np.isclose to the largest tie, and the smallest of their values wins).
    ``values`` [m, k, 22], ``amount`` [m, k]. Returns the means [m, 22]."""
    total = amount.sum(axis=1)[:, None]
    minimum, maximum = values.min(axis=1), values.max(axis=1)
    mean = np.einsum("mkp,mk->mp", values, amount) / total
    out[:, :, 0], out[:, :, 1], out[:, :, 2] = minimum, maximum, maximum - minimum
    out[:, :, 3] = mean
    out[:, :, 4] = np.einsum("mkp,mk->mp", np.abs(values - mean[:, None, :]), amount) / total
    # mode: the element with the largest amount; where amounts tie (rare), the smallest value among them
    largest = amount.max(axis=1, keepdims=True)
    most = np.abs(amount - largest) <= ISCLOSE_ATOL + ISCLOSE_RTOL * np.abs(largest)
    out[:, :, 5] = values[np.arange(len(values)), amount.argmax(axis=1)]
    tied = np.flatnonzero(most.sum(axis=1) > 1)
    out[tied, :, 5] = np.where(most[tied, :, None], values[tied], np.inf).min(axis=1)
    return mean


def _stoichiometry(amount: np.ndarray, out: np.ndarray) -> None:
    """Stoichiometry() (featurizers/composition/element.py) into ``out`` [m, 6]: the number of elements, then
    the p-norms (sum of fraction^p)^(1/p) of the atomic fractions for p = 2, 3, 5, 7, 10."""
    fraction = amount / amount.sum(axis=1, keepdims=True)
    out[:, 0] = amount.shape[1]
    for j, p in enumerate(STOICHIOMETRY_P[1:], start=1):
        out[:, j] = (fraction**p).sum(axis=1) ** (1.0 / p)


def _valence_fractions(mean: np.ndarray, out: np.ndarray) -> None:
    """ValenceOrbital(props=["frac"]) (featurizers/composition/orbital.py) into ``out`` [m, 4]: the mean
    number of s, p, d, f valence electrons over the mean total number of valence electrons."""
    columns = [MAGPIE_PROPERTIES.index(f"N{orbital}Valence") for orbital in ORBITALS]
    out[:] = mean[:, columns] / mean[:, [MAGPIE_PROPERTIES.index("NValence")]]


def _ion_properties(element: np.ndarray, amount: np.ndarray, table: ElementTable, out: np.ndarray) -> None:
    """IonProperty(fast=True) (featurizers/composition/ion.py) into ``out`` [m, 3]: compound possible, max
    ionic char, avg ionic char. One element gives [1, 0, 0]. Otherwise a neutral compound is possible when
    some choice of one common oxidation state per element makes sum(state * amount) np.isclose to 0; the
    ionic character of a pair is 1 - exp(-(X_a - X_b)^2 / 4) (Pauling electronegativity X); its maximum over
    pairs, and its sum weighted by both elements' atomic fractions."""
    k = element.shape[1]
    if k == 1:
        out[:] = (1.0, 0.0, 0.0)
        return
    x = table.electronegativity[element]
    fraction = amount / amount.sum(axis=1, keepdims=True)
    a, b = np.triu_indices(k, 1)
    ionic = 1.0 - np.exp(-0.25 * (x[:, a] - x[:, b]) ** 2)
    out[:, 0] = _neutral_possible(element, amount, table)
    out[:, 1] = ionic.max(axis=1)
    out[:, 2] = (fraction[:, a] * fraction[:, b] * ionic).sum(axis=1)


def _neutral_possible(
    element: np.ndarray, amount: np.ndarray, table: ElementTable, max_sums: int = 1 << 22
) -> np.ndarray:
    """Whether any one-state-per-element choice of common oxidation states sums (weighted by amount) to
    within np.isclose's atol of 0, for each row of ``element`` [m, k]. Rows are grouped by their elements'
    numbers of states (sorted), so that every sum formed is a real combination (no padding)."""
    n_states = table.n_oxidation_states[element]
    order = np.argsort(n_states, axis=1, kind="stable")
    element = np.take_along_axis(element, order, axis=1)
    amount = np.take_along_axis(amount, order, axis=1)
    n_states = np.take_along_axis(n_states, order, axis=1)
    pattern_code = (n_states * (table.oxidation_states.shape[1] + 1) ** np.arange(element.shape[1])).sum(axis=1)
    possible = np.zeros(len(element), dtype=bool)
    for code in np.unique(pattern_code):
        rows = np.flatnonzero(pattern_code == code)
        pattern = n_states[rows[0]]
        combinations = int(np.prod(pattern))
        if combinations == 0:  # an element without a common oxidation state (noble gases): never neutral
            continue
        step = max(1, max_sums // combinations)  # bounds the memory of the sums
        for lo in range(0, len(rows), step):
            part = rows[lo : lo + step]
            sums = np.zeros((len(part), 1))
            for j, width in enumerate(pattern):
                charge = table.oxidation_states[element[part, j], :width] * amount[part, j : j + 1]
                sums = (sums[:, :, None] + charge[:, None, :]).reshape(len(part), -1)
            possible[part] = (np.abs(sums) <= ISCLOSE_ATOL).any(axis=1)
    return possible


def _magpie_rows(element: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """The 145 attributes of formulas that all have k elements: ``element``, ``amount`` [m, k]."""
    table = element_table()
    out = np.empty((len(element), len(MAGPIE_NAMES)))
    n_stats = len(MAGPIE_PROPERTIES) * len(MAGPIE_STATS)
    stats = out[:, :n_stats].reshape(len(element), len(MAGPIE_PROPERTIES), len(MAGPIE_STATS))
    mean = _element_property_stats(table.magpie[element], amount, stats)
    stoichiometry = out[:, n_stats : n_stats + len(STOICHIOMETRY_P)]
    _stoichiometry(amount, stoichiometry)
    valence = out[:, n_stats + len(STOICHIOMETRY_P) : -3]
    _valence_fractions(mean, valence)
    _ion_properties(element, amount, table, out[:, -3:])
    return out


def _magpie_block(comps: Compositions) -> np.ndarray:
    """The 145 attributes of parsed formulas (all with at least one element), grouped by element count."""
    counts = np.diff(comps.start)
    out = np.empty((len(counts), len(MAGPIE_NAMES)), dtype=np.float32)  # the cache's dtype: one conversion
    for k in np.unique(counts):
        rows = np.flatnonzero(counts == k)
        positions = comps.start[rows][:, None] + np.arange(k)
        out[rows] = _magpie_rows(comps.element[positions], comps.amount[positions])
    return out


def _elemnet_block(comps: Compositions) -> np.ndarray:
    """Atomic fractions over ELEMNET_ELEMENTS; NaN rows for formulas with any other element."""
    symbols = element_table().symbols
    column = np.full(len(symbols), -1)
    for j, symbol in enumerate(ELEMNET_ELEMENTS):
        column[symbols.index(symbol)] = j
    n = len(comps.start) - 1
    counts = np.diff(comps.start)
    row = np.repeat(np.arange(n), counts)
    total = np.add.reduceat(comps.amount, comps.start[:-1])
    out = np.zeros((n, len(ELEMNET_ELEMENTS)))
    target = column[comps.element]
    inside = target >= 0
    out[row[inside], target[inside]] = comps.amount[inside] / total[row[inside]]
    out[row[~inside]] = np.nan
    return out


def featurize_formulas(formulas: Sequence[str] | np.ndarray, featurizer: str = "magpie") -> np.ndarray:
    """``magpie`` (n, 145) or ``elemnet`` (n, 86) features of formulas, float32, computed with numpy; a row
    of NaN where a formula cannot be read (as pymatgen would reject it) or has an element without data.
    Each distinct formula is parsed once."""
    if featurizer not in ("magpie", "elemnet"):
        raise UsageError(f"featurize_formulas computes magpie or elemnet, not {featurizer!r}")
    width = len(MAGPIE_NAMES) if featurizer == "magpie" else len(ELEMNET_ELEMENTS)
    compute = _magpie_block if featurizer == "magpie" else _elemnet_block
    codes, unique = pd.factorize(pd.Series(formulas, dtype=object).map(str), sort=False)
    unique = list(unique)
    values = np.empty((len(unique), width), dtype=np.float32)  # every row is written below
    # Blocks of formulas small enough that the per-element temporaries stay in the CPU cache.
    for lo in range(0, len(unique), BLOCK_FORMULAS):
        comps = parse_formulas(unique[lo : lo + BLOCK_FORMULAS])
        ok = np.flatnonzero(comps.valid)
        values[lo + np.flatnonzero(~comps.valid)] = np.nan
        if ok.size == len(comps.valid):  # the common case: every formula readable, a plain slice copy
            values[lo : lo + ok.size] = compute(comps)
        elif ok.size:  # compute only formulas with at least one element
            start = np.concatenate([[0], np.cumsum(np.diff(comps.start)[ok])])
            values[lo + ok] = compute(Compositions(start, comps.element, comps.amount, comps.valid[ok]))
    return values if len(unique) == len(codes) else values[codes]  # all distinct: codes are 0..n-1


# ---------------------------------------------------------------------------------------------------------
# The matminer reference (and the ward2017 structural part).


@cache
def matminer_magpie() -> Any:  # a matminer MultipleFeaturizer (matminer has no type information)
    """matminer's featurizer of the 145 Magpie attributes (the reference this module's numpy path matches)."""
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
    """Column names of a featuriser's output (matminer's labels for the Magpie attributes)."""
    if featurizer in ("magpie", "magpie-matminer"):
        return MAGPIE_NAMES
    if featurizer == "elemnet":
        return tuple(f"frac_{el}" for el in ELEMNET_ELEMENTS)
    if featurizer == "ward2017":
        return MAGPIE_NAMES + tuple(_ward2017_structure().feature_labels())
    raise UsageError(f"unknown featurizer {featurizer!r}; use one of {', '.join(FEATURIZERS)}")


def featurizer_version(featurizer: str) -> str:
    """Names what computed the features; part of the cache key, so different code never shares a cache."""
    feature_names(featurizer)  # rejects unknown names
    table = f"table{element_table().sha256[:12]}"
    if featurizer in ("magpie", "elemnet"):
        return f"{featurizer}-numpy-{table}-v{FEATURE_SCHEMA_VERSION}"
    import matminer

    matminer_part = f"matminer{matminer.__version__}"
    if featurizer == "ward2017":
        return f"{featurizer}-{matminer_part}-{table}-v{FEATURE_SCHEMA_VERSION}"
    return f"{featurizer}-{matminer_part}-v{FEATURE_SCHEMA_VERSION}"


def pymatgen_composition(formula: str) -> Composition | None:
    """A pymatgen Composition, or None when the formula cannot be parsed (the reference parser)."""
    from pymatgen.core.composition import Composition

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = Composition(formula)
        return comp if comp.num_atoms > 0 else None
    except Exception:  # pymatgen raises ValueError, KeyError or CompositionError for bad formulas
        return None


def magpie_features(formulas: Sequence[str]) -> np.ndarray:
    """The 145 Ward 2016 attributes per formula computed by matminer (the reference ``magpie-matminer``,
    ~600 formulas/s); a row of NaN where the formula cannot be featurised."""
    featurizer = matminer_magpie()
    out = np.full((len(formulas), len(MAGPIE_NAMES)), np.nan, dtype=np.float32)
    for i, formula in enumerate(formulas):
        comp = pymatgen_composition(formula)
        if comp is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[i] = featurizer.featurize(comp)
            except Exception:  # an element without tabulated data; counted by the caller
                continue
    return out


@cache
def _ward2017_structure() -> Any:  # a matminer MultipleFeaturizer
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


def ward2017_features(formulas: Sequence[str] | np.ndarray, structures: Sequence[Any]) -> np.ndarray:
    """``magpie`` features of the structure's composition plus the Ward 2017 structural attributes."""
    structural = _ward2017_structure()
    n_struct = len(structural.feature_labels())
    out = np.full((len(formulas), 145 + n_struct), np.nan, dtype=np.float32)
    out[:, :145] = featurize_formulas(formulas, "magpie")
    for i, structure in enumerate(structures):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[i, 145:] = structural.featurize(structure)
            except Exception:  # a structure matminer cannot analyse; the row is counted as not featurisable
                out[i, 145:] = np.nan
    return out


def compute_features(
    featurizer: str, formulas: Sequence[str] | np.ndarray, structures: Sequence[Any] | None = None
) -> np.ndarray:
    """float32 features of ``formulas`` (and ``structures``, which ``ward2017`` needs), a row of NaN where one
    cannot be featurised: the one computation behind the cache and behind a logged model's predictions."""
    if featurizer == "ward2017":
        if structures is None:
            raise UsageError("featurizer ward2017 needs crystal structures")
        return ward2017_features(formulas, structures)
    if featurizer == "magpie-matminer":
        # Featurise each distinct formula once: Matbench and OQMD sets repeat formulas.
        unique, inverse = np.unique(np.asarray(formulas).astype(str), return_inverse=True)
        return magpie_features(list(unique))[inverse]
    return featurize_formulas(formulas, featurizer)


def _compute(featurizer: str, task: TaskData, rows: np.ndarray) -> np.ndarray:
    if featurizer == "ward2017" and task.structures is None:
        raise UsageError(
            f"featurizer ward2017 needs crystal structures and {task.spec.name} has none here; "
            "use --featurizer magpie, or --source matminer (online) for Matbench structure tasks"
        )
    structures = None if task.structures is None else [task.structures[i] for i in rows]
    return compute_features(featurizer, task.formulas[rows], structures)


class FormulaError(DataError, ValueError):
    """A formula (or structure) the featuriser cannot read, given to a fitted model or a transformer: a
    ValueError for scikit-learn and MLflow callers, a one-line usage error (exit 2) for the command line."""


INVALID_ACTIONS = ("raise", "nan")


def parse_structures(values: Iterable[Any]) -> list[Any]:
    """pymatgen Structures from CIF texts (a Structure passes as it is); ValueError naming the first that fails.
    The one reader of structures given by a user: a data file's column, a logged model's input."""
    from pymatgen.core.structure import Structure

    out = []
    for row, value in enumerate(values):
        try:
            out.append(value if isinstance(value, Structure) else Structure.from_str(str(value), fmt="cif"))
        except Exception as exc:  # pymatgen raises many kinds on a bad CIF
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"row {row}: not a CIF structure pymatgen reads ({why})") from None
    return out


def featurize_rows(formulas: Sequence[str] | np.ndarray, featurizer: str = "magpie", *,
                   structures: Sequence[Any] | None = None, on_invalid: str = "raise",
                   row_labels: Sequence[Any] | None = None) -> np.ndarray:  # fmt: skip
    """Features of user rows for prediction. A row that cannot be featurised raises :class:`FormulaError`
    naming its row (``row_labels``, else its position) and formula, or, with ``on_invalid="nan"``, gets a row
    of NaN (and so a NaN prediction) while the others are computed as usual."""
    if on_invalid not in INVALID_ACTIONS:
        raise UsageError(f"on_invalid must be one of {', '.join(INVALID_ACTIONS)}, got {on_invalid!r}")
    rows = np.asarray(formulas, dtype=object)
    X = compute_features(featurizer, rows, structures)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size and on_invalid == "raise":
        label = bad[0] if row_labels is None else list(row_labels)[bad[0]]
        more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
        raise FormulaError(f"row {label}: formula {rows[bad[0]]!r} cannot be featurised with {featurizer} (not a "
                           f"formula pymatgen reads, or an element without data){more}; fix or drop it, or ask for "
                           "NaN predictions for such rows (on_invalid='nan')")  # fmt: skip
    return X


def _cache_folder(task: TaskData, featurizer: str, root: Path) -> Path:
    return root / "features" / task.spec.name / f"{task.sha256[:16]}-{featurizer_version(featurizer)}"


def _chunk_path(folder: Path, start: int) -> Path:
    return folder / f"chunk-{start // CHUNK_ROWS:05d}.npz"


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
    task: TaskData,
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
    for start in starts:
        stop = min(n, start + CHUNK_ROWS)
        X[start:stop], done[start:stop] = _read_chunk(_chunk_path(folder, start), stop - start, len(names))
    to_compute = wanted & ~done
    n_wanted, n_missing = int(wanted.sum()), int(to_compute.sum())
    log.info("%s: featurising %d rows with %s, of which %d cached", task.spec.name, n_wanted, featurizer,
             n_wanted - n_missing)  # fmt: skip
    # A bar on a terminal; otherwise (a log file, a batch job) a log line at least every PROGRESS_SECONDS.
    bar = None
    if progress and n_missing and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=n_missing, desc=f"features {task.spec.name} ({featurizer})", unit="row", leave=False)
    block = MATMINER_BLOCK_ROWS if featurizer in ("magpie-matminer", "ward2017") else CHUNK_ROWS
    started = last_line = time.monotonic()
    computed = 0
    for start in starts:
        stop = min(n, start + CHUNK_ROWS)
        missing = start + np.flatnonzero(to_compute[start:stop])
        for lo in range(0, missing.size, block):
            part = missing[lo : lo + block]
            X[part] = _compute(featurizer, task, part)
            done[part] = True
            computed += part.size
            if bar is not None:
                bar.update(part.size)
            elif time.monotonic() - last_line >= PROGRESS_SECONDS:
                last_line = time.monotonic()
                log.info("%s: featurised %d of %d rows (%.0f rows/s)", task.spec.name, computed, n_missing,
                         computed / (last_line - started))  # fmt: skip
        if missing.size:  # per chunk, so an interrupted run keeps what it did
            _write_chunk(_chunk_path(folder, start), X[start:stop], done[start:stop])
    if bar is not None:
        bar.close()
    if n_missing:
        seconds = time.monotonic() - started
        log.info("%s: featurised %d rows in %.1f s (%.0f rows/s)", task.spec.name, n_missing, seconds,
                 n_missing / max(seconds, 1e-9))  # fmt: skip
    valid = wanted & done & np.isfinite(X).all(axis=1)
    failed = np.flatnonzero(wanted & ~valid)
    if failed.size:
        examples = ", ".join(repr(str(f)) for f in task.formulas[failed[:5]])
        log.warning("%s: %d of %d rows could not be featurised with %s and are dropped (e.g. %s)",
                    task.spec.name, failed.size, int(wanted.sum()), featurizer, examples)  # fmt: skip
    X[~valid] = np.nan
    return FeatureMatrix(X=X, names=names, valid=valid, featurizer=featurizer, version=featurizer_version(featurizer))
