"""Group-comparison statistics for the app and the API.

One function, :func:`compare_groups`: for every column of a samples x features table
(cell-type proportions, or the genes of one cell type's GEP), test whether the values
differ between groups of samples (e.g. type 2 diabetes vs normal, or subtypes).

- two groups: two-sided Mann-Whitney U test (rank-based, no normality assumed);
- three or more groups: Kruskal-Wallis H test;
- Benjamini-Hochberg FDR over the tested features.

Rank tests suit proportions and CPM values, which are bounded and skewed.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ..exceptions import BlueInputError

__all__ = ["compare_groups", "correlate", "benjamini_hochberg", "holm", "zscore", "top_genes", "collapse_columns", "specific_genes"]

logger = logging.getLogger(__name__)


def benjamini_hochberg(p: np.ndarray | pd.Series) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR).

    Parameters
    ----------
    p
        Raw p-values, shape (n,). NaN entries stay NaN and are not counted.

    Returns
    -------
    ndarray
        Adjusted p-values, shape (n,), in [0, 1], monotone in the raw p-values.
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = _sps.false_discovery_control(p[ok], method="bh")
    return out


def holm(p: np.ndarray | pd.Series, *, n_tests: int | None = None) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control).

    Parameters
    ----------
    p
        Raw p-values, shape (n,). NaN entries (tests that could not be run) stay NaN.
    n_tests
        Size of the pre-declared family (default: the number of non-NaN p). A test of the family that could
        not be run counts as p = 1, so declaring 9 tests and running 7 is as strict as running all 9.

    Returns
    -------
    ndarray
        Adjusted p-values, shape (n,), in [0, 1], monotone in the raw p-values.
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok) if n_tests is None else int(n_tests)
    if m < len(ok):
        raise BlueInputError(f"n_tests={n_tests} is smaller than the {len(ok)} p-values given.")
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def compare_groups(
    frame: pd.DataFrame,
    groups: pd.Series,
    *,
    min_group_size: int = 2,
    fold_change: bool = False,
    max_fdr: float = 0.05,
    min_abs_log2_fold_change: float = 0.5,
) -> pd.DataFrame:
    """Test each column of ``frame`` for a difference between sample groups.

    Parameters
    ----------
    frame
        Samples x features (e.g. cell-type proportions, or one cell type's GEP in CPM).
        The index holds sample IDs.
    groups
        Group label per sample, indexed by sample ID. Samples missing from either
        input, or with a missing label, are left out.
    min_group_size
        Smallest number of samples a group must have to be tested.
    fold_change
        For expression values (CPM): add ``log2_fold_change`` -- two groups: log2((mean b + 1) / (mean a + 1));
        more groups: the same between the groups with the highest and the lowest mean (unsigned) -- and
        ``significant`` = ``fdr < max_fdr`` and ``|log2_fold_change| >= min_abs_log2_fold_change``: a
        difference must be both unlikely by chance and large enough to matter.
    max_fdr, min_abs_log2_fold_change
        The two thresholds of ``significant`` (with ``fold_change``).

    Returns
    -------
    DataFrame
        One row per feature (index = feature name), sorted by p-value, with columns
        ``test`` ("Mann-Whitney U" or "Kruskal-Wallis H"), ``statistic``, ``p``, ``fdr``
        (Benjamini-Hochberg over all features), ``n`` (samples used) and one
        ``median <group>`` column per group (groups in sorted order). For two groups
        ``difference <b> - <a>`` = median of the second group minus median of the first.

    Raises
    ------
    BlueInputError
        Fewer than two groups, a group smaller than ``min_group_size``, or no sample
        shared between ``frame`` and ``groups``.
    """
    if not isinstance(frame, pd.DataFrame) or frame.shape[1] == 0:
        raise BlueInputError("compare_groups needs a samples x features table with at least one column.")
    labels = pd.Series(groups).dropna()
    shared = frame.index.intersection(labels.index)
    if len(shared) == 0:
        raise BlueInputError(
            "No sample ID is shared between the values and the group labels. "
            "Check that the clinical table's first column holds the same sample IDs as the bulk data."
        )
    labels = labels.loc[shared].astype(str)
    values = frame.loc[shared].apply(pd.to_numeric, errors="coerce")
    counts = labels.value_counts()
    names: list[Hashable] = sorted(counts.index)
    if len(names) < 2:
        raise BlueInputError(
            f"Only one group ({names[0] if names else 'none'!s}) among the matched samples; "
            "a comparison needs at least two groups. Pick another grouping column."
        )
    small = [f"{g} (n={counts[g]})" for g in names if counts[g] < min_group_size]
    if small:
        raise BlueInputError(
            f"Groups too small to test: {', '.join(small)}. Each group needs at least "
            f"{min_group_size} samples; merge small groups or pick another grouping column."
        )
    test = "Mann-Whitney U" if len(names) == 2 else "Kruskal-Wallis H"
    rows = []
    for feature in values.columns:
        column = values[feature]
        samples = [column[labels == g].dropna().to_numpy() for g in names]
        stat, p = _test(samples, two_groups=len(names) == 2)
        row: dict[str, object] = {"test": test, "statistic": stat, "p": p, "n": int(sum(len(s) for s in samples))}
        for g, s in zip(names, samples):
            row[f"median {g}"] = float(np.median(s)) if len(s) else np.nan
        if len(names) == 2:
            row[f"difference {names[1]} - {names[0]}"] = row[f"median {names[1]}"] - row[f"median {names[0]}"]
        if fold_change:
            means = [float(np.mean(s)) if len(s) else np.nan for s in samples]
            if len(names) == 2:
                row["log2_fold_change"] = float(np.log2((means[1] + 1.0) / (means[0] + 1.0)))
            else:
                row["log2_fold_change"] = float(np.log2((np.nanmax(means) + 1.0) / (np.nanmin(means) + 1.0)))
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(values.columns, name=frame.columns.name or "feature"))
    table.insert(3, "fdr", benjamini_hochberg(table["p"].to_numpy()))
    if fold_change:
        table["significant"] = (table["fdr"] < max_fdr) & (table["log2_fold_change"].abs() >= min_abs_log2_fold_change)
    table = table.sort_values(["p", "statistic"], ascending=[True, False], kind="mergesort")
    logger.info("compare_groups: %d features, %d groups, %s", len(table), len(names), test)
    return table


def _test(samples: list[np.ndarray], *, two_groups: bool) -> tuple[float, float]:
    """Run the rank test on per-group value arrays; constant data gives (nan, 1.0)."""
    if any(len(s) == 0 for s in samples):
        return float("nan"), float("nan")
    pooled = np.concatenate(samples)
    if np.all(pooled == pooled[0]):
        return float("nan"), 1.0
    if two_groups:
        res = _sps.mannwhitneyu(samples[0], samples[1], alternative="two-sided")
    else:
        res = _sps.kruskal(*samples)
    return float(res.statistic), float(res.pvalue)


def correlate(
    frame: pd.DataFrame,
    covariate: pd.Series,
    *,
    method: Literal["spearman", "pearson"] = "spearman",
) -> pd.DataFrame:
    """Correlate each column of ``frame`` with a numeric per-sample covariate (e.g. HbA1c).

    A survival time or status (by its name, :func:`~blue_core.analysis.clinical.is_survival_column`) is refused:
    censored times cannot be correlated; compare groups with Kaplan-Meier / Cox instead.

    Parameters
    ----------
    frame
        Samples x features (proportions, or one cell type's GEP). Index = sample IDs.
    covariate
        Numeric value per sample, indexed by sample ID; non-numeric or missing values are left out.
    method
        ``"spearman"`` (rank) or ``"pearson"``.

    Returns
    -------
    DataFrame
        One row per feature, sorted by p-value: ``method``, ``r``, ``p``, ``fdr``
        (Benjamini-Hochberg), ``n``.

    Raises
    ------
    BlueInputError
        Fewer than 3 samples with both values, or an unknown method.
    """
    if method not in ("spearman", "pearson"):
        raise BlueInputError(f"method must be 'spearman' or 'pearson', not {method!r}.")
    from .clinical import is_survival_column

    if getattr(covariate, "name", None) is not None and is_survival_column(str(covariate.name)):
        raise BlueInputError(
            f"{covariate.name!r} is a survival time or status: censored times cannot be correlated with a "
            "Spearman or Pearson r. Compare groups on Subtypes & survival (Kaplan-Meier, log-rank, Cox) instead."
        )
    values = pd.to_numeric(pd.Series(covariate), errors="coerce").dropna()
    shared = frame.index.intersection(values.index)
    if len(shared) < 3:
        raise BlueInputError(
            f"Only {len(shared)} samples have both a value and a numeric covariate; a correlation needs at "
            "least 3. Check the sample IDs of the clinical table and that the column is numeric."
        )
    x = values.loc[shared].to_numpy(dtype=float)
    func = _sps.spearmanr if method == "spearman" else _sps.pearsonr
    rows = []
    for feature in frame.columns:
        y = pd.to_numeric(frame.loc[shared, feature], errors="coerce").to_numpy(dtype=float)
        ok = ~np.isnan(y)
        if ok.sum() < 3 or np.all(y[ok] == y[ok][0]):
            r, p = float("nan"), float("nan")
        else:
            res = func(x[ok], y[ok])
            r, p = float(res.statistic), float(res.pvalue)
        rows.append({"method": method, "r": r, "p": p, "n": int(ok.sum())})
    table = pd.DataFrame(rows, index=pd.Index(frame.columns, name=frame.columns.name or "feature"))
    table.insert(3, "fdr", benjamini_hochberg(table["p"].to_numpy()))
    return table.sort_values("p", kind="mergesort", na_position="last")


def zscore(frame: pd.DataFrame, *, axis: int = 0) -> pd.DataFrame:
    """Standardize ``frame`` to mean 0, SD 1 along ``axis`` (0: each column across rows).

    Constant rows/columns become 0 rather than NaN, so a heatmap stays drawable.

    Returns
    -------
    pandas.DataFrame
        The standardised table (same shape; a constant column becomes 0).
    """
    mean = frame.mean(axis=axis)
    sd = frame.std(axis=axis, ddof=0).replace(0, np.nan)
    out = frame.sub(mean, axis=1 - axis).div(sd, axis=1 - axis)
    return out.fillna(0.0)


def top_genes(frame: pd.DataFrame, *, n: int = 30, by: str = "variance") -> list[str]:
    """Names of the ``n`` columns of a samples x genes table with the largest variance or mean.

    Variance is computed on log1p(values) so that a few very high genes do not dominate.

    Returns
    -------
    list of str
        Up to ``n`` column names, largest first.
    """
    if by not in ("variance", "mean"):
        raise BlueInputError(f"by must be 'variance' or 'mean', not {by!r}.")
    score = np.log1p(frame.clip(lower=0)).var(axis=0) if by == "variance" else frame.mean(axis=0)
    return [str(g) for g in score.sort_values(ascending=False, kind="mergesort").index[:n]]


def collapse_columns(frame: pd.DataFrame, mapping: dict[str, str], *, renormalise: bool = True) -> pd.DataFrame:
    """Sum proportion columns into coarser groups, e.g. to put a model's cell types and a flow panel's
    populations on one vocabulary.

    Parameters
    ----------
    frame
        Samples x cell types (fractions).
    mapping
        Column -> group. Columns not in ``mapping`` (or mapped to an empty string) are dropped.
    renormalise
        Divide each row by its sum over the kept columns, so rows sum to 1 again.

    Returns
    -------
    DataFrame
        Samples x groups, groups in first-seen order of ``mapping``.
    """
    cols = [c for c in frame.columns if mapping.get(c)]
    if not cols:
        raise BlueInputError(
            f"None of the columns ({', '.join(map(str, frame.columns[:8]))}) is in the mapping; check the names."
        )
    groups = list(dict.fromkeys(mapping[c] for c in cols))
    out = frame[cols].T.groupby([mapping[c] for c in cols], sort=False).sum().T[groups]
    if renormalise:
        out = out.div(out.sum(axis=1).replace(0, np.nan), axis=0)
    return out


def specific_genes(profiles: pd.DataFrame, cell_type: str, *, n: int = 30) -> list[str]:
    """Genes most specific to one cell type: marker genes from predicted (or reference) profiles.

    Parameters
    ----------
    profiles
        Cell types x genes table of mean expression (CPM), e.g. each cell type's predicted GEP
        averaged over samples.
    cell_type
        Row of ``profiles`` to find markers for.
    n
        Number of genes returned.

    Returns
    -------
    list of str
        Up to ``n`` genes ranked by log1p(CPM in ``cell_type``) - log1p(highest CPM in any other
        cell type), keeping only genes higher in ``cell_type`` than in every other one.
    """
    if cell_type not in profiles.index:
        raise BlueInputError(f"{cell_type!r} is not one of the cell types ({', '.join(map(str, profiles.index))}).")
    logged = np.log1p(profiles.clip(lower=0))
    others = logged.drop(index=cell_type)
    score = logged.loc[cell_type] - (others.max(axis=0) if len(others) else 0.0)
    score = score[score > 0].sort_values(ascending=False, kind="mergesort")
    return [str(g) for g in score.index[:n]]
