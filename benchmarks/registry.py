"""Every task of the benchmark, declared as data: name, property, unit, input kind, metric, source, split.

Row counts are the true counts of the pinned source files (checked by tests against the files themselves).
"""

from __future__ import annotations

import builtins
import difflib
from dataclasses import dataclass

from benchmarks.errors import UsageError

MATBENCH_SPLIT_SEED = 18012019  # Matbench v0.1: KFold / StratifiedKFold(n_splits=5, shuffle=True, random_state=...)
MATBENCH_N_FOLDS = 5


@dataclass(frozen=True)
class TaskSpec:
    """What a task is. ``files`` are paths inside the source archive (one per split part for fixed splits)."""

    name: str
    property: str
    unit: str
    input_kind: str  # "composition" or "structure" (what the original task uses)
    metric: str  # "mae" for regression, "rocauc" for classification
    source: str  # "crabnet" archive, or "user" for --data-file
    split_scheme: str  # "fixed" (train/val/test files), "matbench" (official 5 folds), "random" / "column" (user)
    n_rows: int
    files: tuple[str, ...] = ()
    description: str = ""

    @builtins.property  # the field `property` hides the builtin in this class body
    def task_type(self) -> str:
        return "classification" if self.metric == "rocauc" else "regression"

    @builtins.property
    def n_folds(self) -> int:
        return MATBENCH_N_FOLDS if self.split_scheme == "matbench" else 1

    @builtins.property
    def composition_only(self) -> bool:
        """True where a structure task is run from its formulas alone (the archive has no structures)."""
        return self.input_kind == "structure" and self.source != "matminer"

    @builtins.property
    def is_matbench(self) -> bool:
        return self.split_scheme == "matbench"


def _fixed(name: str, folder: str, prop: str, unit: str, n_rows: int, description: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        property=prop,
        unit=unit,
        input_kind="composition",
        metric="mae",
        source="crabnet",
        split_scheme="fixed",
        n_rows=n_rows,
        files=tuple(f"benchmark_data/{folder}/{part}.csv" for part in ("train", "val", "test")),
        description=description,
    )


def _matbench(name: str, csv: str, prop: str, unit: str, input_kind: str, metric: str, n_rows: int) -> TaskSpec:
    return TaskSpec(
        name=name,
        property=prop,
        unit=unit,
        input_kind=input_kind,
        metric=metric,
        source="crabnet",
        split_scheme="matbench",
        n_rows=n_rows,
        files=(f"matbench/{csv}",),
        description=f"Matbench v0.1 {name}, official 5 folds",
    )


_OQMD = "OQMD (via the CrabNet benchmark archive), fixed train/validation/test split"
_MP = "Materials Project (via the CrabNet benchmark archive), fixed train/validation/test split"
_AFLOW = "AFLOW (via the CrabNet benchmark archive), fixed train/validation/test split"
_CRIT = "Bartel et al. critical examination set (via the CrabNet archive), fixed split"

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        _fixed("formation_energy", "OQMD_Formation_Enthalpy", "formation enthalpy", "eV/atom", 341_700, _OQMD),
        _fixed("oqmd_band_gap", "OQMD_Bandgap", "band gap", "eV", 341_608, _OQMD),
        _fixed("oqmd_volume_per_atom", "OQMD_Volume_per_atom", "volume per atom", "Å^3/atom", 341_700, _OQMD),
        _fixed("oqmd_energy_per_atom", "OQMD_Energy_per_atom", "total energy per atom", "eV/atom", 341_700, _OQMD),
        _matbench("matbench_steels", "steels_yield.csv", "yield strength", "MPa", "composition", "mae", 312),
        _matbench("matbench_jdft2d", "jdft2d.csv", "exfoliation energy", "meV/atom", "structure", "mae", 636),
        _matbench("matbench_phonons", "phonons.csv", "last phonon DOS peak", "cm^-1", "structure", "mae", 1265),
        _matbench("matbench_expt_gap", "expt_gap.csv", "experimental band gap", "eV", "composition", "mae", 4604),
        _matbench("matbench_dielectric", "dielectric.csv", "refractive index", "unitless", "structure", "mae", 4764),
        _matbench("matbench_expt_is_metal", "expt_is_metal.csv", "is metal (expt.)", "", "composition", "rocauc", 4921),
        _matbench("matbench_glass", "glass.csv", "glass forming ability", "", "composition", "rocauc", 5680),
        _matbench(
            "matbench_log_gvrh",
            "elasticity_log10(G_VRH).csv",
            "log10 shear modulus",
            "log10(GPa)",
            "structure",
            "mae",
            10987,
        ),
        _matbench(
            "matbench_log_kvrh",
            "elasticity_log10(K_VRH).csv",
            "log10 bulk modulus",
            "log10(GPa)",
            "structure",
            "mae",
            10987,
        ),
        _matbench(
            "matbench_perovskites", "castelli.csv", "formation energy", "eV/unit cell", "structure", "mae", 18928
        ),
        _matbench("matbench_mp_gap", "mp_gap.csv", "band gap (PBE)", "eV", "structure", "mae", 106113),
        _matbench("matbench_mp_is_metal", "mp_is_metal.csv", "is metal (PBE)", "", "structure", "rocauc", 106113),
        _matbench("matbench_mp_e_form", "mp_e_form.csv", "formation energy", "eV/atom", "structure", "mae", 132752),
        _fixed("mp_bulk_modulus", "mp_bulk_modulus", "bulk modulus", "GPa", 6307, _MP),
        _fixed("mp_shear_modulus", "mp_shear_modulus", "shear modulus", "GPa", 6184, _MP),
        _fixed("mp_elastic_anisotropy", "mp_elastic_anisotropy", "elastic anisotropy", "unitless", 6331, _MP),
        _fixed("mp_e_hull", "mp_e_hull", "energy above hull", "eV/atom", 56662, _MP),
        _fixed("mp_mu_b", "mp_mu_b", "magnetic moment", "μB", 56662, _MP),
        _fixed("aflow_egap", "aflow__Egap", "band gap", "eV", 27577, _AFLOW),
        _fixed("aflow_energy_atom", "aflow__energy_atom", "energy per atom", "eV/atom", 27579, _AFLOW),
        _fixed("aflow_ael_bulk_modulus_vrh", "aflow__ael_bulk_modulus_vrh", "bulk modulus (VRH)", "GPa", 4896, _AFLOW),
        _fixed(
            "aflow_ael_shear_modulus_vrh", "aflow__ael_shear_modulus_vrh", "shear modulus (VRH)", "GPa", 4896, _AFLOW
        ),
        _fixed("aflow_ael_debye_temperature", "aflow__ael_debye_temperature", "Debye temperature", "K", 4896, _AFLOW),
        _fixed(
            "aflow_agl_thermal_conductivity_300K",
            "aflow__agl_thermal_conductivity_300K",
            "thermal conductivity at 300 K",
            "W/(m K)",
            4887,
            _AFLOW,
        ),
        _fixed(
            "aflow_agl_thermal_expansion_300K",
            "aflow__agl_thermal_expansion_300K",
            "thermal expansion at 300 K",
            "1/K",
            4886,
            _AFLOW,
        ),
        _fixed("critexam_ed", "CritExam__Ed", "decomposition energy", "eV/atom", 85014, _CRIT),
        _fixed("critexam_ef", "CritExam__Ef", "formation energy", "eV/atom", 85014, _CRIT),
    ]
}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; an unknown name raises a UsageError that lists the closest names."""
    if name in TASKS:
        return TASKS[name]
    close = difflib.get_close_matches(name, TASKS, n=4, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "run `python -m benchmarks.tasks list` for all tasks"
    raise UsageError(f"unknown task {name!r}; {hint}")


def matbench_id_prefix(task_name: str) -> str:
    """``matbench_expt_gap`` -> ``mb-expt-gap``."""
    return "mb-" + task_name.removeprefix("matbench_").replace("_", "-")


def matbench_ids(task_name: str, n_rows: int) -> list[str]:
    """Matbench's own ids: row i is ``mb-<task>-<i+1>``, zero-padded to floor(log10(n))+1 digits."""
    width = len(str(n_rows))
    prefix = matbench_id_prefix(task_name)
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(n_rows)]
