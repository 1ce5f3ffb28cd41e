"""Cross-cohort validation of subtypes: assign another cohort's samples to fitted subtypes and ask whether their
survival separates there too (one verdict per cohort, Holm-adjusted across cohorts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError
from .subtypes import SubtypeClustering, shared_genes

__all__ = ["validation_genes", "CohortValidation", "validate_subtypes", "validate_across"]


# ------------------------------------------------------------------------------------- cross-cohort validation
def validation_genes(
    discovery: Any, other: Any, *, features: Literal["gep", "proportion"] = "gep",
    cell_types: Sequence[str] | None = None,
) -> list[str] | None:
    """The one rule for a discovery / validation pair of deconvolutions, checked before clustering.

    Subtypes found in ``discovery`` can be assigned in ``other`` only on features both have: the cell
    types used must exist in ``other``, and GEP features are restricted to the output genes both share.

    Parameters
    ----------
    discovery, other
        ``Deconvolution`` objects of the discovery and the validation cohort.
    features
        ``"gep"`` or ``"proportion"`` (as :class:`SubtypeClustering`).
    cell_types
        Cell types the clustering uses (default: all of ``discovery``).

    Returns
    -------
    list of str or None
        The shared output genes to pass as ``SubtypeClustering(genes=...)`` for GEP features; None for
        proportion features.

    Raises
    ------
    BlueInputError
        No shared gene, or a cell type missing in ``other``; the message says how to fix it.
    """
    missing = [c for c in (cell_types or discovery.cell_types) if c not in other.cell_types]
    if missing:
        raise BlueInputError(
            f"Cell type(s) {missing} are not in the validation deconvolution ({list(other.cell_types)}); use the "
            "same model for both cohorts or pick shared cell types."
        )
    if features != "gep":
        return None
    genes = shared_genes(discovery, other)
    if not genes:
        raise BlueInputError("The two deconvolutions share no output genes: deconvolve both cohorts with the same "
                             "model (or models with shared output genes).")
    return genes


@dataclass(frozen=True)
class CohortValidation:
    """Subtypes of one cohort assigned in another, and survival compared there.

    Attributes
    ----------
    title
        The validation cohort's name, for messages.
    labels
        Validation sample -> subtype (nearest centroid on the discovery features).
    survival
        The fitted :class:`~blue_core.analysis.survival.SurvivalAnalysis` of ``labels`` in that cohort.
    n_features
        Discovery features found in the validation cohort and used for the assignment.
    alpha
        Significance level of the log-rank test.
    discovery_best
        The discovery cohort's best-prognosis subtype (:func:`~blue_core.analysis.survival.best_prognosis_group`); when
        given, a replication also needs it to be the best subtype here (the same direction, not only a split).
    p_adjusted
        Holm-adjusted log-rank p when several cohorts were validated together (:func:`validate_across`).
    """

    title: str
    labels: pd.Series
    survival: Any
    n_features: int
    alpha: float = 0.05
    discovery_best: str | None = None
    p_adjusted: float | None = None

    @property
    def best_group(self) -> str | None:
        """The best-prognosis subtype in this cohort (None when it cannot be told)."""
        from .survival import best_prognosis_group

        try:
            return best_prognosis_group(self.survival)
        except (BlueInputError, AttributeError):  # an unfitted analysis, or a stand-in without survival curves
            return None

    @property
    def p_value(self) -> float:
        """The p used for the verdict: the Holm-adjusted one when cohorts were validated together, else raw."""
        return float(self.p_adjusted if self.p_adjusted is not None else self.survival.logrank_p_)

    @property
    def replicated(self) -> bool:
        """Whether the split replicates: log-rank p (Holm-adjusted over the cohorts validated together) below
        ``alpha`` and, when ``discovery_best`` is known, the same best-prognosis subtype."""
        p = self.p_value
        same = self.discovery_best is None or self.best_group == self.discovery_best
        return bool(np.isfinite(p) and p < self.alpha and same)

    @property
    def verdict(self) -> str:
        """The result in plain words, with the log-rank p."""
        p = float(self.survival.logrank_p_)
        p_text = f"log-rank p = {p:.3g}" + (f", Holm-adjusted {self.p_adjusted:.3g}" if self.p_adjusted is not None
                                            else "")
        separates = np.isfinite(self.p_value) and self.p_value < self.alpha
        if self.replicated:
            same = (f"; {self.discovery_best} has the best survival here too" if self.discovery_best else "")
            return f"The subtypes also separate survival in {self.title} ({p_text}{same}): the split replicates."
        if separates:
            return (f"The subtypes separate survival in {self.title} ({p_text}), but the subtype with the best "
                    f"survival there is {self.best_group}, not {self.discovery_best} as in the discovery cohort: "
                    "the split does not replicate in this cohort.")
        return (f"The subtypes do not separate survival in {self.title} ({p_text}, not below "
                f"{self.alpha:g}): the split does not replicate in this cohort.")


def validate_subtypes(
    clustering: SubtypeClustering, other: Any, *, clinical: pd.DataFrame, time_col: str, event_col: str,
    sample_col: str = "sample", title: str = "the validation cohort", alpha: float = 0.05,
    discovery_best: str | None = None,
) -> CohortValidation:
    """Assign another cohort's samples to fitted subtypes and compare their survival there.

    The app's "Validate on a second cohort" and ``blue subtypes --validate`` both call this.

    Parameters
    ----------
    clustering
        A fitted :class:`SubtypeClustering` of the discovery cohort.
    other
        ``Deconvolution`` of the validation cohort (same model, see :func:`validation_genes`).
    clinical
        The validation cohort's clinical table (sample IDs as index or in ``sample_col``).
    time_col, event_col
        Survival time and event columns; the time unit is read from the column name
        (:func:`~blue_core.analysis.clinical.guess_time_unit`).
    sample_col
        Sample-ID column of ``clinical`` (else its index).
    title
        Name of the validation cohort in the verdict.
    alpha
        Significance level of the log-rank test.
    discovery_best
        The discovery cohort's best-prognosis subtype; when given, a replication also needs the same best subtype.

    Returns
    -------
    CohortValidation
        Labels, fitted survival, number of features used, and the verdict.
    """
    from .clinical import guess_time_unit
    from .survival import SurvivalAnalysis

    labels = clustering.predict(other)
    survival = SurvivalAnalysis(time_col, event_col, sample_col=sample_col,
                                time_unit=guess_time_unit(time_col)).fit(labels, clinical)
    return CohortValidation(title=title, labels=labels, survival=survival,
                            n_features=int(labels.attrs.get("n_features", 0)), alpha=alpha,
                            discovery_best=discovery_best)


def validate_across(validations: Sequence[CohortValidation]) -> list[CohortValidation]:
    """Several validation cohorts tested together: the same validations with Holm-adjusted log-rank p
    (family = the cohorts given), so "replicates in at least one of three" is not three chances at 5 %.

    Parameters
    ----------
    validations
        :func:`validate_subtypes` results of one discovery clustering in different cohorts.

    Returns
    -------
    list of CohortValidation
        Copies with ``p_adjusted`` set, in the given order.
    """
    from dataclasses import replace

    from .stats import holm

    adjusted = holm(np.array([float(v.survival.logrank_p_) for v in validations], dtype=float),
                    n_tests=len(validations))
    return [replace(v, p_adjusted=float(p) if np.isfinite(p) else 1.0) for v, p in zip(validations, adjusted)]
