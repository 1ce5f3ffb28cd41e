"""Patient subtypes: consensus clustering on predicted cell-type GEPs or on proportions.

The fitter follows lifelines' vocabulary: settings in the constructor, :meth:`SubtypeClustering.fit`
returns ``self``, fitted values end in ``_``, :attr:`SubtypeClustering.summary` is a tidy table and
``plot_*`` methods return plotly figures.

Method (documented so results can be reported)
----------------------------------------------
1. **Features.** ``features="gep"``: for each chosen cell type, that cell type's predicted expression
   profile across samples, ``log1p(CPM)``, keeping the ``n_top_genes`` genes of highest variance
   across samples (per cell type; feature names ``"<cell type>|<gene>"``). ``features="proportions"``:
   the centred log-ratio (CLR, pseudo-count 1e-3) of the predicted proportions. A plain
   samples x features DataFrame is used as given. Every feature is then z-scored across the samples
   of the cohort (features with zero variance are dropped).
2. **Consensus clustering** (Monti et al. 2003, Mach Learn 52:91): ``n_resamples`` random subsets of
   ``subsample`` x n samples are clustered with k-means (``n_init=5``) for every k in ``k_range``;
   the consensus matrix holds, for each pair of samples, the fraction of resamples containing both in
   which they were in the same cluster. Final labels: average-linkage hierarchical clustering of
   ``1 - consensus`` cut into k groups.
3. **Choice of k** (when ``k=None``): the k with the lowest PAC, the proportion of ambiguously
   clustered pairs (consensus in (0.1, 0.9); Senbabaoglu et al. 2014, Sci Rep 4:6207); ties go to the
   smaller k. The silhouette width on the features is reported alongside in ``k_scores_``.
4. **Label order.** Subtypes are named ``"S1"``, ``"S2"``, ... by decreasing size; ties are broken by
   the position (in the input order) of each cluster's first sample. The same data and seed always
   give the same names.
5. **Stability** of a subtype is its cluster consensus: the mean consensus over pairs of its members
   (1 = always clustered together).
6. **Cross-cohort assignment** (:meth:`SubtypeClustering.predict`): a nearest-centroid classifier
   (Euclidean distance) trained on the discovery cohort's z-scored features and subtype labels,
   restricted to the features both cohorts have. The other cohort's features are z-scored within that
   cohort, which removes per-feature shifts and scale differences between platforms (and so assumes
   that the validation cohort is not made of a single subtype).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["SubtypeClustering", "subtype_features", "shared_genes"]

logger = logging.getLogger(__name__)

_CLR_PSEUDOCOUNT = 1e-3
_SEP = "|"


# --------------------------------------------------------------------------- inputs
def _is_deconvolution(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("proportions", "expression", "cell_types", "genes"))


def _cell_type_index(deconv: Any, cell_types: Sequence[str] | None) -> list[int]:
    available = [str(c) for c in deconv.cell_types]
    if cell_types is None:
        return list(range(len(available)))
    if isinstance(cell_types, str):
        cell_types = [cell_types]
    unknown = [c for c in cell_types if c not in available]
    if unknown:
        raise BlueInputError(
            f"Unknown cell type(s) {unknown}. This deconvolution has: {available}. "
            "Pick cell types from that list (or leave cell_types unset to use all)."
        )
    return [available.index(c) for c in cell_types]


def shared_genes(*deconvs: Any) -> list[str]:
    """Genes that every given deconvolution outputs (in the first one's order).

    Parameters
    ----------
    *deconvs
        ``Deconvolution`` objects (anything with a ``genes`` attribute).

    Returns
    -------
    list of str
        Output genes common to all of them. Use it as ``SubtypeClustering(genes=...)`` so that the
        discovery features can be computed in a validation cohort as well.
    """
    if not deconvs:
        return []
    common = set(map(str, deconvs[0].genes))
    for d in deconvs[1:]:
        common &= set(map(str, d.genes))
    return [str(g) for g in deconvs[0].genes if str(g) in common]


def subtype_features(
    data: Any,
    *,
    features: Literal["gep", "proportions"] = "gep",
    cell_types: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    n_top_genes: int | None = 200,
) -> pd.DataFrame:
    """Raw (not yet standardised) per-sample features for subtyping.

    Parameters
    ----------
    data
        A ``Deconvolution`` (duck-typed: ``proportions``, ``expression`` (n_samples, n_cell_types,
        n_genes) in CPM, ``cell_types``, ``genes``) or a samples x features DataFrame (returned as
        float copy).
    features
        ``"gep"``: log1p(CPM) of each chosen cell type's GEP, columns ``"<cell type>|<gene>"``;
        ``"proportions"``: CLR of the proportions (pseudo-count 1e-3), one column per cell type.
    cell_types
        Cell types to use (default: all).
    genes
        Restrict GEP features to these genes (e.g. :func:`shared_genes` of two cohorts).
    n_top_genes
        Genes of highest variance across samples kept per cell type; ``None`` keeps all.

    Returns
    -------
    pandas.DataFrame
        (n_samples, n_features) float64, index = sample IDs.
    """
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        try:
            frame = frame.astype(float)
        except (TypeError, ValueError) as err:
            raise BlueInputError(
                f"The feature table has non-numeric values ({err}). Pass a samples x features table "
                "of numbers (sample IDs as the index, not as a column)."
            ) from None
        frame.index = frame.index.astype(str)
        frame.columns = frame.columns.astype(str)
        return frame
    if not _is_deconvolution(data):
        raise BlueInputError(
            f"Cannot take subtype features from a {type(data).__name__}. Pass a Deconvolution "
            "(from blue_core.deconvolve or Deconvolution.read) or a samples x features DataFrame."
        )
    idx = _cell_type_index(data, cell_types)
    samples = [str(s) for s in data.proportions.index]
    if features == "proportions":
        p = data.proportions.iloc[:, idx].to_numpy(dtype=float)
        logp = np.log(np.clip(p, 0.0, None) + _CLR_PSEUDOCOUNT)
        clr = logp - logp.mean(axis=1, keepdims=True)
        cols = [str(data.cell_types[i]) for i in idx]
        return pd.DataFrame(clr, index=samples, columns=cols)
    if features != "gep":
        raise BlueInputError(f"features must be 'gep' or 'proportions', not {features!r}.")
    all_genes = np.asarray([str(g) for g in data.genes])
    gene_mask = np.ones(all_genes.size, dtype=bool)
    if genes is not None:
        gene_mask = np.isin(all_genes, [str(g) for g in genes])
        if not gene_mask.any():
            raise BlueInputError(
                "None of the requested genes are output genes of this deconvolution "
                f"(first requested: {list(genes)[:5]}; first available: {list(all_genes[:5])}). "
                "Use shared_genes(deconv_a, deconv_b) to get genes both cohorts have."
            )
    expr = np.asarray(data.expression)
    blocks = []
    for i in idx:
        ct = str(data.cell_types[i])
        x = np.log1p(np.clip(expr[:, i, gene_mask].astype(np.float64), 0.0, None))
        var = x.var(axis=0)
        order = np.argsort(-var, kind="stable")
        order = order[var[order] > 0]
        if n_top_genes is not None:
            order = order[:n_top_genes]
        order = np.sort(order)  # keep the model's gene order
        names = [f"{ct}{_SEP}{g}" for g in all_genes[gene_mask][order]]
        blocks.append(pd.DataFrame(x[:, order], index=samples, columns=names))
    return pd.concat(blocks, axis=1)


def _standardise(frame: pd.DataFrame) -> pd.DataFrame:
    """z-score each column across samples; drop constant columns. Raises on NaN/inf."""
    values = frame.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        bad = frame.columns[~np.isfinite(values).all(axis=0)][:5].tolist()
        raise BlueInputError(
            f"The subtype features contain NaN or infinite values (e.g. in {bad}). "
            "Remove or impute those values before clustering."
        )
    sd = values.std(axis=0, ddof=0)
    keep = sd > 1e-12
    z = (values[:, keep] - values[:, keep].mean(axis=0)) / sd[keep]
    return pd.DataFrame(z, index=frame.index, columns=frame.columns[keep])


# --------------------------------------------------------------------------- clustering core
def _consensus_matrices(
    x: np.ndarray, ks: Sequence[int], n_resamples: int, subsample: float, seed: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict[int, np.ndarray]:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    m = max(2, int(round(subsample * n)))
    rng = np.random.default_rng(seed)
    together = {k: np.zeros((n, n)) for k in ks}
    sampled = np.zeros((n, n))
    with threadpool_limits(1):
        for r in range(n_resamples):
            idx = np.sort(rng.choice(n, size=m, replace=False))
            sampled[np.ix_(idx, idx)] += 1.0
            for k in ks:
                km = KMeans(n_clusters=k, n_init=5, random_state=seed + r).fit(x[idx])
                onehot = np.eye(k)[km.labels_]
                together[k][np.ix_(idx, idx)] += onehot @ onehot.T
            if progress is not None:
                progress((r + 1) / n_resamples, f"consensus clustering: resample {r + 1}/{n_resamples}")
    out = {}
    for k in ks:
        c = together[k] / np.maximum(sampled, 1.0)
        np.fill_diagonal(c, 1.0)
        out[k] = c
    return out


def _hierarchical_labels(consensus: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - consensus
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method="average")
    return fcluster(z, t=k, criterion="maxclust")


def _ordered_names(raw: np.ndarray) -> np.ndarray:
    """Rename clusters S1.. by decreasing size, ties by first appearance in input order."""
    uniq, first, counts = np.unique(raw, return_index=True, return_counts=True)
    order = sorted(range(uniq.size), key=lambda i: (-counts[i], first[i]))
    mapping = {uniq[i]: f"S{rank + 1}" for rank, i in enumerate(order)}
    return np.array([mapping[v] for v in raw], dtype=object)


def _pac(consensus: np.ndarray, lower: float = 0.1, upper: float = 0.9) -> float:
    tri = consensus[np.tril_indices_from(consensus, k=-1)]
    return float(np.mean((tri > lower) & (tri < upper)))


# --------------------------------------------------------------------------- the fitter
class SubtypeClustering:
    """Consensus clustering of patients on predicted cell-type GEPs (or proportions).

    Parameters
    ----------
    k
        Number of subtypes; ``None`` chooses it in ``k_range`` by the lowest PAC.
    k_range
        Inclusive (min, max) range of k tried when ``k=None``.
    features
        ``"gep"`` (cell-type expression, the paper's choice) or ``"proportions"``.
    cell_types
        Cell types whose GEPs (or proportions) are used; default all.
    genes
        Restrict GEP features to these genes, e.g. the genes two cohorts share
        (:func:`shared_genes`), so that :meth:`predict` can use all chosen features.
    n_top_genes
        Most variable genes kept per cell type (``features="gep"``).
    n_resamples
        Resamples for the consensus matrix.
    subsample
        Fraction of samples drawn (without replacement) in each resample.
    seed
        Random seed (resampling and k-means).

    Attributes
    ----------
    labels_ : pandas.Series
        Sample ID -> subtype name (``"S1"``, ...), in input order.
    k_ : int
        Number of subtypes.
    consensus_ : pandas.DataFrame
        (n_samples, n_samples) consensus matrix of the chosen k, values in [0, 1].
    stability_ : pandas.Series
        Subtype -> mean within-subtype consensus.
    features_ : list of str
        Feature names used (after dropping constant features).
    data_ : pandas.DataFrame
        (n_samples, n_features) z-scored features used for clustering.
    k_scores_ : pandas.DataFrame
        One row per k tried: ``k``, ``pac``, ``silhouette``.
    """

    def __init__(
        self,
        k: int | None = None,
        *,
        k_range: tuple[int, int] = (2, 6),
        features: Literal["gep", "proportions"] = "gep",
        cell_types: Sequence[str] | None = None,
        genes: Sequence[str] | None = None,
        n_top_genes: int | None = 200,
        n_resamples: int = 100,
        subsample: float = 0.8,
        seed: int = 0,
    ) -> None:
        if features not in ("gep", "proportions"):
            raise BlueInputError(f"features must be 'gep' or 'proportions', not {features!r}.")
        if k is not None and (not isinstance(k, (int, np.integer)) or k < 2):
            raise BlueInputError(f"k must be an integer >= 2 (or None to choose it), not {k!r}.")
        lo, hi = k_range
        if lo < 2 or hi < lo:
            raise BlueInputError(f"k_range must be (min, max) with 2 <= min <= max, not {k_range!r}.")
        if not 0.1 <= subsample <= 1.0:
            raise BlueInputError(f"subsample must be a fraction in [0.1, 1], not {subsample!r}.")
        if n_resamples < 1:
            raise BlueInputError(f"n_resamples must be >= 1, not {n_resamples!r}.")
        if n_top_genes is not None and n_top_genes < 1:
            raise BlueInputError(f"n_top_genes must be >= 1 or None, not {n_top_genes!r}.")
        self.k = None if k is None else int(k)
        self.k_range = (int(lo), int(hi))
        self.features = features
        if isinstance(cell_types, str):
            cell_types = [cell_types]
        self.cell_types = None if cell_types is None else list(cell_types)
        self.genes = None if genes is None else [str(g) for g in genes]
        self.n_top_genes = n_top_genes
        self.n_resamples = int(n_resamples)
        self.subsample = float(subsample)
        self.seed = int(seed)

    def __repr__(self) -> str:
        state = f"k_={self.k_}" if hasattr(self, "k_") else "unfitted"
        return f"<SubtypeClustering features={self.features!r} {state}>"

    # ------------------------------------------------------------------ fit
    def _raw_features(self, data: Any) -> pd.DataFrame:
        return subtype_features(
            data,
            features=self.features,
            cell_types=self.cell_types,
            genes=self.genes,
            n_top_genes=self.n_top_genes,
        )

    def fit(self, data: Any, *, progress: Callable[[float, str], None] | None = None) -> SubtypeClustering:
        """Cluster the samples of one cohort.

        Parameters
        ----------
        data
            A ``Deconvolution`` or a samples x features DataFrame (used as given, then z-scored).
        progress
            Optional callback ``progress(fraction, message)``, called after each resample.

        Returns
        -------
        SubtypeClustering
            ``self``, with ``labels_``, ``k_``, ``consensus_``, ``stability_``, ``features_``,
            ``data_`` and ``k_scores_`` set.
        """
        t0 = time.perf_counter()
        raw = self._raw_features(data)
        if raw.index.duplicated().any():
            dup = raw.index[raw.index.duplicated()][:3].tolist()
            raise BlueInputError(f"Duplicated sample IDs {dup}: give every sample a unique ID.")
        z = _standardise(raw)
        n = z.shape[0]
        if z.shape[1] == 0:
            raise BlueInputError(
                "No usable features: every feature is constant across samples. "
                "Choose other cell types or features='proportions'."
            )
        if n < 6:
            raise BlueInputError(f"Only {n} samples: subtyping needs at least 6 (better 30 or more).")
        if self.k is not None:
            if self.k > n // 2:
                raise BlueInputError(f"k={self.k} is too large for {n} samples; use k <= {n // 2}.")
            ks = [self.k]
        else:
            hi = min(self.k_range[1], n // 3)
            if hi < self.k_range[0]:
                raise BlueInputError(
                    f"{n} samples are too few to try k in {self.k_range}; set k explicitly (k=2)."
                )
            if hi < self.k_range[1]:
                logger.warning("k_range capped at %d for %d samples", hi, n)
            ks = list(range(self.k_range[0], hi + 1))
        logger.info(
            "consensus clustering: %d samples x %d features, k in %s, %d resamples",
            n, z.shape[1], ks, self.n_resamples,
        )
        x = z.to_numpy()
        mats = _consensus_matrices(x, ks, self.n_resamples, self.subsample, self.seed, progress)
        rows = []
        labels_by_k = {}
        for k in ks:
            raw_labels = _hierarchical_labels(mats[k], k)
            labels_by_k[k] = raw_labels
            sil = np.nan
            if 1 < np.unique(raw_labels).size < n:
                from sklearn.metrics import silhouette_score

                sil = float(silhouette_score(x, raw_labels))
            rows.append({"k": k, "pac": _pac(mats[k]), "silhouette": sil})
        self.k_scores_ = pd.DataFrame(rows)
        if self.k is not None:
            best = self.k
        else:
            best = int(self.k_scores_.sort_values(["pac", "k"], kind="stable").iloc[0]["k"])
        names = _ordered_names(labels_by_k[best])
        samples = z.index
        self.k_ = best
        self.labels_ = pd.Series(names, index=samples, name="subtype")
        self.labels_.index.name = "sample"
        self.consensus_ = pd.DataFrame(mats[best], index=samples, columns=samples)
        self.features_ = list(z.columns)
        self.data_ = z
        stab = {}
        for s in sorted(set(names), key=lambda v: int(v[1:])):
            members = np.flatnonzero(names == s)
            if members.size < 2:
                stab[s] = float("nan")
                continue
            block = mats[best][np.ix_(members, members)]
            stab[s] = float(block[np.triu_indices(members.size, k=1)].mean())
        self.stability_ = pd.Series(stab, name="stability")
        logger.info(
            "finished subtyping: k=%d (%s) (%.1fs)",
            best,
            ", ".join(f"{s}: {c}" for s, c in self.labels_.value_counts().sort_index().items()),
            time.perf_counter() - t0,
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise BlueInputError("This SubtypeClustering is not fitted yet: call fit(data) first.")

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy table, one row per subtype: ``subtype``, ``n``, ``fraction``, ``stability``."""
        self._check_fitted()
        counts = self.labels_.value_counts()
        subtypes = list(self.stability_.index)
        return pd.DataFrame(
            {
                "subtype": subtypes,
                "n": [int(counts.get(s, 0)) for s in subtypes],
                "fraction": [float(counts.get(s, 0)) / len(self.labels_) for s in subtypes],
                "stability": [float(self.stability_[s]) for s in subtypes],
            }
        )

    #: Limits of :meth:`support_warnings`: PAC above, silhouette below, subtypes smaller than.
    PAC_LIMIT = 0.3
    SILHOUETTE_LIMIT = 0.1
    MIN_SUBTYPE_SIZE = 3

    def support_warnings(self) -> list[str]:
        """Plain-words warnings when the data do not support the chosen k (the app and the CLI show these).

        Rules: a subtype with fewer than ``MIN_SUBTYPE_SIZE`` samples (or under 5 % of them) is outliers, not a
        group; PAC above ``PAC_LIMIT`` means many sample pairs are clustered together only sometimes; a
        silhouette below ``SILHOUETTE_LIMIT`` means the groups are not separated.

        Returns
        -------
        list of str
            Empty when k is supported.
        """
        self._check_fitted()
        out = []
        counts = self.labels_.value_counts()
        small = [s for s, c in counts.items() if c < max(self.MIN_SUBTYPE_SIZE, 0.05 * len(self.labels_))]
        if small:
            out.append(f"Subtype(s) {', '.join(sorted(small))} hold only {', '.join(str(int(counts[s])) for s in sorted(small))} "
                       f"sample(s): at k={self.k_} the clustering splits off outliers rather than groups; try a smaller k.")
        row = self.k_scores_.set_index("k").loc[self.k_]
        if np.isfinite(row["pac"]) and row["pac"] > self.PAC_LIMIT:
            out.append(f"PAC {row['pac']:.2f} at k={self.k_} (> {self.PAC_LIMIT}): many pairs of samples are grouped "
                       "together in some resamples and apart in others, so the subtypes are not stable.")
        if not np.isfinite(row["silhouette"]) or row["silhouette"] < self.SILHOUETTE_LIMIT:
            sil = "undefined" if not np.isfinite(row["silhouette"]) else f"{row['silhouette']:.2f}"
            out.append(f"Silhouette {sil} at k={self.k_} (< {self.SILHOUETTE_LIMIT}): the samples do not fall into "
                       "well-separated groups; treat the subtypes as a partition of a continuum.")
        return out

    # ------------------------------------------------------------------ predict
    def predict(self, other: Any, *, min_features: int = 5) -> pd.Series:
        """Assign the samples of another cohort to the fitted subtypes (nearest centroid).

        Parameters
        ----------
        other
            A ``Deconvolution`` of the other cohort, or a samples x features DataFrame with the same
            feature names (``"<cell type>|<gene>"`` for GEPs, cell types for proportions).
        min_features
            Fewest shared features accepted.

        Returns
        -------
        pandas.Series
            Sample ID -> subtype name, for the samples of ``other``. ``.attrs["n_features"]`` holds
            the number of shared features used.
        """
        self._check_fitted()
        from sklearn.neighbors import NearestCentroid

        if isinstance(other, pd.DataFrame):
            raw = subtype_features(other)
        else:
            raw = subtype_features(
                other, features=self.features, cell_types=self.cell_types, genes=None, n_top_genes=None
            )
        z_other = _standardise(raw)
        shared = [f for f in self.features_ if f in set(z_other.columns)]
        if len(shared) < min_features:
            raise BlueInputError(
                f"Only {len(shared)} of the {len(self.features_)} discovery features exist (and vary) in the "
                f"other cohort (need >= {min_features}). Fit the discovery cohort with "
                "genes=shared_genes(discovery, other) so that it uses genes both cohorts have, "
                "or use the same model for both cohorts."
            )
        if len(shared) < len(self.features_):
            logger.warning(
                "predict: using %d of %d discovery features (the rest are absent or constant in the other cohort)",
                len(shared), len(self.features_),
            )
        # re-standardise the discovery restricted to shared features (already z-scored per feature)
        clf = NearestCentroid().fit(self.data_[shared].to_numpy(), self.labels_.to_numpy())
        pred = clf.predict(z_other[shared].to_numpy())
        out = pd.Series(pred.astype(object), index=z_other.index, name="subtype")
        out.index.name = "sample"
        out.attrs["n_features"] = len(shared)
        return out

    # ------------------------------------------------------------------ plots
    def top_features(self, n: int = 40) -> list[str]:
        """The ``n`` features that best separate the subtypes (largest one-way ANOVA F)."""
        self._check_fitted()
        from sklearn.feature_selection import f_classif

        f, _ = f_classif(self.data_.to_numpy(), self.labels_.to_numpy())
        f = np.nan_to_num(f, nan=0.0)
        order = np.argsort(-f, kind="stable")[:n]
        return [self.features_[i] for i in order]

    def _sample_order(self) -> list[str]:
        frame = pd.DataFrame(
            {"s": self.labels_.map(lambda v: int(str(v)[1:])), "c": -self.consensus_.mean(axis=1)}
        )
        return list(frame.sort_values(["s", "c"], kind="stable").index)

    def plot_heatmap(self, n_features: int = 40) -> go.Figure:
        """Heatmap of the most discriminating z-scored features, samples grouped by subtype.

        Returns
        -------
        plotly.graph_objects.Figure
            Top strip: subtype of each sample; main panel: features (rows) x samples (columns), z-scores.
        """
        from ..plotting import subtype_heatmap

        return subtype_heatmap(self, n_features=n_features)

    def plot_consensus(self) -> go.Figure:
        """Consensus matrix of the chosen k, samples ordered by subtype (values in [0, 1])."""
        from ..plotting import consensus_matrix

        return consensus_matrix(self)
