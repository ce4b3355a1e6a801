"""The numpy featuriser (``magpie``, ``elemnet``) against its reference, matminer 0.10.1 over pymatgen.

Every one of the 145 columns must equal matminer's: exactly for the columns that are table look-ups, counts
and flags (minimum, maximum, range, mode, 0-norm, compound possible), to 1e-6 relative for the rest. A formula
that pymatgen rejects must give a NaN row here too, and one that pymatgen reads must not.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from benchmarks import features as feats
from benchmarks.features import MAGPIE_NAMES, featurize_formulas

RTOL = 1e-6
# Sums such as a mean absolute deviation can be 0 in one and ~1e-16 in the other; below this, equal.
ATOL = 1e-9
EXACT_COLUMNS = np.array(
    [name.split()[1] in ("minimum", "maximum", "range", "mode") if name.startswith("MagpieData") else
     name in ("0-norm", "compound possible") for name in MAGPIE_NAMES]
)  # fmt: skip

LANTHANIDES = "La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split()
ACTINIDES = "Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr".split()
SUPERHEAVY = "Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og".split()
HARD_CASES = [
    # fractional and non-integer stoichiometry, ties and near-ties for "mode", tiny amounts
    "Hg0.7Cd0.3Te", "Fe2O3", "NaCl", "Fe0.5O0.500001", "Fe0.5O0.50001", "Fe1O1.00001", "Al0.333Ga0.667N",
    "Fe.5O", "Fe2.O3", "Xx0O", "Fe0.000000001O", "Fe0.00000002O", "Fe0O", "Fe0", "Fe1e-9O", "Fe2e1O3", "Li0.01Co0.99O2",
    "Ba0.6Sr0.4TiO3", "Mo132O372", "C60", "Si1000000O2000000", "Fe0.1234567890123O", "Fe0.12345678901234567O",
    "Fe1.0000000000000000000000000000001O", "Fe\u0662O\u0663", "Li12345678901234567O",
    # duplicated symbols, parentheses (nested; [] and {}), metallofullerenes, hydrates as pymatgen reads them
    "FeOFe", "OFeOFeO", "NaClNa", "Li3Fe2(PO4)3", "Ca(OH)2", "Mg3(Si2O5)2(OH)2", "K4[Fe(CN)6]", "Cu{SO4}",
    "((CH3)3Si)2O", "(Fe)(O)2", "Ca10(PO4)6(OH)2", "(La0.2Ce0.2Pr0.2Nd0.2Sm0.2)O2", "Y3N@C80", "(Fe2O3)0.5",
    "(NH4)2SO4", "CuSO4.5H2O", "Na2CO3.10H2O", "Fe 2 O 3", " NaCl ", "Fe2 O3", "Fe2O3\n",
    # isotopes (pymatgen reads D and T as H)
    "D2O", "HDO", "T2O", "LiD",
    # single elements, noble gases (no oxidation states, no Pauling electronegativity)
    "Fe", "O2", "H", "Si", "He", "Ne", "Ar", "Kr", "Xe", "Rn", "XeF2", "KrF2", "XeO3", "HeNe", "ArHe2", "RnF2",
    # 8 and more elements
    "NaKRbCsMgCaSrBaO", "LiNaKMgCaAlSiPSCl", "YBa2Cu3O7", "Bi2Sr2Ca2Cu3O10", "HgBa2Ca2Cu3O8",
    "FeCoNiCrMnAlTiVCuZn", "LiBeBCNOFNaMgAlSiPSClKCa",
    # rejected by pymatgen (or unreadable by matminer): must be NaN here too
    "", "123", "  ", "Xx", "XxO", "Hello", "Fe-2O3", "Fe2O3)", "(Fe2O3", "Fe..2", "fe2o3", "Fe2O3-", "NaCl·H2O",
    "Fe2e", "Fe*2", "Fe/O", "FeE2", "Fe2O3 x", "2Fe2O3", "Fe(O", "()", "Q", "Uue",
    *(f"{el}2O3" for el in LANTHANIDES), *(f"{el}O2" for el in ACTINIDES), *SUPERHEAVY,
    *(f"Fe{el}" for el in SUPERHEAVY), *(f"{el}" for el in LANTHANIDES + ACTINIDES),
]  # fmt: skip


def matminer_reference(formulas: list[str]) -> np.ndarray:
    return feats.magpie_features(formulas)


def assert_parity(formulas: list[str], ours: np.ndarray, reference: np.ndarray) -> None:
    """Same NaN rows, exact equality on EXACT_COLUMNS, RTOL elsewhere; the message names the differences."""
    ours_nan, ref_nan = np.isnan(ours).all(axis=1), np.isnan(reference).all(axis=1)
    assert not np.isnan(reference[~ref_nan]).any(), "matminer gave a partial NaN row"
    mismatched = np.flatnonzero(ours_nan != ref_nan)
    assert not mismatched.size, "readable by one, not the other: " + ", ".join(
        f"{formulas[i]!r} (ours {'NaN' if ours_nan[i] else 'ok'})" for i in mismatched[:10]
    )
    a, b = ours[~ref_nan].astype(np.float64), reference[~ref_nan].astype(np.float64)
    close = np.abs(a - b) <= ATOL + RTOL * np.abs(b)
    close[:, EXACT_COLUMNS] = a[:, EXACT_COLUMNS] == b[:, EXACT_COLUMNS]
    rows, cols = np.nonzero(~close)
    kept = [f for f, bad in zip(formulas, ref_nan, strict=True) if not bad]
    assert not rows.size, f"{rows.size} values differ, e.g. " + "; ".join(
        f"{kept[r]!r} {MAGPIE_NAMES[c]}: ours {a[r, c]!r} matminer {b[r, c]!r}"
        for r, c in zip(rows[:8], cols[:8], strict=True)
    )


@pytest.fixture(scope="session")
def sample_formulas() -> list[str]:
    """Hard cases, a seeded sample of formation_energy and of the cached Matbench composition tasks."""
    from benchmarks.loader import load_task

    rng = np.random.default_rng(9)
    formation = load_task("formation_energy").formulas
    expt_gap = load_task("matbench_expt_gap").formulas
    steels = load_task("matbench_steels").formulas
    sample = [
        *HARD_CASES,
        *formation[rng.choice(len(formation), 1200, replace=False)],
        *expt_gap[rng.choice(len(expt_gap), 700, replace=False)],
        *steels,
    ]
    return [str(f) for f in sample]


@pytest.fixture(scope="session")
def reference_features(sample_formulas) -> np.ndarray:
    """matminer's features of the sample, computed once per session (~600 formulas/s)."""
    return matminer_reference(sample_formulas)


def test_feature_names_are_matminers():
    assert len(MAGPIE_NAMES) == 145
    assert tuple(feats.matminer_magpie().feature_labels()) == MAGPIE_NAMES


def test_magpie_matches_matminer_on_hard_cases_and_real_formulas(sample_formulas, reference_features):
    ours = featurize_formulas(sample_formulas, "magpie")
    assert ours.dtype == np.float32 and ours.shape == (len(sample_formulas), 145)
    assert_parity(sample_formulas, ours, reference_features)
    # the sample really covers what it claims: rejected, single-element, noble-gas and 8+ element rows
    n_elements = ours[:, MAGPIE_NAMES.index("0-norm")]
    assert np.isnan(n_elements).sum() >= 20 and (n_elements == 1).sum() >= 40 and (n_elements >= 8).sum() >= 5
    possible = ours[:, MAGPIE_NAMES.index("compound possible")]
    assert 0 < np.nansum(possible) < np.isfinite(possible).sum()


def test_formulas_are_read_as_pymatgen_reads_them():
    """The parser's {symbol: amount} equals pymatgen's Composition (amounts exactly) or both reject."""
    from pymatgen.core import Composition

    known = set(feats.element_table().symbols) | set(feats.ISOTOPES)
    for formula in HARD_CASES:
        if "D" in formula or "T" in formula:  # pymatgen keeps D and T as separate keys that print as H
            continue
        ours = feats.parse_formula(formula)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = Composition(formula)
        except Exception:  # pymatgen rejects it: so must we, at the latest when looking the symbols up
            assert ours is None or not set(ours) <= known, formula
            continue
        assert ours == {getattr(sp, "symbol", str(sp)): amount for sp, amount in comp.items()}, formula


def test_elemnet_matches_the_matminer_era_definition(sample_formulas):
    ours = featurize_formulas(sample_formulas, "elemnet")
    assert ours.shape == (len(sample_formulas), 86)
    index = {el: j for j, el in enumerate(feats.ELEMNET_ELEMENTS)}
    for formula, row in zip(sample_formulas[:300], ours[:300], strict=True):
        if formula in ("HDO", "LiD"):  # pymatgen double-counts H when D and H mix (H 4/3 in HDO); we do not
            assert row[0] == pytest.approx(2 / 3 if formula == "HDO" else 0.5)
            continue
        comp = feats.pymatgen_composition(formula)
        fractions = comp.fractional_composition.get_el_amt_dict() if comp is not None else None
        if fractions is None or not set(fractions) <= index.keys():
            assert np.isnan(row).all(), formula
            continue
        expected = np.zeros(86)
        for el, frac in fractions.items():
            expected[index[el]] = frac
        np.testing.assert_allclose(row, expected, rtol=1e-6, atol=1e-9, err_msg=formula)


def test_repeated_formulas_get_identical_rows_and_order_is_kept():
    formulas = ["NaCl", "Fe2O3", "NaCl", "Xx", "Fe2O3", "NaCl"]
    X = featurize_formulas(formulas)
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_array_equal(X[1], X[4])
    assert np.isnan(X[3]).all() and not np.isnan(X[[0, 1, 2, 4, 5]]).any()
    assert X[0, 0] == 11 and X[1, 0] == 8  # MagpieData minimum Number: Na, O
    assert featurize_formulas([]).shape == (0, 145)


@pytest.mark.timeout(60)
def test_a_block_with_one_unusual_formula_does_not_backtrack_for_ever():
    """Long amounts plus one formula for the general path: a block check that backtracks exponentially never
    finishes on this (the regression behind the first full-set run)."""
    formulas = [f"Fe{i}{i}O{i}{i}" for i in range(100, 400)] + ["(Fe2O3)2"]
    X = featurize_formulas(formulas)
    assert not np.isnan(X).any() and X[-1, MAGPIE_NAMES.index("0-norm")] == 2


def test_numpy_path_imports_neither_matminer_nor_pymatgen():
    code = (
        "import sys; import benchmarks.features as f; "
        "X = f.featurize_formulas(['Fe2O3', 'Li3Fe2(PO4)3']); v = f.featurizer_version('magpie'); "
        "f.featurize_formulas(['NaCl'], 'elemnet'); f.feature_names('magpie'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matminer', 'pymatgen')]; "
        "assert not bad, bad; assert X.shape == (2, 145); print(v)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("magpie-numpy-table")


def test_shipped_element_table_is_what_the_generator_writes():
    sys.path.insert(0, str(feats.ELEMENT_TABLE.parents[2] / "scripts"))
    try:
        import make_element_table
    finally:
        sys.path.pop(0)
    assert make_element_table.build() == feats.ELEMENT_TABLE.read_text()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text.replace("26,", "26x,", 1), "damaged"),
        (lambda text: text[: len(text) // 2], "damaged"),
        (lambda text: text.replace("symbol,Z", "symbol,Zz", 1), "unexpected columns"),
        (None, "missing"),
    ],
)
def test_a_damaged_element_table_fails_with_one_line_naming_it(tmp_path, damage, message):
    path = tmp_path / "magpie_elements.csv"
    if damage is not None:
        path.write_text(damage(feats.ELEMENT_TABLE.read_text()))
    with pytest.raises(feats.ElementTableError, match=message) as info:
        feats.load_element_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert "make_element_table" in str(info.value)


def test_featurising_with_a_damaged_table_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, steels_task):
    from benchmarks.cli import main_guard

    damaged = tmp_path / "magpie_elements.csv"
    damaged.write_text(feats.ELEMENT_TABLE.read_text().replace("\nFe,26,", "\nFe,26x,"))
    monkeypatch.setattr(feats, "ELEMENT_TABLE", damaged)
    feats.reload_element_table()
    try:  # as a command would: featurise, with errors turned into one line and an exit code
        code = main_guard(lambda argv: feats.featurize(steels_task, cache_dir=tmp_path, progress=False) and 0)
    finally:
        monkeypatch.undo()
        feats.reload_element_table()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [f"error: element table {damaged} is missing or damaged (invalid literal for int() "
                                 "with base 10: '26x'); reinstall irnet-bench or regenerate it with "
                                 "scripts/make_element_table.py"]  # fmt: skip
    assert not (tmp_path / "features").exists()


def cached_matminer_reference(formulas: list[str]) -> tuple[np.ndarray, float | None]:
    """matminer's features of ``formulas``, kept in the cache folder (keyed by the formulas and the matminer
    version) so that a rerun after a change to the numpy side takes seconds; the seconds matminer took, or
    None when read from the cache."""
    import hashlib
    import io

    import matminer

    from benchmarks.atomic import atomic_write_bytes
    from benchmarks.paths import cache_dir

    key = hashlib.sha256("\n".join(formulas).encode()).hexdigest()[:16]
    path = cache_dir() / "parity" / f"matminer{matminer.__version__}-{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return data["X"], None
    started = time.perf_counter()
    reference = matminer_reference(formulas)
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=reference)
    atomic_write_bytes(path, buffer.getvalue())
    return reference, seconds


@pytest.mark.slow
def test_magpie_matches_matminer_on_every_formation_energy_and_matbench_formula():
    """All 341,700 formation_energy formulas and every Matbench formula in the archive (matminer: ~15 min of
    one core the first time; its result is cached for reruns)."""
    from benchmarks.loader import load_task
    from benchmarks.registry import TASKS

    names = ["formation_energy", *(name for name, spec in TASKS.items() if spec.is_matbench)]
    formulas = sorted({str(f) for name in names for f in load_task(name).formulas})
    started = time.perf_counter()
    ours = featurize_formulas(formulas)
    ours_seconds = time.perf_counter() - started
    reference, matminer_seconds = cached_matminer_reference(formulas)
    matminer_text = "cached" if matminer_seconds is None else f"{matminer_seconds:.0f} s"
    print(f"{len(formulas):,} distinct formulas: numpy {ours_seconds:.1f} s, matminer {matminer_text}")
    assert_parity(formulas, ours, reference)
