"""Agreement metrics used by validation and benchmarks.

All functions take array-likes of equal shape and flatten them; NaNs are dropped pairwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["ccc", "pearson", "rmse", "per_column", "accuracy_table"]


def _paired(truth: npt.ArrayLike, estimate: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    if t.shape != e.shape:
        raise ValueError(f"truth and estimate differ in size: {t.size} vs {e.size}")
    keep = np.isfinite(t) & np.isfinite(e)
    return t[keep], e[keep]


def ccc(truth: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Lin's concordance correlation coefficient over all paired values.

    ``2 cov(t, e) / (var t + var e + (mean t - mean e)^2)``, population (1/n) moments.
    Returns NaN for fewer than two pairs or zero total variance.

    Returns
    -------
    float
        Lin's CCC in [-1, 1] (NaN without pairs).
    """
    t, e = _paired(truth, estimate)
    if t.size < 2:
        return float("nan")
    denominator = t.var() + e.var() + (t.mean() - e.mean()) ** 2
    if denominator == 0:
        return float("nan")
    return float(2.0 * np.mean((t - t.mean()) * (e - e.mean())) / denominator)


def pearson(truth: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Pearson correlation over all paired values (NaN when either side is constant).

    Returns
    -------
    float
        Pearson r in [-1, 1] (NaN when either side is constant).
    """
    t, e = _paired(truth, estimate)
    if t.size < 2 or t.std() == 0 or e.std() == 0:
        return float("nan")
    return float(np.corrcoef(t, e)[0, 1])


def rmse(truth: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Root mean squared error over all paired values.

    Returns
    -------
    float
        RMSE, in the unit of the values.
    """
    t, e = _paired(truth, estimate)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((t - e) ** 2)))


def per_column(truth: "pd.DataFrame", estimate: "pd.DataFrame", *,
               metric: Callable[[npt.ArrayLike, npt.ArrayLike], float] = pearson) -> dict[str, float]:
    """Apply ``metric`` to each shared column of two DataFrames (rows aligned by index).

    Returns
    -------
    dict
        Column -> metric value.
    """
    shared_rows = truth.index.intersection(estimate.index)
    shared_cols = [c for c in truth.columns if c in estimate.columns]
    return {c: metric(truth.loc[shared_rows, c], estimate.loc[shared_rows, c]) for c in shared_cols}


def accuracy_table(truth: "pd.DataFrame", estimate: "pd.DataFrame") -> "pd.DataFrame":
    """Agreement of estimated with measured proportions: CCC, Pearson r and RMSE, overall and per type.

    Parameters
    ----------
    truth, estimate
        ``(n_samples, K)`` fractions with the same index and columns (cell types).

    Returns
    -------
    DataFrame
        Index ``all`` (every sample x type pair) then each cell type; columns ``ccc``, ``pearson_r``,
        ``rmse`` (fraction units) and ``n`` (pairs).
    """
    import pandas as pd

    rows = {"all": (truth.to_numpy().ravel(), estimate.to_numpy().ravel())}
    rows.update({str(c): (truth[c].to_numpy(), estimate[c].to_numpy()) for c in truth.columns})
    return pd.DataFrame({name: {"ccc": ccc(t, e), "pearson_r": pearson(t, e), "rmse": rmse(t, e), "n": int(len(t))}
                         for name, (t, e) in rows.items()}).T.astype({"n": int})
