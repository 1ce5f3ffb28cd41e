"""How much of each cell type's predicted expression follows its own fraction ("leakage", issue 25).

A profile that rises and falls with the type's fraction across samples says "this sample has more B cells",
not "these B cells express more": a biologist reading the GEP heatmap would take the first for the second.
:func:`fraction_dependence` measures it the same way everywhere (the app's Cell-type expression and
Enrichment pages, ``bench/gep_shifts.py`` on pseudo-bulk against the truth and on real cohorts): per cell type,
over its marker genes (the genes most specific to it in the mean predicted profiles,
:func:`~blue_core.analysis.stats.specific_genes`), the Pearson r across samples between ``log1p`` of the
type's profile and its fraction; the median r, and the median r^2 as "the share of the per-sample variation
that follows the fraction". Samples where the type is below ``min_fraction`` are left out (no profile to speak of).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError
from .stats import specific_genes

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.result import Deconvolution

__all__ = ["fraction_dependence", "result_dependence", "marker_sets", "dependence_words", "MIN_SAMPLES", "MIN_FRACTION"]

#: Fewest samples (with the type present) for a correlation to be reported.
MIN_SAMPLES = 8
#: Fraction below which a type counts as absent from a sample (no profile to speak of).
MIN_FRACTION = 0.02


def marker_sets(profiles: pd.DataFrame, *, n: int = 20) -> dict[str, list[str]]:
    """Each type's ``n`` most specific genes in a types x genes table of mean profiles (CPM).

    Returns
    -------
    dict
        Cell type -> gene symbols (:func:`~blue_core.analysis.stats.specific_genes`).
    """
    return {str(t): specific_genes(profiles, str(t), n=n) for t in profiles.index}


def _r_columns(values: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``values`` (n, G) with ``fraction`` (n,); NaN for a constant column."""
    a = values - values.mean(axis=0)
    b = fraction - fraction.mean()
    denominator = np.sqrt((a**2).sum(axis=0) * (b**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b[:, None]).sum(axis=0) / denominator, np.nan)


def fraction_dependence(
    expression: np.ndarray,
    proportions: pd.DataFrame,
    *,
    genes: Sequence[str],
    markers: Mapping[str, Sequence[str]],
    min_fraction: float = MIN_FRACTION,
) -> pd.DataFrame:
    """Per cell type: how strongly its profile follows its fraction across samples.

    Parameters
    ----------
    expression
        ``(n_samples, K, n_genes)`` profiles, linear CPM (predicted, or the truth of a pseudo-bulk).
    proportions
        ``(n_samples, K)`` the fractions the profiles are compared with (the predicted ones for a prediction,
        the true ones for the truth); columns are the cell types, in ``expression``'s order.
    genes
        ``n_genes`` gene symbols of ``expression``'s last axis.
    markers
        Cell type -> the genes scored (:func:`marker_sets`); genes not in ``genes`` are skipped.
    min_fraction
        Samples where the type's fraction is below this are left out.

    Returns
    -------
    pandas.DataFrame
        Index = cell type; ``n_samples``, ``n_genes``, ``median_r`` (median over the markers of Pearson r between
        log1p(profile) and the fraction), ``share_following`` (median r^2, 0-1). NaN where fewer than
        :data:`MIN_SAMPLES` samples have the type.
    """
    expression = np.asarray(expression)
    if expression.ndim != 3 or expression.shape[1] != proportions.shape[1] or expression.shape[2] != len(genes):
        raise BlueInputError(f"expression must be (samples, {proportions.shape[1]} cell types, {len(genes)} genes); "
                             f"got {expression.shape}.")
    position = {g: i for i, g in enumerate(genes)}
    rows = {}
    for k, cell_type in enumerate(map(str, proportions.columns)):
        cols = [position[g] for g in markers.get(cell_type, ()) if g in position]
        fraction = proportions.iloc[:, k].to_numpy(dtype=np.float64)
        keep = fraction >= min_fraction
        row = {"n_samples": int(keep.sum()), "n_genes": len(cols), "median_r": np.nan, "share_following": np.nan}
        if keep.sum() >= MIN_SAMPLES and cols:
            r = _r_columns(np.log1p(expression[keep][:, k, cols].astype(np.float64)), fraction[keep])
            if np.isfinite(r).any():
                row.update(median_r=float(np.nanmedian(r)), share_following=float(np.nanmedian(r**2)))
        rows[cell_type] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("cell_type")


def result_dependence(result: Deconvolution, *, reference: pd.DataFrame | None = None, n_markers: int = 20
                      ) -> pd.DataFrame:
    """:func:`fraction_dependence` of a deconvolution's own GEPs and fractions, with a ``words`` column
    (:func:`dependence_words`).

    Parameters
    ----------
    result
        The deconvolution.
    reference
        Types x genes mean profiles (CPM) the markers are taken from (the model's reference profiles,
        ``model.reference_profiles.T``); default the result's mean predicted profiles. Genes the input did not
        measure are never scored (their profiles are inferred).
    n_markers
        Markers per type.

    Returns
    -------
    pandas.DataFrame
        :func:`fraction_dependence`'s table plus ``words``.
    """
    from .tables import mean_profiles, unmeasured_genes

    profiles = mean_profiles(result) if reference is None else reference
    inferred = unmeasured_genes(result)
    profiles = profiles.loc[[str(t) for t in result.cell_types if str(t) in profiles.index],
                            [g for g in profiles.columns if g not in inferred and g in set(map(str, result.genes))]]
    table = fraction_dependence(result.expression, result.proportions, genes=[str(g) for g in result.genes],
                                markers=marker_sets(profiles, n=n_markers))
    table["words"] = [dependence_words(t, row) for t, row in table.iterrows()]
    return table


def dependence_words(cell_type: str, row: pd.Series) -> str:
    """One plain sentence for a row of :func:`fraction_dependence`.

    Returns
    -------
    str
        What share of the type's marker variation follows its fraction, and how to read it.
    """
    share = row.get("share_following")
    if not np.isfinite(share):
        return (f"{cell_type}: too few samples with this type ({int(row.get('n_samples', 0))}; "
                f"{MIN_SAMPLES} needed) to say how its profile relates to its fraction.")
    percent = f"{100 * share:.0f}%"
    if share >= 0.5:
        return (f"{cell_type}: {percent} of its marker genes' variation between samples follows the {cell_type} "
                "fraction. Differences between samples here mostly say how many of these cells there are, not what "
                "state they are in.")
    if share >= 0.2:
        return (f"{cell_type}: {percent} of its marker genes' variation between samples follows the {cell_type} "
                "fraction; read differences between samples with that in mind.")
    return (f"{cell_type}: {percent} of its marker genes' variation between samples follows the {cell_type} "
            "fraction; the rest is the profile's own.")
