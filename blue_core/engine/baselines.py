"""Classical deconvolution baselines: NNLS, nu-SVR (CIBERSORT) and closed-form GEPs.

These are the yardsticks BLUE is compared with (``bench/peers.py``, ``bench/validate.py``).
All of them work on a *signature*: a genes x cell types DataFrame of mean expression
profiles, built from a single-cell reference with :func:`signature_from_reference`.

Scales
------
- Signature: mean over cells of each cell's CPM (counts per million of that cell's library
  over all reference genes), linear scale.
- Bulk: samples x genes DataFrame, linear scale (counts, TPM or CPM). NNLS and nu-SVR are
  invariant to a per-sample rescaling of the bulk (proportions are normalised to sum 1), so
  the bulk units need not match the signature's.
- Proportions returned are *mRNA-weighted* fractions in the signature's units: a cell type with
  more mRNA per cell than average is not corrected for.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import nnls
from sklearn.svm import NuSVR

from ..exceptions import BlueInputError, GeneOverlapWarning

if TYPE_CHECKING:  # pragma: no cover
    import anndata as ad

__all__ = [
    "signature_from_reference",
    "nnls_proportions",
    "svr_proportions",
    "closed_form_gep",
    "refit_shares",
    "refit_profiles",
    "unit_rows",
    "split_bulk",
]

logger = logging.getLogger(__name__)

_MIN_SHARED_GENES = 2


def signature_from_reference(
    reference: ad.AnnData,
    *,
    genes: Sequence[str] | None = None,
    cell_type_key: str = "cell_type",
) -> pd.DataFrame:
    """Mean CPM profile of each cell type in a single-cell reference.

    Parameters
    ----------
    reference
        ``anndata.AnnData``, cells x genes, ``X`` counts (dense or sparse), with
        ``obs[cell_type_key]`` labels.
    genes
        Genes (rows) to keep, in this order. CPM is computed over *all* reference genes first,
        so the values do not depend on this selection. ``None`` keeps every reference gene.
    cell_type_key
        Column of ``reference.obs`` holding the cell-type labels.

    Returns
    -------
    pandas.DataFrame
        Shape (n_genes, n_cell_types), index = genes, columns = cell types in sorted order;
        values = mean over the cells of each type of per-cell CPM (linear scale).

    Raises
    ------
    BlueInputError
        If the label column is missing, a cell has no counts, or requested genes are absent.
    """
    if cell_type_key not in reference.obs:
        raise BlueInputError(
            f"reference.obs has no column {cell_type_key!r}; pass `cell_type_key=` naming the labels."
        )
    X = reference.X
    X = X.tocsr().astype(np.float64) if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float64))
    library = np.asarray(X.sum(axis=1)).ravel()
    if np.any(library <= 0):
        raise BlueInputError(
            f"{int(np.sum(library <= 0))} cells have no counts; drop them before building a signature."
        )
    cpm = sp.diags(1e6 / library) @ X
    labels = reference.obs[cell_type_key].astype(str).to_numpy()
    cell_types = sorted(set(labels))
    columns = {}
    for cell_type in cell_types:
        mask = labels == cell_type
        columns[cell_type] = np.asarray(cpm[mask].mean(axis=0)).ravel()
    signature = pd.DataFrame(columns, index=pd.Index(reference.var_names.astype(str), name="gene"))
    if genes is not None:
        genes = list(genes)
        missing = [g for g in genes if g not in signature.index]
        if missing:
            raise BlueInputError(
                f"{len(missing)} requested genes are not in the reference (e.g. {missing[:5]}); "
                "intersect `genes` with reference.var_names first."
            )
        signature = signature.loc[genes]
    signature.columns.name = "cell_type"
    return signature


def _shared(bulk_df: pd.DataFrame, signature: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bulk (samples x shared genes) and signature (shared genes x K) as float64 arrays."""
    if not isinstance(bulk_df, pd.DataFrame) or not isinstance(signature, pd.DataFrame):
        raise BlueInputError("bulk_df and signature must be pandas DataFrames (samples x genes, genes x cell types).")
    genes = [g for g in signature.index if g in set(bulk_df.columns)]
    if len(genes) < max(_MIN_SHARED_GENES, signature.shape[1]):
        raise BlueInputError(
            f"only {len(genes)} signature genes are in the bulk columns; is the bulk samples x genes? "
            "Try `bulk_df.T`."
        )
    if len(genes) < 0.5 * signature.shape[0]:
        warnings.warn(
            f"only {len(genes)} of {signature.shape[0]} signature genes are in the bulk; "
            "the others are ignored.",
            GeneOverlapWarning,
            stacklevel=3,
        )
    bulk = bulk_df.loc[:, genes].to_numpy(dtype=np.float64)
    sig = signature.loc[genes].to_numpy(dtype=np.float64)
    if np.any(bulk < 0) or np.any(sig < 0) or not (np.all(np.isfinite(bulk)) and np.all(np.isfinite(sig))):
        raise BlueInputError("bulk and signature must be finite and non-negative (linear scale, not log).")
    return bulk, sig, genes


def _normalise_rows(coefs: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1; all-zero rows become uniform."""
    total = coefs.sum(axis=1, keepdims=True)
    out = np.where(total > 0, coefs / np.where(total > 0, total, 1.0), 1.0 / coefs.shape[1])
    return out


def nnls_proportions(bulk_df: pd.DataFrame, signature: pd.DataFrame) -> pd.DataFrame:
    """Non-negative least squares proportions, one sample at a time.

    Solves ``min_{w >= 0} || S w - b ||_2`` with ``scipy.optimize.nnls`` on the **linear** scale,
    over the genes shared by the bulk and the signature, and returns ``w / sum(w)``. Each bulk
    sample is first rescaled to sum 1e6 over the shared genes (numerical conditioning only: the
    normalised result does not depend on it). The signature is used as given.

    Parameters
    ----------
    bulk_df
        Shape (n_samples, n_genes), linear scale, columns = gene symbols.
    signature
        Shape (n_genes_sig, n_cell_types), linear scale (e.g. :func:`signature_from_reference`).

    Returns
    -------
    pandas.DataFrame
        Shape (n_samples, n_cell_types), index = bulk samples, columns = signature cell types;
        rows sum to 1 (a sample whose solution is all zero gets equal fractions).
    """
    bulk, sig, genes = _shared(bulk_df, signature)
    logger.info("NNLS on %d samples x %d genes x %d cell types", bulk.shape[0], len(genes), sig.shape[1])
    coefs = np.zeros((bulk.shape[0], sig.shape[1]))
    for i, b in enumerate(bulk):
        total = b.sum()
        b = b * (1e6 / total) if total > 0 else b
        coefs[i], _ = nnls(sig, b)
    return pd.DataFrame(_normalise_rows(coefs), index=bulk_df.index, columns=signature.columns)


def _svr_one(sig_std: np.ndarray, y: np.ndarray, nus: Sequence[float]) -> tuple[np.ndarray, float]:
    """CIBERSORT's CoreAlg for one standardised mixture; returns (weights summing to 1, nu chosen)."""
    best = (np.inf, None, None)
    for nu in nus:
        model = NuSVR(nu=nu, C=1.0, kernel="linear", tol=1e-3)
        model.fit(sig_std, y)
        weights = np.asarray(model.coef_, dtype=np.float64).ravel().copy()
        weights[weights < 0] = 0.0
        total = weights.sum()
        if total <= 0:
            continue
        w = weights / total
        fit_rmse = float(np.sqrt(np.mean((sig_std @ w - y) ** 2)))
        if fit_rmse < best[0]:
            best = (fit_rmse, w, nu)
    if best[1] is None:
        return np.full(sig_std.shape[1], 1.0 / sig_std.shape[1]), float("nan")
    return best[1], float(best[2])


def svr_proportions(
    bulk_df: pd.DataFrame,
    signature: pd.DataFrame,
    *,
    nus: Sequence[float] = (0.25, 0.5, 0.75),
) -> pd.DataFrame:
    """nu-SVR proportions: CIBERSORT's algorithm (Newman et al. 2015) with scikit-learn.

    As CIBERSORT does (``CIBERSORT.R``, no quantile normalisation): the whole signature matrix is
    standardised by its global mean and standard deviation; each mixture is standardised by its
    own mean and standard deviation over the shared genes; a linear-kernel ``NuSVR`` (C = 1) is
    fitted for each ``nu``; negative coefficients are set to 0 and the rest normalised to sum 1;
    the ``nu`` whose normalised weights give the smallest RMSE between ``S_std @ w`` and the
    standardised mixture is kept. Bulk values are taken as linear (CIBERSORT anti-logs input whose
    maximum is below 50; BLUE expects linear input and does not).

    Parameters
    ----------
    bulk_df
        Shape (n_samples, n_genes), linear scale, columns = gene symbols.
    signature
        Shape (n_genes_sig, n_cell_types), linear scale.
    nus
        Values of nu tried for each sample.

    Returns
    -------
    pandas.DataFrame
        Shape (n_samples, n_cell_types), rows sum to 1. ``attrs["nu"]`` holds the chosen nu per
        sample (a pandas Series).
    """
    if len(nus) == 0 or any(not 0 < nu <= 1 for nu in nus):
        raise BlueInputError(f"nus must be non-empty values in (0, 1]; got {tuple(nus)}.")
    bulk, sig, genes = _shared(bulk_df, signature)
    logger.info("nu-SVR on %d samples x %d genes x %d cell types", bulk.shape[0], len(genes), sig.shape[1])
    sig_std = (sig - sig.mean()) / sig.std(ddof=1)
    out = np.zeros((bulk.shape[0], sig.shape[1]))
    chosen = np.full(bulk.shape[0], np.nan)
    for i, b in enumerate(bulk):
        sd = b.std(ddof=1)
        if sd == 0:
            out[i] = 1.0 / sig.shape[1]
            continue
        y = (b - b.mean()) / sd
        out[i], chosen[i] = _svr_one(sig_std, y, nus)
    result = pd.DataFrame(out, index=bulk_df.index, columns=signature.columns)
    result.attrs["nu"] = pd.Series(chosen, index=bulk_df.index, name="nu")
    return result


def closed_form_gep(
    bulk_df: pd.DataFrame,
    proportions: pd.DataFrame,
    *,
    signature: pd.DataFrame,
    normalize: Literal["none", "cpm"] = "none",
) -> np.ndarray:
    """Cell-type expression given fractions: BayesPrism's expected expression E[Z | X].

    For each sample n, cell type k and gene g,
    ``Z[n, k, g] = X[n, g] * theta[n, k] * phi[g, k] / sum_j theta[n, j] * phi[g, j]``:
    the bulk count of gene g shared among the cell types in proportion to their expected
    contribution (the update step of BayesPrism, Chu et al. 2022, with the reference profile
    ``phi`` as prior mean). Where no cell type expresses g (denominator 0), ``Z = 0``.
    By construction ``Z.sum(axis=1) == X`` wherever the denominator is positive.

    Parameters
    ----------
    bulk_df
        Shape (n_samples, n_genes_bulk), linear scale; must contain every signature gene.
    proportions
        Shape (n_samples, n_cell_types), fractions (rows are used as given); index must match
        ``bulk_df.index`` and columns the signature's.
    signature
        Shape (n_genes, n_cell_types), linear scale; its index fixes the output gene order.
    normalize
        ``"none"``: return Z in the bulk's units (the amount of each gene contributed by each type).
        ``"cpm"``: rescale each (sample, cell type) profile to sum 1e6 over the signature genes,
        i.e. the cell type's own expression profile, comparable with CPM GEPs.

    Returns
    -------
    numpy.ndarray
        Shape (n_samples, n_cell_types, n_genes), float64; genes in ``signature.index`` order,
        cell types in ``signature.columns`` order.
    """
    if normalize not in ("none", "cpm"):
        raise BlueInputError(f"normalize must be 'none' or 'cpm'; got {normalize!r}.")
    missing = [g for g in signature.index if g not in set(bulk_df.columns)]
    if missing:
        raise BlueInputError(
            f"{len(missing)} signature genes are not in the bulk (e.g. {missing[:5]}); restrict the signature "
            "with `signature.loc[signature.index.intersection(bulk_df.columns)]`."
        )
    if not proportions.index.equals(bulk_df.index):
        raise BlueInputError("proportions.index must equal bulk_df.index (same samples, same order).")
    missing_types = [c for c in signature.columns if c not in proportions.columns]
    if missing_types:
        raise BlueInputError(f"proportions lacks cell types {missing_types} of the signature.")
    X = bulk_df.loc[:, signature.index].to_numpy(dtype=np.float64)  # (n, G)
    theta = proportions.loc[:, signature.columns].to_numpy(dtype=np.float64)  # (n, K)
    Z = split_bulk(X, theta, phi=signature.to_numpy(dtype=np.float64).T)
    if normalize == "cpm":
        totals = Z.sum(axis=2, keepdims=True)
        scale = np.divide(1e6, totals, out=np.zeros_like(totals), where=totals > 0)
        Z *= scale
    return Z


def split_bulk(bulk: np.ndarray, shares: np.ndarray, *, phi: np.ndarray) -> np.ndarray:
    """BayesPrism's expected split of each bulk gene among the cell types, E[Z | X] (the one home of the rule).

    ``Z[n, k, g] = X[n, g] * theta[n, k] * phi[k, g] / sum_j theta[n, j] * phi[j, g]``; 0 where no type
    expresses ``g`` (denominator 0). ``Z.sum(axis=1) == X`` wherever the denominator is positive.

    Parameters
    ----------
    bulk
        ``(n, G)`` linear-scale bulk values.
    shares
        ``(n, K)`` each type's share of the sample in the units of ``phi`` (mRNA shares for per-cell CPM profiles).
    phi
        ``(K, G)`` each type's mean profile, linear scale.

    Returns
    -------
    numpy.ndarray
        ``(n, K, G)`` float64, in the bulk's units (memory ~ 8 n K G bytes; updated in place).
    """
    X = np.asarray(bulk, dtype=np.float64)
    Z = np.asarray(shares, dtype=np.float64)[:, :, None] * np.asarray(phi, dtype=np.float64)[None, :, :]
    denominator = Z.sum(axis=1)  # (n, G)
    ratio = np.divide(X, denominator, out=np.zeros_like(X), where=denominator > 0)
    Z *= ratio[:, None, :]
    return Z


def unit_rows(values: np.ndarray) -> np.ndarray:
    """``(K, G)`` or ``(n, K)`` each row divided by its sum (a row summing to 0 becomes zeros).

    Returns
    -------
    numpy.ndarray
        float64, rows summing to 1 or 0.
    """
    values = np.asarray(values, dtype=np.float64)
    total = values.sum(axis=1, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def refit_shares(bulk: np.ndarray, shares: np.ndarray, *, phi: np.ndarray, max_iter: int = 200, tol: float = 1e-6
                 ) -> np.ndarray:
    """Each type's share of each sample re-fit to the bulk: EM for the multinomial mixture with fixed profiles.

    With ``q[k, g] = phi[k, g] / sum_g phi[k, g]`` (each profile as a distribution over the genes given), one step is
    BayesPrism's fraction update with the profiles fixed: ``theta[n, k] <- sum_g Z[n, k, g] / sum_g X[n, g]`` where
    ``Z`` is :func:`split_bulk` of ``X`` by ``theta`` and ``q``; iterated from ``shares`` to the maximum-likelihood
    shares. A share that starts at 0 stays 0 (a type called absent is not brought back).

    Parameters
    ----------
    bulk
        ``(n, G)`` linear-scale bulk values over the genes of ``phi``.
    shares
        ``(n, K)`` starting shares (rows are normalised; an all-zero row is returned as zeros).
    phi
        ``(K, G)`` each type's mean profile, linear scale.
    max_iter
        At most this many EM steps.
    tol
        Stop when no share moves by more than this in one step.

    Returns
    -------
    numpy.ndarray
        ``(n, K)`` float64 shares of the counts of these genes (rows summing to 1), to split the bulk by ``q``.
    """
    X = np.clip(np.asarray(bulk, dtype=np.float64), 0.0, None)
    q = unit_rows(phi)
    theta = unit_rows(np.clip(np.asarray(shares, dtype=np.float64), 0.0, None))
    depth = X.sum(axis=1, keepdims=True)
    active = (depth[:, 0] > 0) & (theta.sum(axis=1) > 0)
    for _ in range(max_iter):
        expected = theta @ q  # (n, G)
        ratio = np.divide(X, expected, out=np.zeros_like(X), where=expected > 0)
        new = np.divide(theta * (ratio @ q.T), depth, out=np.zeros_like(theta), where=depth > 0)
        new[~active] = theta[~active]
        step = float(np.abs(new - theta).max()) if new.size else 0.0
        theta = new
        if step < tol:
            break
    return theta


def refit_profiles(bulk: np.ndarray, shares: np.ndarray, *, phi: np.ndarray, max_iter: int = 200, tol: float = 1e-6
                   ) -> np.ndarray:
    """Each type's mean profile in this cohort given each sample's shares: the Poisson (KL) maximum-likelihood
    profiles with the shares fixed, by multiplicative updates from ``phi`` (a cohort-level E[Z|X] update).

    With ``x[n] = X[n] / sum_g X[n, g]`` (each sample as a distribution over the genes given) the model is
    ``x[n] ~ sum_k theta[n, k] q[k]``; one step is ``q[k, g] <- q[k, g] sum_n theta[n, k] x[n, g] / (theta q)[n, g]``
    (then each ``q[k]`` renormalised), which for fixed ``theta`` is a convex problem per gene. A gene a type does not
    express in ``phi`` stays unexpressed.

    Parameters
    ----------
    bulk
        ``(n, G)`` linear-scale bulk values over the genes of ``phi``; every sample weighs the same.
    shares
        ``(n, K)`` each type's share of each sample's counts (rows summing to 1, e.g. :func:`refit_shares`).
    phi
        ``(K, G)`` the starting profiles (the reference), linear scale.
    max_iter, tol
        At most this many steps; stop when no ``q`` entry moves by more than ``tol`` relative to its row's largest.

    Returns
    -------
    numpy.ndarray
        ``(K, G)`` float64 profiles, each summing to 1 (``phi``'s row normalised for a type no sample has).
    """
    X = np.clip(np.asarray(bulk, dtype=np.float64), 0.0, None)
    depth = X.sum(axis=1, keepdims=True)
    x = np.divide(X, depth, out=np.zeros_like(X), where=depth > 0)
    theta = np.clip(np.asarray(shares, dtype=np.float64), 0.0, None) * (depth > 0)
    q = unit_rows(np.clip(np.asarray(phi, dtype=np.float64), 0.0, None))
    weight = theta.sum(axis=0)  # (K,)
    seen = weight > 0
    for _ in range(max_iter):
        expected = theta @ q  # (n, G)
        ratio = np.divide(x, expected, out=np.zeros_like(x), where=expected > 0)
        new = q.copy()
        new[seen] = q[seen] * (theta.T @ ratio)[seen] / weight[seen, None]
        rows = new.sum(axis=1, keepdims=True)
        new = np.divide(new, rows, out=q.copy(), where=rows > 0)
        step = float((np.abs(new - q).max(axis=1) / np.maximum(q.max(axis=1), 1e-300)).max()) if q.size else 0.0
        q = new
        if step < tol:
            break
    return q
