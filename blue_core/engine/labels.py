"""Derived cell labels and label-free cell subsets for references that come without annotation.

Some condition-bearing single-cell data (e.g. Kang et al. 2018: control and interferon-beta stimulated
PBMC) carry no cell-type labels. BLUE can still train its GEP branch on them with labels *derived* by a
documented transfer from a labelled reference; the model card says so. The transfer excludes genes
that the condition itself moves (e.g. the interferon response sets), so that stimulation cannot move a
cell from one type to another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ..exceptions import BlueInputError

__all__ = ["transfer_labels", "split_cells"]

logger = logging.getLogger(__name__)


def _log_cp10k(adata: ad.AnnData, genes: Sequence[str]) -> np.ndarray:
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x = np.asarray(x, dtype=np.float64)
    totals = x.sum(axis=1, keepdims=True)
    x = np.log1p(x / np.where(totals > 0, totals, 1.0) * 1e4)
    return x[:, adata.var_names.get_indexer(list(genes))]


def transfer_labels(
    query: ad.AnnData,
    references: ad.AnnData | Sequence[ad.AnnData],
    *,
    exclude_genes: Sequence[str] = (),
    cell_type_key: str = "cell_type",
    regularization: float = 0.1,
) -> pd.Series:
    """Cell-type labels for an unlabelled query, predicted from labelled references.

    An L2-regularised logistic regression (``C = regularization``) is trained on the references' cells
    (log1p counts per 10,000, on the genes all of them and the query share, minus ``exclude_genes``)
    and predicts each query cell's type. Deterministic (lbfgs, no random state).

    Parameters
    ----------
    query
        Cells x genes AnnData of counts, without labels.
    references
        One or several cells x genes AnnData of counts with ``obs[cell_type_key]``.
    exclude_genes
        Genes left out of the features, e.g. those a stimulation moves.
    cell_type_key
        The references' label column.
    regularization
        Inverse L2 strength ``C`` of the logistic regression.

    Returns
    -------
    pandas.Series
        Predicted label per query cell (index = ``query.obs_names``), categorical. Derived, not measured.
    """
    from sklearn.linear_model import LogisticRegression

    refs = [references] if isinstance(references, ad.AnnData) else list(references)
    if not refs:
        raise BlueInputError("transfer_labels needs at least one labelled reference.")
    for ref in refs:
        if cell_type_key not in ref.obs:
            raise BlueInputError(f"a reference has no obs[{cell_type_key!r}]; pass cell_type_key= the label column.")
    genes = sorted(set(map(str, query.var_names)).intersection(*(set(map(str, r.var_names)) for r in refs))
                   - set(map(str, exclude_genes)))
    if len(genes) < 50:
        raise BlueInputError(f"the query shares only {len(genes)} genes with the references; label transfer needs "
                             "at least 50 (check that both use gene symbols).")
    features = np.vstack([_log_cp10k(r, genes) for r in refs])
    labels = np.concatenate([r.obs[cell_type_key].astype(str).to_numpy() for r in refs])
    clf = LogisticRegression(C=regularization, max_iter=3000).fit(features, labels)
    predicted = pd.Series(pd.Categorical(clf.predict(_log_cp10k(query, genes))), index=query.obs_names)
    logger.info("transferred labels to %d cells on %d genes: %s", query.n_obs, len(genes),
                dict(predicted.value_counts()))
    return predicted


def split_cells(groups: Sequence[str] | pd.Series, *, fraction: float, seed: int = 0) -> np.ndarray:
    """A label-free, reproducible subset of cells: ``fraction`` of the cells of each group.

    Parameters
    ----------
    groups
        One value per cell (e.g. the condition); the subset takes the same fraction of every group.
    fraction
        Share of each group's cells in the subset, in (0, 1).
    seed
        Random seed of the permutation.

    Returns
    -------
    numpy.ndarray
        Boolean mask, shape (n_cells,): True = in the subset. Its complement is the held-out rest.
    """
    if not 0 < fraction < 1:
        raise BlueInputError(f"fraction must be in (0, 1), got {fraction}.")
    values = np.asarray(pd.Series(groups).astype(str))
    rng = np.random.default_rng(seed)
    mask = np.zeros(values.size, dtype=bool)
    for group in sorted(set(values)):
        cells = np.flatnonzero(values == group)
        chosen = rng.permutation(cells)[: int(round(fraction * cells.size))]
        mask[chosen] = True
    return mask
