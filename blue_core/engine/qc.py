"""Reference QC: does a single-cell reference carry each cell type's canonical marker genes?

A reference subset without a type's lineage genes (e.g. a PBMC atlas subset without CD3D, IL7R or
LEF1 for "CD4 T") makes marker selection fall back on ribosomal or other platform-sensitive genes, and
the model then calls that type poorly on real bulk. The shipped table
``blue_core/data/canonical_markers.csv`` names, for cell-type label patterns, a few canonical markers;
:func:`check_reference_markers` reports the types whose canonical markers are missing from the
reference or not higher in that type than in the other cells. ``read_reference`` warns with it, the
app's Train page shows the warnings and ``train_model`` records the report in the model card.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..io.resources import package_data

__all__ = ["canonical_markers", "check_reference_markers", "marker_qc_messages"]

logger = logging.getLogger(__name__)

_TABLE = package_data("canonical_markers.csv")


@functools.lru_cache(maxsize=1)
def canonical_markers() -> pd.DataFrame:
    """The shipped table: ``pattern`` (regex on the lower-case label), ``cell_type_family``, ``markers``
    (list of symbols), ``note``."""
    table = pd.read_csv(_TABLE, keep_default_na=False)
    table["markers"] = table["markers"].str.split(";")
    return table


def _family(label: str) -> pd.Series | None:
    lower = label.strip().lower()
    for _, row in canonical_markers().iterrows():
        if re.search(row["pattern"], lower):
            return row
    return None


def check_reference_markers(reference: ad.AnnData, *, min_fold: float = 1.5, min_found: int = 1) -> pd.DataFrame:
    """Which canonical markers each cell type of a reference shows.

    Parameters
    ----------
    reference
        Cells x genes, raw counts, ``obs['cell_type']``.
    min_fold
        A marker "shows" when its mean CP10k in the type is at least ``min_fold`` times that of the
        other cells.
    min_found
        A type passes when at least this many of its canonical markers show.

    Returns
    -------
    DataFrame
        One row per cell type with a known family: ``cell_type``, ``family``, ``markers`` (canonical),
        ``missing`` (not measured in the reference), ``flat`` (measured, not higher in the type),
        ``shown`` (higher in the type), ``ok`` (bool). Types without a family are not listed.
    """
    X = reference.X if sp.issparse(reference.X) else sp.csr_matrix(reference.X)
    X = sp.csr_matrix(X, dtype=np.float64)
    library = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(1e4, library, out=np.zeros_like(library), where=library > 0)
    cp10k = sp.csc_matrix(sp.diags(scale) @ X)
    genes = pd.Index([str(g) for g in reference.var_names])
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    rows: list[dict[str, Any]] = []
    for cell_type in sorted(pd.unique(labels)):
        family = _family(cell_type)
        if family is None:
            continue
        markers = list(family["markers"])
        pos = genes.get_indexer(markers)
        missing = [m for m, p in zip(markers, pos) if p < 0]
        inside = labels == cell_type
        shown, flat = [], []
        for m, p in zip(markers, pos):
            if p < 0:
                continue
            col = cp10k[:, p].toarray().ravel()
            mean_in = col[inside].mean()
            mean_out = col[~inside].mean() if (~inside).any() else 0.0
            (shown if mean_in > 0 and mean_in >= min_fold * mean_out else flat).append(m)
        rows.append(dict(cell_type=cell_type, family=family["cell_type_family"], markers=markers, missing=missing,
                         flat=flat, shown=shown, ok=len(shown) >= min_found))
    return pd.DataFrame(rows, columns=["cell_type", "family", "markers", "missing", "flat", "shown", "ok"])


def marker_qc_messages(report: pd.DataFrame, *, name: str = "the reference") -> list[str]:
    """One warning text per cell type of ``report`` that shows none, or fewer than half, of its canonical
    markers (missing from the reference or not higher in that type).

    Returns
    -------
    list of str
        One warning text per cell type short of its markers (empty when all are fine).
    """
    out = []
    for row in report.itertuples(index=False):
        if row.ok and len(row.shown) >= len(row.markers) / 2:
            continue  # at least half of the canonical markers show: nothing to warn about
        parts = []
        if row.missing:
            parts.append(f"not measured: {', '.join(row.missing)}")
        if row.flat:
            parts.append(f"not higher in this type: {', '.join(row.flat)}")
        verdict = "none of its canonical markers shows" if not row.ok else "most of its canonical markers are absent"
        out.append(
            f"{name}: cell type {row.cell_type!r} ({row.family}): {verdict} ({'; '.join(parts)}). Marker selection "
            "may fall back on less specific genes and this type may be called poorly on real bulk; use a reference "
            "that measures these genes, or check the labels."
        )
    return out
