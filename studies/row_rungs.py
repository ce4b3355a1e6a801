"""Multi-fidelity over training rows (:class:`studies.presets.RowRungs`): which configurations of a rung go on to
the next one, and how well each rung's ranking foretold the next.

A study with row rungs tags each trial with the rung it ran on (:data:`ATTR_ROW_RUNG`, absent: rung 0). Rung 0 is
an ordinary search on a subsample of the rows; each later rung holds the configurations promoted from the rung
before it, queued with the parameters they had there (:data:`ATTR_PROMOTED_FROM`) and fitted again from scratch
on more rows. Only the last rung, every training row, is selected from (:func:`studies.tuning.tune`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from studies.coordination import ATTR_FAILURE, ATTR_PROMOTED_FROM, ATTR_ROW_RUNG, ATTR_RUNG_ROWS
from studies.outcomes import RungSummary

__all__ = ["ATTR_PROMOTED_FROM", "ATTR_ROW_RUNG", "ATTR_RUNG_ROWS", "promote", "rung_of", "summarize_rungs"]


def rung_of(trial: FrozenTrial) -> int:
    """The rung ``trial`` ran (or will run) on."""
    return int(trial.user_attrs.get(ATTR_ROW_RUNG, 0))


def promotion_order(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials of one rung, best first: complete trials by their validation MAE, then pruned ones by
    the furthest epoch they reached (further first) and their validation MAE there. A crashed trial has no
    place. A complete trial ran its whole schedule, so it ranks before any pruned one."""

    def key(trial: FrozenTrial) -> tuple[int, float, float, int]:
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            return (0, 0.0, float(trial.value), trial.number)
        last = max(trial.intermediate_values)
        return (1, -float(last), float(trial.intermediate_values[last]), trial.number)

    ranked = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ranked += [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    return sorted(ranked, key=key)


def promote(study: optuna.Study, trials: Sequence[FrozenTrial], rung: int, count: int, rows: int) -> list[int]:
    """Queue the ``count`` best of ``trials`` (finished trials of ``rung``; :func:`promotion_order`) for rung
    ``rung + 1`` on ``rows`` training rows, each once, however often this is called (a resumed study, a second
    worker); returns the numbers of the trials promoted (queued now or before)."""
    chosen = promotion_order(trials)[:count]
    # Queued before: any trial of the next rung that repeats one of them, but a surplus or interrupted one (a
    # retry or a queued copy stands in for it).
    queued = {int(t.user_attrs[ATTR_PROMOTED_FROM]) for t in study.get_trials(deepcopy=False)
              if ATTR_PROMOTED_FROM in t.user_attrs and rung_of(t) == rung + 1
              and (t.state != TrialState.FAIL or ATTR_FAILURE in t.user_attrs)}  # fmt: skip
    for trial in chosen:
        if trial.number not in queued:
            attrs = {ATTR_ROW_RUNG: rung + 1, ATTR_PROMOTED_FROM: trial.number, ATTR_RUNG_ROWS: rows}
            study.enqueue_trial(trial.params, user_attrs=attrs)
    return [t.number for t in chosen]


def summarize_rungs(trials: Sequence[FrozenTrial], rows: Sequence[int]) -> tuple[RungSummary, ...]:
    """Per rung of ``rows``: :class:`RungSummary` from the study's finished ``trials``."""
    by_rung = [[t for t in trials if rung_of(t) == r and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
               for r in range(len(rows))]  # fmt: skip
    out = []
    for r, n_rows in enumerate(rows):
        spearman = math.nan
        if r + 1 < len(rows):
            here = {t.number: _value(t) for t in by_rung[r]}
            pairs = [(here[int(t.user_attrs[ATTR_PROMOTED_FROM])], _value(t)) for t in by_rung[r + 1]
                     if int(t.user_attrs.get(ATTR_PROMOTED_FROM, -1)) in here]  # fmt: skip
            spearman = spearman_rho([a for a, _ in pairs], [b for _, b in pairs])
        out.append(RungSummary(rows=int(n_rows), configurations=len(by_rung[r]), spearman_next=spearman))
    return tuple(out)


def _value(trial: FrozenTrial) -> float:
    """A trial's validation MAE at the end of what it ran: its value, or its last reported one."""
    if trial.value is not None:
        return float(trial.value)
    return float(trial.intermediate_values[max(trial.intermediate_values)]) if trial.intermediate_values else math.nan


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of paired values (ties take their mean rank); NaN with fewer than two pairs or
    a constant side."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)
