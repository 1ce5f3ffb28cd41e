"""Gene selection: the network's input genes (cell-type markers) and output genes (markers + variable genes).

Markers follow the BLUE paper: the top differentially expressed genes of each cell type against all
other cells, scored on log1p(CP10k) per cell with a Welch t-like statistic
``(mean_in - mean_out) / sqrt(var_in / n_in + var_out / n_out)``; only genes higher in the cell
type count as its markers.

Platform-robust selection (the defaults): genes whose single-cell measurement differs most from bulk
RNA-seq are excluded from markers -- ribosomal (RPL/RPS, MRPL/MRPS), mitochondrial (MT-) and HLA genes
(:data:`EXCLUDE_PATTERN`) -- and a marker must be at least ``min_fold_change`` times higher in its cell
type than in the other cells (on CP10k, from the log1p means). Select on training cells only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .config import EXCLUDE_PATTERN, MIN_FOLD_CHANGE
from ..exceptions import BlueInputError
from .reference_cells import check_reference, cell_types_of

__all__ = ["marker_scores", "select_input_genes", "select_output_genes", "excluded_genes", "EXCLUDE_PATTERN",
           "MIN_FOLD_CHANGE"]

logger = logging.getLogger(__name__)



def excluded_genes(genes: Sequence[str], pattern: str | None = EXCLUDE_PATTERN) -> np.ndarray:
    """``(G,)`` bool: genes matching ``pattern`` (None: none excluded).

    Returns
    -------
    numpy.ndarray
        ``(G,)`` bool, True for an excluded gene.
    """
    if not pattern:
        return np.zeros(len(genes), dtype=bool)
    regex = re.compile(pattern)
    return np.fromiter((regex.match(str(g)) is not None for g in genes), dtype=bool, count=len(genes))


def _log_norm(X: sp.csr_matrix) -> sp.csr_matrix:
    """log1p of counts per 10,000 per cell (sparse, float32)."""
    library = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(1e4, library, out=np.zeros_like(library, dtype=np.float64), where=library > 0)
    Y = sp.diags(scale.astype(np.float32)) @ X
    Y = sp.csr_matrix(Y, dtype=np.float32)
    Y.data = np.log1p(Y.data)
    return Y


def _mean_var(Y: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    n = Y.shape[0]
    mean = np.asarray(Y.mean(axis=0)).ravel().astype(np.float64)
    sq = np.asarray(Y.multiply(Y).mean(axis=0)).ravel().astype(np.float64)
    var = np.maximum(sq - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, var


def marker_scores(reference: ad.AnnData, *, min_fold_change: float = 1.0) -> pd.DataFrame:
    """One-vs-rest marker score of every gene for every cell type.

    Parameters
    ----------
    reference
        Cells x genes AnnData, raw counts, ``obs['cell_type']``.
    min_fold_change
        Genes whose mean log1p(CP10k) in the type exceeds the rest by less than ``log(min_fold_change)``
        get score 0 for that type (not a marker).

    Returns
    -------
    DataFrame
        ``(n_genes, n_cell_types)`` Welch t-like scores on log1p(CP10k); positive = higher in the type.
    """
    X = check_reference(reference)
    Y = _log_norm(X)
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    types = cell_types_of(reference)
    n_all = Y.shape[0]
    mean_all, var_all = _mean_var(Y)
    sum_all = mean_all * n_all
    sq_all = (var_all * max(n_all - 1, 1) + n_all * mean_all**2)
    scores = {}
    for cell_type in types:
        inside = labels == cell_type
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        mean_in, var_in = _mean_var(Y[inside])
        if n_out == 0:
            scores[cell_type] = np.zeros(Y.shape[1])
            continue
        sum_out = sum_all - mean_in * n_in
        sq_in = var_in * max(n_in - 1, 1) + n_in * mean_in**2
        mean_out = sum_out / n_out
        var_out = np.maximum((sq_all - sq_in) / n_out - mean_out**2, 0.0) * n_out / max(n_out - 1, 1)
        se = np.sqrt(var_in / n_in + var_out / n_out + 1e-6)
        score = (mean_in - mean_out) / se
        if min_fold_change > 1.0:
            score = np.where(mean_in - mean_out >= np.log(min_fold_change), score, 0.0)
        scores[cell_type] = score
    return pd.DataFrame(scores, index=pd.Index([str(g) for g in reference.var_names]))


def _panel_mask(reference: ad.AnnData, panel: Sequence[str] | None, what: str) -> np.ndarray:
    genes = pd.Index([str(g) for g in reference.var_names])
    if panel is None:
        return np.ones(genes.size, dtype=bool)
    mask = genes.isin(pd.Index([str(g) for g in panel]))
    if mask.sum() == 0:
        raise BlueInputError(
            f"none of the {len(panel):,} {what} panel genes are in the reference genes; check that both use "
            "HGNC symbols (harmonise them with read_bulk / read_reference)."
        )
    return mask


def _expressed(reference: ad.AnnData, min_cells: int) -> np.ndarray:
    X = reference.X
    X = X.tocsc() if sp.issparse(X) else sp.csc_matrix(X)
    return np.diff(X.indptr) >= min_cells


def select_input_genes(
    reference: ad.AnnData,
    *,
    n_per_cell_type: int = 100,
    panel: Sequence[str] | None = None,
    min_cells: int = 3,
    exclude: str | None = EXCLUDE_PATTERN,
    min_fold_change: float = MIN_FOLD_CHANGE,
) -> list[str]:
    """Select the network's input genes: the top markers of each cell type.

    Parameters
    ----------
    reference
        Cells x genes AnnData (raw counts, ``obs['cell_type']``).
    n_per_cell_type
        Markers kept per cell type (union over types; genes with a positive score only).
    panel
        Restrict to these genes (e.g. the genes a bulk cohort measures: a 714-gene AML panel).
    min_cells
        A gene must be detected in at least this many cells.
    exclude
        Regular expression of genes never selected (default :data:`EXCLUDE_PATTERN`; None keeps all).
    min_fold_change
        Minimum fold change of a marker vs the other cells (default :data:`MIN_FOLD_CHANGE`).

    Returns
    -------
    list of str
        Selected genes, in reference order.
    """
    if n_per_cell_type < 1:
        raise BlueInputError(f"n_per_cell_type must be >= 1, got {n_per_cell_type}.")
    keep = (_panel_mask(reference, panel, "input") & _expressed(reference, min_cells)
            & ~excluded_genes(reference.var_names, exclude))
    scores = marker_scores(reference, min_fold_change=min_fold_change)
    scores = scores[keep]
    chosen: set[str] = set()
    for cell_type in scores.columns:
        col = scores[cell_type]
        col = col[col > 0].sort_values(ascending=False)
        chosen.update(col.index[:n_per_cell_type])
    genes = [g for g in scores.index if g in chosen]
    if len(genes) < 10:
        raise BlueInputError(
            f"only {len(genes)} marker genes found; the reference (or panel) is too small or the cell types "
            "are not distinguishable. Use a reference with more genes or a larger panel."
        )
    logger.info("selected %d input genes (%d per cell type, %d types)", len(genes), n_per_cell_type, scores.shape[1])
    return genes


def select_output_genes(
    reference: ad.AnnData,
    *,
    n_per_cell_type: int = 200,
    n_variable: int = 1000,
    max_genes: int = 3000,
    panel: Sequence[str] | None = None,
    include: Sequence[str] = (),
    min_cells: int = 3,
    exclude: str | None = EXCLUDE_PATTERN,
    min_fold_change: float = MIN_FOLD_CHANGE,
) -> list[str]:
    """Select the genes whose per-cell-type expression (GEP) the network predicts.

    Union of the top ``n_per_cell_type`` markers per cell type, the ``n_variable`` most variable genes
    (variance of log1p(CP10k) over cells) and ``include``; capped at ``max_genes`` (markers first).

    Parameters
    ----------
    reference
        Cells x genes AnnData (raw counts, ``obs['cell_type']``).
    n_per_cell_type
        Markers per cell type.
    n_variable
        Highly variable genes added.
    max_genes
        Upper bound on the number of output genes (keeps the model file small).
    panel
        Restrict to these genes.
    include
        Genes always included when present in the reference (e.g. the input genes).
    min_cells
        A gene must be detected in at least this many cells.
    exclude
        Regular expression of genes never selected as markers or variable genes (``include`` still wins).
    min_fold_change
        Minimum fold change of a marker vs the other cells.

    Returns
    -------
    list of str
        Selected genes, in reference order.
    """
    keep = (_panel_mask(reference, panel, "output") & _expressed(reference, min_cells)
            & ~excluded_genes(reference.var_names, exclude))
    genes = pd.Index([str(g) for g in reference.var_names])
    scores = marker_scores(reference, min_fold_change=min_fold_change)[keep]
    ranked: list[str] = [g for g in include if g in set(genes)]
    for cell_type in scores.columns:
        col = scores[cell_type]
        ranked.extend(col[col > 0].sort_values(ascending=False).index[:n_per_cell_type])
    _, var = _mean_var(_log_norm(check_reference(reference)))
    var = pd.Series(var, index=genes)[keep].sort_values(ascending=False)
    ranked.extend(var.index[:n_variable])
    chosen = list(dict.fromkeys(ranked))[:max_genes]
    chosen_set = set(chosen)
    out = [g for g in genes if g in chosen_set]
    logger.info("selected %d output genes", len(out))
    return out
