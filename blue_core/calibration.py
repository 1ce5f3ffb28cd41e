"""Real-cohort calibration of the fit and spread signals: one home for which threshold applies to a model.

``bench/trust.py`` writes ``data/trust_calibration.json`` from real in-tissue bulk cohorts (every number is
traceable to ``bench/results/trust.md``). Its model-specific parts (fit floor, ensemble-spread ceiling,
compartment centroid) belong to the exact weights they were measured with: they apply to a model only when
its ``card["weights_sha256"]`` equals the one recorded in the calibration. Any other model (a user-trained
one, or a shipped one rebuilt without re-running the bench) falls back to its card's thresholds, which come
from simulated mixtures, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["load_calibration", "for_model", "fit_threshold", "spread_threshold"]

_CALIBRATION = Path(__file__).parent / "data" / "trust_calibration.json"

ThresholdBasis = Literal["real cohorts", "simulated mixtures"]


def load_calibration(path: str | Path | None = None) -> dict[str, Any]:
    """The shipped calibration (``data/trust_calibration.json``, written by ``bench/trust.py``).

    Returns
    -------
    dict
        ``{"ceilings": {set: rank}, "floors": {set: rank}, "fit_floor": {model: fit_r}, "spread_ceiling":
        {model: spread}, "centroids": {model: {set: rank}}, "models": {model: weights sha256}, "source": ...}``;
        empty sections when no calibration is shipped.
    """
    target = Path(path) if path is not None else _CALIBRATION
    if not target.is_file():
        return {"ceilings": {}, "floors": {}, "fit_floor": {}, "spread_ceiling": {}, "centroids": {}, "models": {}}
    return json.loads(target.read_text(encoding="utf-8"))


def for_model(model: "BlueModel", *, calibration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model-specific calibration of ``model``, or ``{}`` when it was not measured with these weights.

    Returns
    -------
    dict
        ``fit_floor`` (float or None), ``spread_ceiling`` (float or None), ``centroid`` (dict or None) when the
        calibration's recorded sha256 for ``model.name`` equals ``model.card["weights_sha256"]``; else ``{}``.
    """
    cal = calibration if calibration is not None else load_calibration()
    recorded = (cal.get("models") or {}).get(model.name)
    own = (model.card or {}).get("weights_sha256")
    if not recorded or recorded != own:
        return {}
    return {"fit_floor": (cal.get("fit_floor") or {}).get(model.name),
            "spread_ceiling": (cal.get("spread_ceiling") or {}).get(model.name),
            "centroid": (cal.get("centroids") or {}).get(model.name)}


def fit_threshold(model: "BlueModel", *, calibration: Mapping[str, Any] | None = None) -> tuple[float, ThresholdBasis]:
    """Fit score (Pearson r) below which a sample is ``poorly_explained``, and what it was measured on.

    The real-cohort floor (5 % quantile of ``fit_r`` over real in-tissue samples) when the calibration holds
    these weights; otherwise the card's ``validation.fit_r_threshold`` (1 % quantile over simulated
    validation mixtures, which real bulk always fits worse).
    """
    floor = for_model(model, calibration=calibration).get("fit_floor")
    if isinstance(floor, (int, float)):
        return float(floor), "real cohorts"
    return model.fit_r_threshold, "simulated mixtures"


def spread_threshold(model: "BlueModel", *,
                     calibration: Mapping[str, Any] | None = None) -> tuple[float | None, ThresholdBasis]:
    """Ensemble-spread ceiling above which a sample's members disagree, and what it was measured on
    (the real-cohort 95 % quantile when calibrated, else the card's 99 % quantile over validation mixtures;
    None for a single network)."""
    ceiling = for_model(model, calibration=calibration).get("spread_ceiling")
    if isinstance(ceiling, (int, float)):
        return float(ceiling), "real cohorts"
    limit = ((model.card or {}).get("intervals") or {}).get("spread_threshold")
    return (float(limit) if isinstance(limit, (int, float)) else None), "simulated mixtures"
