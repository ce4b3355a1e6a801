"""What each model declared about itself (family, colour), as its runs recorded it.

A parent run carries its model's family, group and colour as tags (:func:`studies.tracking.declaration_tags`), so
a report draws and groups a store with the declarations it was written with, and needs no model code: building
a report imports neither torch nor scikit-learn, XGBoost or LightGBM. Runs written before those tags existed
(2026-12-05) fall back to the model registry of the code that reads them, where the model is still declared;
a model declared nowhere is drawn in :data:`UNKNOWN_COLOR` with no family.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

UNKNOWN_COLOR = "#17becf"  # a model neither its runs nor this code's registry declare


@dataclass(frozen=True)
class Declared:
    family: str  # "network", "tree", "reference"; "" when unknown
    color: str


_recorded: dict[str, Declared] = {}  # what the runs of the report being built recorded (:func:`remember`)


def remember(finals: pd.DataFrame) -> None:
    """Take each model's declaration from the ``family`` and ``color`` columns of the finished runs of the
    report about to be built (the latest run that recorded one wins); models none of them recorded fall back to
    the registry when asked for."""
    _recorded.clear()
    recorded = finals[(finals["family"] != "") & (finals["color"] != "")] if "family" in finals else finals.iloc[0:0]
    for row in recorded.sort_values("end_time").itertuples():
        _recorded[str(row.model)] = Declared(str(row.family), str(row.color))


def declared(model: str) -> Declared:
    """``model``'s declaration as its runs recorded it, else today's registry's; unknown when no module declares
    it or the model code cannot be imported here."""
    if model in _recorded:
        return _recorded[model]
    from studies.registry import model_info  # imports the model modules: only for stores written before the tags

    try:
        info = model_info(model)
    except Exception:  # unregistered, or its library is not installed on this machine
        return Declared("", UNKNOWN_COLOR)
    return Declared(info.family, info.color)


def recorded(model: str) -> bool:
    """Whether the runs of the report being built recorded ``model``'s declaration."""
    return model in _recorded


def family(model: str) -> str:
    """The model's family: "network", "tree" or "reference"; "" for a model declared nowhere."""
    return declared(model).family


def color(model: str) -> str:
    """The model's colour, the same in every figure so a reader can follow it from plot to plot."""
    return declared(model).color
