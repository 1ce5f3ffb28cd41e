"""Real-cohort calibration of the fit and spread signals: one home for which threshold applies to a model.

``bench/trust.py`` writes ``data/trust_calibration.json`` from real in-tissue bulk cohorts (every number is
traceable to ``bench/results/trust.md``). Its model-specific parts (fit floor, ensemble-spread ceiling,
compartment centroid) belong to the exact weights they were measured with: they apply to a model only when
its ``card["weights_sha256"]`` equals the one recorded in the calibration. Any other model (a user-trained
one, or a shipped one rebuilt without re-running the bench) falls back to its card's thresholds, which come
from simulated mixtures, and says so. The ensembles' 90 % proportion intervals (:func:`proportion_intervals`)
combine the members' spread with the calibrated errors recorded in the card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..io.resources import package_data

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["load_calibration", "for_model", "fit_threshold", "spread_threshold", "FitFlags", "flag_fit", "FIT_FLOOR_MARGIN",
           "SPREAD_CEILING_FACTOR", "REAL_FLOOR_WORDS", "REAL_SPREAD_WORDS", "FIT_LIMIT_WORDS", "SPREAD_LIMIT_WORDS",
           "proportion_intervals", "Z90"]

#: A model's real-cohort fit floor = the lowest ``fit_r`` of its real in-tissue calibration samples minus this
#: margin (issue 22.3): cohorts of one tissue differ in median fit by up to ~0.12 (protocol, depth, platform), so a
#: quantile over some cohorts flags whole cohorts of the right tissue; the floor is there to catch broken input
#: (a file whose labels do not match its values fits at r ~0.05), while the tissue checks name a wrong tissue.
FIT_FLOOR_MARGIN = 0.10
#: A model's real-cohort ensemble-spread ceiling = this factor times the largest spread over the same samples.
SPREAD_CEILING_FACTOR = 1.5
#: How the app, CLI and README name the two real-cohort limits (one wording, here).
REAL_FLOOR_WORDS = f"the lowest fit of real samples of the model's tissue, less {FIT_FLOOR_MARGIN:.2f}"
REAL_SPREAD_WORDS = f"{SPREAD_CEILING_FACTOR:g} times the largest disagreement on real samples of the model's tissue"
#: How a fit or spread limit is named, by what it was measured on (deconvolve's warning, the verdict's reasons).
FIT_LIMIT_WORDS = {"real cohorts": REAL_FLOOR_WORDS,
                   "simulated mixtures": "the model's 1% quantile on simulated validation mixtures"}
SPREAD_LIMIT_WORDS = {"real cohorts": REAL_SPREAD_WORDS,
                      "simulated mixtures": "the 99% quantile on simulated validation mixtures"}

_CALIBRATION = package_data("trust_calibration.json")

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

    The real-cohort floor (``REAL_FLOOR_WORDS``) when the calibration holds
    these weights; otherwise the card's ``validation.fit_r_threshold`` (1 % quantile over simulated
    validation mixtures, which real bulk always fits worse).

    Returns
    -------
    tuple of (float, str)
        The fit limit (Pearson r) and its basis, ``"real cohorts"`` or ``"simulated mixtures"``.
    """
    floor = for_model(model, calibration=calibration).get("fit_floor")
    if isinstance(floor, (int, float)):
        return float(floor), "real cohorts"
    return model.fit_r_threshold, "simulated mixtures"


def spread_threshold(model: "BlueModel", *,
                     calibration: Mapping[str, Any] | None = None) -> tuple[float | None, ThresholdBasis]:
    """Ensemble-spread ceiling above which a sample's members disagree, and what it was measured on
    (``REAL_SPREAD_WORDS`` when calibrated, else the card's 99 % quantile over validation mixtures;
    None for a single network).

    Returns
    -------
    tuple of (float or None, str)
        The spread limit (None for a single network) and its basis.
    """
    ceiling = for_model(model, calibration=calibration).get("spread_ceiling")
    if isinstance(ceiling, (int, float)):
        return float(ceiling), "real cohorts"
    limit = ((model.card or {}).get("intervals") or {}).get("spread_threshold")
    return (float(limit) if isinstance(limit, (int, float)) else None), "simulated mixtures"


@dataclass(frozen=True)
class FitFlags:
    """The one flag rule's result (:func:`flag_fit`) for ``n`` samples.

    Attributes
    ----------
    poorly_explained
        ``(n,)`` bool: ``fit_r`` below ``fit_threshold`` (NaN counts as below).
    members_disagree
        ``(n,)`` bool, or None for a single network / no spread given.
    fit_threshold, fit_basis
        The fit limit and what it was measured on ("real cohorts" or "simulated mixtures").
    spread_threshold, spread_basis
        The same for the ensemble spread (None without one).
    """

    poorly_explained: np.ndarray
    members_disagree: np.ndarray | None
    fit_threshold: float
    fit_basis: ThresholdBasis
    spread_threshold: float | None
    spread_basis: ThresholdBasis


def flag_fit(model: "BlueModel", fit_r: np.ndarray, *, member_spread: np.ndarray | None = None,
             calibration: Mapping[str, Any] | None = None) -> FitFlags:
    """Flag samples the model reconstructs poorly or whose ensemble members disagree: the one rule that
    :func:`~blue_core.engine.inference.deconvolve` (its ``fit`` table) and :func:`~blue_core.analysis.trust.assess` (its
    ``caution`` verdict) both apply (issue 23.2).

    Parameters
    ----------
    model
        The model used.
    fit_r
        ``(n,)`` per-sample fit scores.
    member_spread
        ``(n,)`` largest member SD per sample (ensembles), or None.
    calibration
        :func:`load_calibration` output (default: the shipped one).

    Returns
    -------
    FitFlags
        The per-sample flags and the limits they used, with their bases.
    """
    cal = calibration if calibration is not None else load_calibration()  # read once for both limits
    threshold, basis = fit_threshold(model, calibration=cal)
    poorly = ~(np.asarray(fit_r, dtype=float) >= threshold)
    limit, spread_basis = spread_threshold(model, calibration=cal)
    disagree = None
    if member_spread is not None:
        spread = np.asarray(member_spread, dtype=float)
        disagree = spread > float(limit) if limit is not None else np.zeros(spread.shape, dtype=bool)
    return FitFlags(poorly, disagree, threshold, basis, limit, spread_basis)


#: Two-sided 90 % normal quantile used for the intervals.
Z90 = 1.6448536269514722


def proportion_intervals(
    member_props: np.ndarray, *, calibration: dict[str, Any] | None, cell_types: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """90 % intervals of an ensemble's proportions.

    The half-width combines the members' disagreement with the error the ensemble makes on validation
    pseudo-bulk (cells it never trained on) and, where measured, on real cohorts:
    ``z * sqrt(sd_members**2 + sigma_k**2 + real_k**2)``, with ``sigma_k`` the ensemble's validation RMSE for
    cell type ``k`` (``card["intervals"]["sigma_by_type"]``, written by
    :func:`blue_core.engine.ensemble.build_ensemble`), ``real_k`` its RMSE against measured composition of real cohorts
    (``card["intervals"]["real_cohorts"]["sigma_by_type"]``, :func:`blue_core.engine.ensemble.real_cohort_sigma`;
    issue 22.4: simulated error alone misses the systematic error on real bulk) and ``z = 1.645`` (two-sided
    90 %); clipped to [0, 1]. Without a calibration only the members' spread is used.

    Parameters
    ----------
    member_props
        ``(M, n, K)`` per-member proportions.
    calibration
        ``card["intervals"]`` or None.
    cell_types
        ``K`` names (keys of ``sigma_by_type``).

    Returns
    -------
    tuple
        ``lo, hi, spread``, each ``(n, K)`` float32; ``lo <= mean <= hi``.
    """
    mean = member_props.mean(axis=0)
    spread = member_props.std(axis=0, ddof=1) if member_props.shape[0] > 1 else np.zeros_like(mean)
    sigma = np.zeros(len(cell_types), dtype=np.float32)
    z = Z90
    if calibration:
        z = float(calibration.get("z", Z90))
        by_type = calibration.get("sigma_by_type") or {}
        sigma = np.array([float(by_type.get(t, 0.0)) for t in cell_types], dtype=np.float32)
        real = (calibration.get("real_cohorts") or {}).get("sigma_by_type") or {}
        sigma = np.sqrt(sigma**2 + np.array([float(real.get(t, 0.0)) for t in cell_types], dtype=np.float32) ** 2)
    half = z * np.sqrt(spread**2 + sigma[None, :] ** 2)
    return (np.clip(mean - half, 0.0, 1.0).astype(np.float32), np.clip(mean + half, 0.0, 1.0).astype(np.float32),
            spread.astype(np.float32))
