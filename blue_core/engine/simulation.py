"""Pseudo-bulk simulation: mixtures of single cells with known proportions and per-cell-type profiles.

This is how BLUE gets its training data (Zhu et al. 2026): draw cell-type proportions, draw that many
cells of each type (with replacement) from a labelled single-cell reference, and sum their counts.
The targets are the realised cell fractions and, for each cell type, the CPM profile of the cells
of that type drawn into the sample.

Three kinds of proportion vectors are mixed:

* ``dirichlet``: ``Dirichlet(alpha, ..., alpha)`` over all cell types;
* ``dominant``: one cell type takes ``U(0.5, 0.95)`` of the sample, the rest is Dirichlet-shared;
* ``sparse``: a random subset of cell types is absent (fraction exactly 0), so the network
  learns to predict zeros.

Optionally (``group_share``) a group of cell types (e.g. granulocytes) is given a total share drawn from one
range in a fraction of the samples (whole-blood-like: 40-85 %) and from another range in the rest (PBMC-like:
0-10 %); the other types keep their relative proportions. Cell types without single cells (granulocytes,
lost by droplet protocols) enter as synthetic cells drawn from a bulk profile (:func:`profile_cells`).

The draw itself is vectorised: for every (sample, cell type) the cell indices are drawn at once and
turned into a sparse ``(n_samples, n_cells)`` matrix of draw counts, which is multiplied with the
count matrix. There is no Python loop over cells (only over cell types and chunks of samples).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._types import Progress
from ..exceptions import BlueInputError

__all__ = ["PseudoBulk", "simulate", "split_reference", "cell_types_of", "profile_cells", "rna_content_factors", "check_reference"]

logger = logging.getLogger(__name__)


#: Samples simulated per chunk; bounds the temporary memory of the sparse products.
_CHUNK = 2000


@dataclass
class PseudoBulk:
    """Simulated pseudo-bulk samples and their ground truth.

    Attributes
    ----------
    bulk
        ``(n_samples, n_genes)`` float32, summed counts over ``genes`` (after optional noise).
    proportions
        DataFrame ``(n_samples, n_cell_types)``: realised cell fractions (rows sum to 1).
    profiles
        ``(n_samples, n_cell_types, n_output_genes)`` float32: CPM (normalised over
        ``output_genes``) of the summed counts of the cells of each type in the sample;
        0 for absent types.
    genes
        Gene names of ``bulk`` columns (the reference genes).
    output_genes
        Gene names of the last axis of ``profiles``.
    cell_types
        Cell-type names, the order of ``proportions`` columns and ``profiles`` axis 1.
    """

    bulk: np.ndarray
    proportions: pd.DataFrame
    profiles: np.ndarray
    genes: list[str]
    output_genes: list[str]
    cell_types: list[str]

    @property
    def n_samples(self) -> int:
        """Number of pseudo-bulk samples."""
        return int(self.bulk.shape[0])

    def bulk_frame(self) -> pd.DataFrame:
        """The bulk as a DataFrame, samples x genes (summed counts)."""
        return pd.DataFrame(self.bulk, index=self.proportions.index, columns=self.genes)

    def to_anndata(self) -> ad.AnnData:
        """Bulk AnnData (samples x genes) with proportions in ``obsm['proportions']``.

        The per-cell-type profiles are not included (their genes differ from the bulk genes);
        use :meth:`profiles_anndata`.
        """
        adata = ad.AnnData(
            X=self.bulk.astype(np.float64),
            obs=pd.DataFrame(index=self.proportions.index.copy()),
            var=pd.DataFrame(index=pd.Index(self.genes)),
        )
        adata.obsm["proportions"] = self.proportions.copy()
        return adata

    def profiles_anndata(self) -> ad.AnnData:
        """Per-cell-type profiles as AnnData (samples x output genes), one layer per cell type (CPM)."""
        adata = ad.AnnData(
            X=np.zeros((self.n_samples, len(self.output_genes)), dtype=np.float32),
            obs=pd.DataFrame(index=self.proportions.index.copy()),
            var=pd.DataFrame(index=pd.Index(self.output_genes)),
        )
        for k, cell_type in enumerate(self.cell_types):
            adata.layers[cell_type] = self.profiles[:, k, :]
        adata.obsm["proportions"] = self.proportions.copy()
        return adata


def cell_types_of(reference: ad.AnnData, cell_type_key: str = "cell_type") -> list[str]:
    """Sorted cell-type names of a reference (``obs[cell_type_key]``), as strings.

    Returns
    -------
    list of str
        Sorted cell-type names.
    """
    if cell_type_key not in reference.obs:
        raise BlueInputError(
            f"the reference has no obs['{cell_type_key}'] column with cell-type labels; "
            f"columns found: {list(reference.obs.columns)[:10]}. Pass cell_type_key= the column that holds the labels."
        )
    labels = reference.obs[cell_type_key].astype(str)
    return sorted(pd.unique(labels))


def check_reference(reference: ad.AnnData) -> sp.csr_matrix:
    """Check a labelled single-cell reference (the one home of that rule: simulation, gene selection, training).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``X`` as CSR counts, cells x genes.
    """
    if not isinstance(reference, ad.AnnData):
        raise BlueInputError(
            f"reference must be an AnnData (cells x genes), got {type(reference).__name__}; "
            "read it with blue_core.read_reference('file.h5ad')."
        )
    if reference.n_obs == 0:
        raise BlueInputError("the reference has no cells; pass a reference with labelled cells.")
    if "cell_type" not in reference.obs:
        raise BlueInputError(
            "the reference has no obs['cell_type'] column; read it with "
            "read_reference(path, cell_type_key='<your label column>')."
        )
    X = reference.X
    X = sp.csr_matrix(X, dtype=np.float32) if not sp.issparse(X) else X.tocsr().astype(np.float32, copy=False)
    if X.nnz and (not np.isfinite(X.data).all() or X.data.min() < 0):
        raise BlueInputError(
            "the reference counts contain negative, NaN or infinite values; BLUE needs raw (non-negative) "
            "counts in reference.X."
        )
    return X


def _draw_proportions(
    rng: np.random.Generator,
    n_samples: int,
    available: np.ndarray,
    *,
    dirichlet_alpha: float,
    dominant_fraction: float,
    sparse_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(n_samples, K)`` proportion vectors over the ``available`` cell types.

    Returns the proportions and a ``(n_samples,)`` array of kinds (0 dirichlet, 1 dominant, 2 sparse).
    """
    n_types = available.size
    avail_idx = np.flatnonzero(available)
    n_avail = avail_idx.size
    kinds = np.zeros(n_samples, dtype=np.int8)
    n_dom = int(round(dominant_fraction * n_samples))
    n_sparse = int(round(sparse_fraction * n_samples)) if n_avail > 1 else 0
    kinds[:n_dom] = 1
    kinds[n_dom : n_dom + n_sparse] = 2
    rng.shuffle(kinds)

    props = np.zeros((n_samples, n_types))
    base = rng.dirichlet(np.full(n_avail, dirichlet_alpha), size=n_samples)
    props[:, avail_idx] = base

    dom = np.flatnonzero(kinds == 1)
    if dom.size and n_avail > 1:
        which = rng.integers(0, n_avail, size=dom.size)
        share = rng.uniform(0.5, 0.95, size=dom.size)
        rest = base[dom].copy()
        rest[np.arange(dom.size), which] = 0.0
        rest /= np.maximum(rest.sum(1, keepdims=True), 1e-12)
        mixed = rest * (1.0 - share)[:, None]
        mixed[np.arange(dom.size), which] = share
        props[np.ix_(dom, avail_idx)] = mixed

    sparse_rows = np.flatnonzero(kinds == 2)
    if sparse_rows.size:
        n_present = rng.integers(1, n_avail, size=sparse_rows.size)  # 1 .. n_avail-1 types present
        order = np.argsort(rng.random((sparse_rows.size, n_avail)), axis=1)
        keep = np.zeros((sparse_rows.size, n_avail), dtype=bool)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_avail)[None, :].repeat(sparse_rows.size, 0), axis=1)
        keep = rank < n_present[:, None]
        sub = base[sparse_rows] * keep
        sub /= sub.sum(1, keepdims=True)
        props[np.ix_(sparse_rows, avail_idx)] = sub
    return props, kinds


def _apply_group_share(rng: np.random.Generator, props: np.ndarray, types: Sequence[str], available: np.ndarray,
                       spec: dict) -> np.ndarray:
    """Set the total share of a group of cell types per sample (see ``simulate``'s ``group_share``)."""
    unknown_keys = set(spec) - {"cell_types", "fraction", "range", "other_range"}
    group = [str(t) for t in spec.get("cell_types", [])]
    lo, hi = (float(v) for v in spec.get("range", (0.0, 1.0)))
    olo, ohi = (float(v) for v in spec.get("other_range", (0.0, 0.0)))
    fraction = float(spec.get("fraction", 0.5))
    missing = [t for t in group if t not in types]
    if unknown_keys or not group or missing or not (0 <= lo <= hi < 1 and 0 <= olo <= ohi < 1 and 0 <= fraction <= 1):
        raise BlueInputError(
            "group_share must be {'cell_types': [names among the cell types], 'fraction': f in [0, 1], 'range': "
            f"[lo, hi], 'other_range': [lo, hi]}} with 0 <= lo <= hi < 1; got {spec!r}"
            + (f" (unknown cell types {missing})" if missing else "") + ".")
    in_group = np.array([t in group for t in types]) & available
    rest = ~in_group & available
    if not in_group.any() or not rest.any():
        return props
    n = props.shape[0]
    whole = rng.random(n) < fraction
    share = np.where(whole, rng.uniform(lo, hi, n), rng.uniform(olo, ohi, n))
    split = rng.dirichlet(np.ones(int(in_group.sum())), size=n)
    others = props[:, rest]
    total = others.sum(axis=1, keepdims=True)
    others = np.where(total > 0, others / np.maximum(total, 1e-12), 1.0 / rest.sum())
    out = np.zeros_like(props)
    out[:, rest] = others * (1.0 - share)[:, None]
    out[:, in_group] = split * share[:, None]
    return out


def profile_cells(
    profiles: pd.DataFrame,
    *,
    genes: Sequence[str],
    library_sizes: np.ndarray,
    n_cells: int = 300,
    n_donors: int = 6,
    donor_sd: float = 0.3,
    seed: int = 0,
) -> ad.AnnData:
    """Synthetic cells of cell types known only from a bulk profile (e.g. sorted granulocytes).

    Each profile is restricted to ``genes`` and renormalised; ``n_donors`` donor versions multiply it by an
    independent log-normal factor per gene (SD ``donor_sd``, natural log) -- a stand-in for the donor variation
    an averaged profile lacks; each cell belongs to one donor version and draws its counts as a multinomial of
    a library size resampled from ``library_sizes`` (the single-cell reference's), so its sampling noise is that
    of a real cell of that depth. A gene absent from the profile is 0 in every synthetic cell.

    Parameters
    ----------
    profiles
        Genes x cell types, any linear unit (TPM, NX); NaN = not measured (0).
    genes
        Gene space of the synthetic cells (the single-cell reference's ``var_names``).
    library_sizes
        ``(n,)`` total counts of reference cells to resample from.
    n_cells
        Synthetic cells per cell type.
    n_donors, donor_sd
        Donor versions of each profile and the SD of their per-gene log-normal factor.
    seed
        Random seed (same seed, same cells).

    Returns
    -------
    anndata.AnnData
        ``(n_cells * K, len(genes))`` CSR float32 counts; ``obs['cell_type']``, ``obs['profile_donor']``
        (``"<type>:<d>"``), ``obs['synthetic'] = True``.
    """
    if not isinstance(profiles, pd.DataFrame) or profiles.shape[1] == 0:
        raise BlueInputError("profiles must be a genes x cell types DataFrame with at least one column.")
    sizes = np.asarray(library_sizes, dtype=float)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if sizes.size == 0 or n_cells < 1 or n_donors < 1 or donor_sd < 0:
        raise BlueInputError("profile_cells needs positive library sizes, n_cells >= 1, n_donors >= 1, donor_sd >= 0.")
    frame = profiles.apply(pd.to_numeric, errors="coerce").reindex([str(g) for g in genes]).fillna(0.0)
    if (frame.to_numpy() < 0).any():
        raise BlueInputError("profiles must be non-negative (a linear unit such as TPM or NX, not log values).")
    rng = np.random.default_rng(seed)
    blocks, labels, donors = [], [], []
    for cell_type in frame.columns:
        base = frame[cell_type].to_numpy(dtype=float)
        if base.sum() <= 0:
            raise BlueInputError(f"profile {cell_type!r} has no expression over the reference's genes.")
        factors = rng.lognormal(0.0, donor_sd, size=(n_donors, base.size))
        versions = base[None, :] * factors
        versions /= versions.sum(axis=1, keepdims=True)
        which = rng.integers(0, n_donors, size=n_cells)
        depth = rng.choice(sizes, size=n_cells).round().astype(np.int64)
        counts = np.vstack([rng.multinomial(depth[i], versions[which[i]]) for i in range(n_cells)])
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
        labels += [str(cell_type)] * n_cells
        donors += [f"{cell_type}:{d}" for d in which]
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels), "profile_donor": donors, "synthetic": True},
                       index=[f"synthetic:{t}:{i}" for t, i in zip(labels, range(len(labels)))])
    return ad.AnnData(X=sp.vstack(blocks).tocsr(), obs=obs, var=pd.DataFrame(index=pd.Index([str(g) for g in genes])))


def _cells_per_type(rng: np.random.Generator, props: np.ndarray, cells_per_sample: int) -> np.ndarray:
    """Multinomial number of cells of each type in each sample, ``(n_samples, K)`` int64."""
    props = np.clip(props, 0, None)
    props = props / props.sum(1, keepdims=True)
    return rng.multinomial(cells_per_sample, props).astype(np.int64)


def simulate(
    reference: ad.AnnData,
    n_samples: int,
    *,
    cells_per_sample: int = 500,
    output_genes: Sequence[str] | None = None,
    cell_types: Sequence[str] | None = None,
    dirichlet_alpha: float = 1.0,
    dominant_fraction: float = 0.2,
    sparse_fraction: float = 0.3,
    gene_noise_sd: float = 0.0,
    sample_noise_sd: float = 0.0,
    noise_batch_size: int = 100,
    state_key: str | None = None,
    n_states: int = 0,
    state_alpha: float = 0.5,
    single_state_fraction: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
    type_gene_factors: np.ndarray | None = None,
    group_share: dict | None = None,
    rna_content: Mapping[str, float] | str | None = None,
) -> PseudoBulk:
    """Simulate pseudo-bulk samples from a labelled single-cell reference.

    Parameters
    ----------
    reference
        Cells x genes AnnData, ``X`` raw counts (CSR), ``obs['cell_type']`` labels.
    n_samples
        Number of pseudo-bulk samples ``n``.
    cells_per_sample
        Cells drawn (with replacement) per sample.
    output_genes
        Genes of the per-cell-type profiles (default: all reference genes). Must be reference genes.
    cell_types
        Cell types and their order (default: sorted labels of the reference). Types not present in
        the reference get proportion 0 in every sample (used for validation splits).
    dirichlet_alpha
        Concentration of the symmetric Dirichlet for proportions.
    dominant_fraction
        Fraction of samples dominated by one cell type (50-95 % of the cells).
    sparse_fraction
        Fraction of samples in which a random subset of cell types is absent.
    gene_noise_sd
        Platform-shift knob: SD (natural log) of a multiplicative log-normal factor per gene, shared by
        ``noise_batch_size`` consecutive samples; mimics the gene-wise bias between single-cell and bulk
        protocols. Applied to ``bulk`` only (targets stay on the single-cell scale).
    sample_noise_sd
        SD (natural log) of an independent multiplicative log-normal factor per gene and sample.
    noise_batch_size
        Samples sharing one draw of the ``gene_noise_sd`` factors.
    state_key, n_states, state_alpha, single_state_fraction
        **State-varying simulation** (off by default). Within each cell type, cells are grouped into
        states -- the values of ``obs[state_key]`` (donors, conditions), or, with ``n_states > 0`` and no
        ``state_key``, ``n_states`` sub-clusters of that type's cells (k-means on the first 10 principal
        components of log1p(CP10k) over its 1,000 most variable genes). Each pseudo-bulk draws each type's
        cells with its own Dirichlet(``state_alpha``) weights over that type's states, so that a type's
        profile differs between pseudo-bulks as it does between real samples (small ``state_alpha``: one
        state dominates). With ``state_key``, a ``single_state_fraction`` of the pseudo-bulks take every
        type from one state value (one donor or one condition) where the type has cells of it. Targets
        (``profiles``) are always the sample's own type means.
    seed
        Seed of the random generator; the same seed gives the same output.
    progress
        Optional callback ``progress(fraction, message)``.
    type_gene_factors
        ``(K, G)`` multiplicative factors (cell types in ``cell_types`` order x reference genes) applied to
        each cell type's contribution to ``bulk`` (platform calibration: how a type's genes read on bulk
        RNA-seq relative to single cells). ``profiles`` (the GEP targets) are not changed. Default: none.
    group_share
        ``{"cell_types": [...], "fraction": f, "range": [lo, hi], "other_range": [lo, hi]}``: in a fraction ``f``
        of the samples the listed types together take a share drawn uniformly from ``range`` (split among them
        by a flat Dirichlet), in the others a share from ``other_range``; the remaining types are rescaled to
        the rest. Default: none (all types drawn alike).
    rna_content
        Per-type mRNA content per cell: ``"published"`` (the shipped table of measurements,
        :func:`rna_content_factors`; types without a measurement get EPIC's default), ``"published-measured"``
        (the same, but types without a measurement keep the counts per cell the reference measured for them,
        rescaled like the measured types on average) or ``{cell type: relative mRNA per cell}``. Each drawn cell's counts are
        rescaled so that a type's mean counts per cell in ``bulk`` are proportional to its content (the
        reference's own per-type library sizes are divided out); ``proportions`` stay cell fractions and
        ``profiles`` are unchanged. Default: none (cells carry the counts the reference measured).

    Returns
    -------
    PseudoBulk
        ``bulk (n, G)``, ``proportions (n, K)``, ``profiles (n, K, G_out)``.
    """
    X = check_reference(reference)
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise BlueInputError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if cells_per_sample < 1:
        raise BlueInputError(f"cells_per_sample must be >= 1, got {cells_per_sample!r}.")
    if not 0 <= dominant_fraction <= 1 or not 0 <= sparse_fraction <= 1 or dominant_fraction + sparse_fraction > 1:
        raise BlueInputError(
            "dominant_fraction and sparse_fraction must lie in [0, 1] and sum to at most 1 "
            f"(got {dominant_fraction}, {sparse_fraction})."
        )
    if dirichlet_alpha <= 0:
        raise BlueInputError(f"dirichlet_alpha must be > 0, got {dirichlet_alpha}.")
    if gene_noise_sd < 0 or sample_noise_sd < 0 or noise_batch_size < 1:
        raise BlueInputError("gene_noise_sd and sample_noise_sd must be >= 0 and noise_batch_size >= 1.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    genes = [str(g) for g in reference.var_names]
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    types = list(cell_types) if cell_types is not None else cell_types_of(reference)
    unknown = sorted(set(labels) - set(types))
    if unknown:
        raise BlueInputError(
            f"reference cell types {unknown[:5]} are not in cell_types; include them or drop those cells."
        )
    if output_genes is None:
        out_idx = np.arange(len(genes))
        out_genes = genes
    else:
        position = {g: i for i, g in enumerate(genes)}
        missing = [g for g in output_genes if g not in position]
        if missing:
            raise BlueInputError(
                f"{len(missing)} output genes are not in the reference (e.g. {missing[:3]}); "
                "choose output genes among reference.var_names."
            )
        out_idx = np.array([position[g] for g in output_genes], dtype=np.int64)
        out_genes = [str(g) for g in output_genes]

    n_types = len(types)
    if type_gene_factors is not None:
        type_gene_factors = np.asarray(type_gene_factors, dtype=np.float32)
        if type_gene_factors.shape != (n_types, len(genes)) or not np.all(np.isfinite(type_gene_factors)) \
                or (type_gene_factors < 0).any():
            raise BlueInputError(
                f"type_gene_factors must be a non-negative finite ({n_types}, {len(genes)}) array (cell types x "
                f"reference genes), got shape {type_gene_factors.shape}."
            )
    type_index = {t: k for k, t in enumerate(types)}
    codes = np.array([type_index[label] for label in labels], dtype=np.int64)
    members = [np.flatnonzero(codes == k) for k in range(n_types)]
    sizes = np.array([m.size for m in members])
    content_scale = None
    if rna_content is not None:
        content = rna_content_factors(types, rna_content)["values"]
        library = np.asarray(X.sum(axis=1)).ravel()
        mean_library = np.array([library[m].mean() if m.size else 1.0 for m in members])
        given = np.array([content[t] is not None for t in types]) & (sizes > 0)
        if not given.any():
            raise BlueInputError("rna_content has no measurement for any cell type of this reference.")
        content_scale = np.ones(n_types)
        content_scale[given] = np.array([content[t] for t, g in zip(types, given) if g]) / np.maximum(
            mean_library[given], 1e-12)
        content_scale[~given] = content_scale[given].mean()  # unmeasured: the reference's own counts per cell
        content_scale = (content_scale / content_scale[sizes > 0].mean()).astype(np.float32)
    available = sizes > 0
    if not available.any():
        raise BlueInputError("the reference has no cells of the requested cell types.")
    state_mode = bool(state_key) or n_states > 0
    if state_mode:
        if state_alpha <= 0 or not 0 <= single_state_fraction <= 1:
            raise BlueInputError("state_alpha must be > 0 and single_state_fraction in [0, 1].")
        if state_key and state_key not in reference.obs:
            raise BlueInputError(f"state_key {state_key!r} is not an obs column; columns: {list(reference.obs.columns)[:10]}.")
        members, state_blocks, state_values = _state_blocks(reference, X, members, state_key, n_states, seed)
    X_by_type = [X[m] if m.size else None for m in members]
    X_out_by_type = [x[:, out_idx] if x is not None else None for x in X_by_type]

    props, _ = _draw_proportions(
        rng,
        int(n_samples),
        available,
        dirichlet_alpha=dirichlet_alpha,
        dominant_fraction=dominant_fraction,
        sparse_fraction=sparse_fraction,
    )
    if group_share:
        props = _apply_group_share(np.random.default_rng([seed, 7]), props, types, available, group_share)
    counts = _cells_per_type(rng, props, cells_per_sample)

    n = int(n_samples)
    if state_mode:
        weights, single = _state_weights(rng, n, state_blocks, state_values, state_alpha, single_state_fraction)
    bulk = np.zeros((n, len(genes)), dtype=np.float32)
    profiles = np.zeros((n, n_types, len(out_genes)), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = stop - start
        for k in range(n_types):
            if not available[k]:
                continue
            per_sample = counts[start:stop, k]
            total = int(per_sample.sum())
            if total == 0:
                continue
            sample_of_draw = np.repeat(np.arange(rows), per_sample)
            if state_mode:
                cell_of_draw = _draw_in_states(rng, weights[k][start:stop], sample_of_draw, state_blocks[k])
            else:
                cell_of_draw = rng.integers(0, sizes[k], size=total)
            draws = sp.csr_matrix(
                (np.ones(total, dtype=np.float32), (sample_of_draw, cell_of_draw)), shape=(rows, sizes[k])
            )
            draws.sum_duplicates()
            contribution = (draws @ X_by_type[k]).toarray()
            if type_gene_factors is not None:
                contribution *= type_gene_factors[k]
            if content_scale is not None:
                contribution *= content_scale[k]
            bulk[start:stop] += contribution
            profiles[start:stop, k, :] = (draws @ X_out_by_type[k]).toarray()
        if progress is not None:
            progress(stop / n, f"simulated {stop:,} of {n:,} pseudo-bulks")

    library = profiles.sum(axis=2, keepdims=True, dtype=np.float64)
    scale = np.divide(1e6, library, out=np.zeros_like(library), where=library > 0).astype(np.float32)
    profiles *= scale  # in place: CPM over output genes, 0 for absent types

    if gene_noise_sd > 0 or sample_noise_sd > 0:
        noise_rng = np.random.default_rng([seed, 1])
        log_factor = np.zeros_like(bulk)
        if gene_noise_sd > 0:
            n_batches = -(-n // noise_batch_size)
            batch_factor = noise_rng.normal(0.0, gene_noise_sd, size=(n_batches, len(genes))).astype(np.float32)
            log_factor += np.repeat(batch_factor, noise_batch_size, axis=0)[:n]
        if sample_noise_sd > 0:
            log_factor += noise_rng.normal(0.0, sample_noise_sd, size=bulk.shape).astype(np.float32)
        bulk *= np.exp(log_factor)

    index = pd.Index([f"pseudobulk_{i}" for i in range(n)], name="sample")
    fractions = pd.DataFrame(counts / float(cells_per_sample), index=index, columns=types)
    logger.info("simulated %d pseudo-bulks of %d cells in %.1f s", n, cells_per_sample, time.perf_counter() - t0)
    return PseudoBulk(
        bulk=bulk, proportions=fractions, profiles=profiles, genes=genes, output_genes=out_genes, cell_types=types
    )


def rna_content_factors(cell_types: Sequence[str], rna_content: Mapping[str, float] | str = "published"
                        ) -> dict[str, Any]:
    """Relative mRNA content per cell of each cell type, from the shipped table or a mapping.

    ``"published"`` reads ``blue_core/data/rna_content.csv``: EPIC's measured mRNA per cell of sorted blood
    cells (Racle et al. 2017, ``mRNA_cell_default``: B 0.40, T 0.40, NK 0.44, monocytes 1.42, neutrophils
    0.13); a type without its own row gets EPIC's default (0.40). ``"published-measured"``: the same, but a
    type without its own row gets ``None`` (``simulate`` then keeps the reference's own counts for it). Names are matched exactly, then by prefix
    (``"CD4 T naive"`` -> ``"CD4 T"``, ``"Monocyte classical"`` -> ``"Monocyte"``).

    Returns
    -------
    dict
        ``{"values": {type: content}, "measured": {type: source row or "default"}, "citation": str}``.

    Raises
    ------
    BlueInputError
        An unknown table name, or a mapping without a positive value for every type.
    """
    from ..io.resources import package_data

    if isinstance(rna_content, str):
        if rna_content not in ("published", "published-measured"):
            raise BlueInputError("rna_content must be 'published', 'published-measured' or a {cell type: content} "
                                 f"table, got {rna_content!r}.")
        with package_data("rna_content.csv").open("r", encoding="utf-8") as handle:
            table = pd.read_csv(handle).set_index("cell_type")
        rows = [r for r in table.index if r != "default"]
        values, measured = {}, {}
        for t in cell_types:
            match = t if t in rows else next((r for r in sorted(rows, key=len, reverse=True) if t.startswith(r)), None)
            if match is None and rna_content == "published-measured":
                values[t], measured[t] = None, "not measured: the reference's own counts per cell"
                continue
            values[t] = float(table.loc[match or "default", "mrna_per_cell"])
            measured[t] = str(table.loc[match, "measured_as"]) if match else "default (no measurement)"
        return dict(values=values, measured=measured, citation=str(table.loc["default", "source"]).split(",")[0])
    values = {str(k): float(v) for k, v in dict(rna_content).items()}
    missing = [t for t in cell_types if not values.get(t, 0) > 0]
    if missing:
        raise BlueInputError(f"rna_content needs a positive value for every cell type; missing or not positive: "
                             f"{missing[:5]}.")
    return dict(values={t: values[t] for t in cell_types}, measured={t: "given" for t in cell_types}, citation="given")


def _state_blocks(
    reference: ad.AnnData, X: sp.csr_matrix, members: list[np.ndarray], state_key: str | None, n_states: int,
    seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per type: its cells reordered by state, the state block boundaries and the state value of each block."""
    labels_all = None if not state_key else reference.obs[state_key].astype(str).to_numpy()
    new_members, blocks, values = [], [], []
    for k, cells in enumerate(members):
        if cells.size == 0:
            new_members.append(cells)
            blocks.append(np.array([0]))
            values.append(np.array([], dtype=object))
            continue
        if labels_all is not None:
            states = labels_all[cells]
        else:
            states = _sub_clusters(X[cells], n_states, seed + k).astype(str)
        order = np.argsort(states, kind="stable")
        cells, states = cells[order], states[order]
        uniq, starts = np.unique(states, return_index=True)
        new_members.append(cells)
        blocks.append(np.append(starts, cells.size))
        values.append(uniq)
    return new_members, blocks, values


def _sub_clusters(X: sp.csr_matrix, n_states: int, seed: int) -> np.ndarray:
    """k-means labels of cells on 10 PCs of log1p(CP10k) over their 1,000 most variable genes."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n = X.shape[0]
    k = min(int(n_states), max(1, n // 10))
    if k < 2:
        return np.zeros(n, dtype=int)
    library = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(1e4, library, out=np.zeros_like(library, dtype=np.float64), where=library > 0)
    Y = (sp.diags(scale) @ X).tocsr()
    Y.data = np.log1p(Y.data)
    mean = np.asarray(Y.mean(axis=0)).ravel()
    var = np.asarray(Y.multiply(Y).mean(axis=0)).ravel() - mean**2
    top = np.argsort(var)[::-1][: min(1000, Y.shape[1])]
    dense = Y[:, top].toarray()
    pcs = PCA(n_components=min(10, dense.shape[1], n - 1), random_state=seed).fit_transform(dense)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(pcs)


def _state_weights(
    rng: np.random.Generator, n: int, blocks: list[np.ndarray], values: list[np.ndarray], alpha: float,
    single_fraction: float,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per type, ``(n, S_k)`` Dirichlet weights over its states; some samples restricted to one shared state."""
    weights = [rng.dirichlet(np.full(len(b) - 1, alpha), size=n) if len(b) > 2 else np.ones((n, max(len(b) - 1, 1)))
               for b in blocks]
    single = np.zeros(n, dtype=bool)
    shared = sorted(set().union(*(set(v) for v in values))) if values else []
    if single_fraction > 0 and len(shared) > 1:
        single = rng.random(n) < single_fraction
        choice = rng.integers(0, len(shared), size=n)
        for k, vals in enumerate(values):
            if len(vals) < 2:
                continue
            position = {v: j for j, v in enumerate(vals)}
            for i in np.flatnonzero(single):
                j = position.get(shared[choice[i]])
                if j is not None:  # the type has cells in that state: take them only
                    weights[k][i] = 0.0
                    weights[k][i, j] = 1.0
    return weights, single


def _draw_in_states(rng: np.random.Generator, weights: np.ndarray, sample_of_draw: np.ndarray,
                    blocks: np.ndarray) -> np.ndarray:
    """Cell index (within the type's reordered cells) of each draw: a state from the sample's weights,
    then a cell uniformly within that state's block."""
    cum = np.cumsum(weights, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(sample_of_draw.size)
    state = (u[:, None] > cum[sample_of_draw]).sum(axis=1)
    lo, hi = blocks[state], blocks[state + 1]
    return lo + np.floor(rng.random(sample_of_draw.size) * (hi - lo)).astype(np.int64)


def _stratum_sizes(fractions: np.ndarray, n: int) -> np.ndarray:
    """Cells of one stratum per split: rounded shares, at least one per non-empty split when possible."""
    sizes = np.floor(fractions * n).astype(int)
    remainder = fractions * n - sizes
    for s in np.argsort(-remainder)[: n - sizes.sum()]:
        sizes[s] += 1
    wanted = np.flatnonzero(fractions > 0)
    if n >= wanted.size:
        for s in wanted:
            if sizes[s] == 0:
                sizes[int(np.argmax(sizes))] -= 1
                sizes[s] = 1
    return sizes


def split_reference(
    reference: ad.AnnData,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Split a reference into disjoint train / validation / test cells.

    When ``obs['donor']`` holds at least three donors, whole donors are assigned to splits (greedily,
    by cell count, so each split with a non-zero fraction gets at least one donor); otherwise cells are
    split within each cell type (stratified), so every split sees every cell type with enough cells.

    Parameters
    ----------
    reference
        Cells x genes AnnData with ``obs['cell_type']`` (optional ``obs['donor']``).
    fractions
        Target fractions of cells for (train, validation, test); must sum to 1. A fraction may be 0
        (that split is then empty).
    seed
        Random seed.

    Returns
    -------
    tuple of AnnData
        ``(train, validation, test)``, copies; cells never appear in two splits.
    """
    check_reference(reference)
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1) > 1e-6:
        raise BlueInputError(f"fractions must be three non-negative numbers summing to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    assignment = np.full(reference.n_obs, -1, dtype=np.int64)
    donors = reference.obs["donor"].astype(str).to_numpy() if "donor" in reference.obs else None
    if donors is not None and np.unique(donors).size >= 3:
        unique, size = np.unique(donors, return_counts=True)
        order = rng.permutation(unique.size)
        targets = fr * reference.n_obs
        filled = np.zeros(3)
        wanted = [s for s in range(3) if fr[s] > 0]
        for rank, d in enumerate(order):
            empty = [s for s in wanted if filled[s] == 0]
            if empty and len(order) - rank <= len(empty):
                split = empty[0]
            else:
                split = max(wanted, key=lambda s: targets[s] - filled[s])
            filled[split] += size[d]
            assignment[donors == unique[d]] = split
        logger.info("split reference by donor: %s cells", filled.astype(int).tolist())
    else:
        labels = reference.obs["cell_type"].astype(str).to_numpy()
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            n_split = _stratum_sizes(fr, idx.size)
            bounds = np.cumsum(n_split)
            starts = np.concatenate([[0], bounds[:-1]])
            for s in range(3):
                assignment[idx[starts[s] : bounds[s]]] = s
    return tuple(reference[assignment == s].copy() for s in range(3))  # type: ignore[return-value]
