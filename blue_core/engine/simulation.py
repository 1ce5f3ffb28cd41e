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
lost by droplet protocols) enter as synthetic cells drawn from a bulk profile
(:func:`~blue_core.engine.reference_cells.profile_cells`).

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
from .reference_cells import cell_types_of, check_reference, rna_content_factors

__all__ = ["PseudoBulk", "simulate"]

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
        SD (natural log) of a log-normal factor per gene shared by ``noise_batch_size`` consecutive samples
        (a platform shift between single-cell and bulk protocols); on ``bulk`` only.
    sample_noise_sd
        SD (natural log) of an independent multiplicative log-normal factor per gene and sample.
    noise_batch_size
        Samples sharing one draw of the ``gene_noise_sd`` factors.
    state_key, n_states, state_alpha, single_state_fraction
        **State-varying simulation** (off by default). Within each type, cells are grouped into states: the
        values of ``obs[state_key]`` (donors, conditions) or ``n_states`` sub-clusters (k-means on 10 PCs of
        log1p(CP10k), 1,000 most variable genes). Each pseudo-bulk draws each type's cells with its own
        Dirichlet(``state_alpha``) weights over its states, so a type's profile varies between pseudo-bulks as
        between real samples; with ``state_key``, a ``single_state_fraction`` takes every type from one state
        value. Targets (``profiles``) are always the sample's own type means.
    seed
        Seed of the random generator; the same seed gives the same output.
    progress
        Optional callback ``progress(fraction, message)``.
    type_gene_factors
        ``(K, G)`` factors (``cell_types`` x reference genes) on each type's contribution to ``bulk`` (platform
        calibration: how a type's genes read on bulk relative to single cells); ``profiles`` unchanged.
    group_share
        ``{"cell_types": [...], "fraction": f, "range": [lo, hi], "other_range": [lo, hi]}``: in a fraction ``f``
        of the samples the listed types take a share drawn uniformly from ``range`` (split by a flat Dirichlet),
        in the others from ``other_range``; the other types are rescaled to the rest. Default: none.
    rna_content
        Per-type mRNA content per cell: ``"published"`` (the shipped measurements,
        :func:`~blue_core.engine.reference_cells.rna_content_factors`; unmeasured types get EPIC's default),
        ``"published-measured"`` (unmeasured types keep the reference's own counts per cell) or ``{type: relative
        mRNA}``. Each drawn cell is rescaled so that a type's mean counts per cell in ``bulk`` follow its content;
        ``proportions`` stay cell fractions, ``profiles`` are unchanged. Default: none.

    Returns
    -------
    PseudoBulk
        ``bulk (n, G)``, ``proportions (n, K)``, ``profiles (n, K, G_out)``.
    """
    X = check_reference(reference)
    _check_options(n_samples, cells_per_sample=cells_per_sample, dirichlet_alpha=dirichlet_alpha,
                   dominant_fraction=dominant_fraction, sparse_fraction=sparse_fraction, gene_noise_sd=gene_noise_sd,
                   sample_noise_sd=sample_noise_sd, noise_batch_size=noise_batch_size)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    genes, types, out_idx, out_genes, members = _layout(reference, cell_types, output_genes)
    type_gene_factors = _check_factors(type_gene_factors, len(types), len(genes))
    sizes = np.array([m.size for m in members])
    content_scale = _content_scale(X, types, members, sizes, rna_content) if rna_content is not None else None
    available = sizes > 0
    if not available.any():
        raise BlueInputError("the reference has no cells of the requested cell types.")
    state_blocks = state_values = weights = None
    if bool(state_key) or n_states > 0:
        members, state_blocks, state_values = _state_blocks(reference, X, members, state_key, n_states, seed,
                                                            state_alpha=state_alpha,
                                                            single_state_fraction=single_state_fraction)

    props, _ = _draw_proportions(rng, int(n_samples), available, dirichlet_alpha=dirichlet_alpha,
                                 dominant_fraction=dominant_fraction, sparse_fraction=sparse_fraction)
    if group_share:
        props = _apply_group_share(np.random.default_rng([seed, 7]), props, types, available, group_share)
    counts = _cells_per_type(rng, props, cells_per_sample)
    n = int(n_samples)
    if state_blocks is not None:
        weights, _ = _state_weights(rng, n, state_blocks, state_values, state_alpha, single_state_fraction)
    bulk, profiles = _mix(rng, X, members, counts, out_idx, n_genes=len(genes), state_blocks=state_blocks,
                          weights=weights, type_gene_factors=type_gene_factors, content_scale=content_scale,
                          progress=progress)
    _add_platform_noise(bulk, seed, gene_noise_sd=gene_noise_sd, sample_noise_sd=sample_noise_sd,
                        noise_batch_size=noise_batch_size)

    index = pd.Index([f"pseudobulk_{i}" for i in range(n)], name="sample")
    fractions = pd.DataFrame(counts / float(cells_per_sample), index=index, columns=types)
    logger.info("simulated %d pseudo-bulks of %d cells in %.1f s", n, cells_per_sample, time.perf_counter() - t0)
    return PseudoBulk(
        bulk=bulk, proportions=fractions, profiles=profiles, genes=genes, output_genes=out_genes, cell_types=types
    )


def _check_options(n_samples: Any, *, cells_per_sample: int, dirichlet_alpha: float, dominant_fraction: float,
                   sparse_fraction: float, gene_noise_sd: float, sample_noise_sd: float, noise_batch_size: int) -> None:
    """Refuse ``simulate`` options out of range, each with the range it must lie in."""
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


def _layout(reference: ad.AnnData, cell_types: Sequence[str] | None, output_genes: Sequence[str] | None
            ) -> tuple[list[str], list[str], np.ndarray, list[str], list[np.ndarray]]:
    """``(genes, cell types, output-gene positions, output genes, each type's cell rows)`` of a simulation; every
    reference label must be one of ``cell_types`` and every output gene a reference gene."""
    genes = [str(g) for g in reference.var_names]
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    types = list(cell_types) if cell_types is not None else cell_types_of(reference)
    unknown = sorted(set(labels) - set(types))
    if unknown:
        raise BlueInputError(
            f"reference cell types {unknown[:5]} are not in cell_types; include them or drop those cells."
        )
    type_index = {t: k for k, t in enumerate(types)}
    codes = np.array([type_index[label] for label in labels], dtype=np.int64)
    members = [np.flatnonzero(codes == k) for k in range(len(types))]
    if output_genes is None:
        return genes, types, np.arange(len(genes)), genes, members
    position = {g: i for i, g in enumerate(genes)}
    missing = [g for g in output_genes if g not in position]
    if missing:
        raise BlueInputError(
            f"{len(missing)} output genes are not in the reference (e.g. {missing[:3]}); "
            "choose output genes among reference.var_names."
        )
    out_idx = np.array([position[g] for g in output_genes], dtype=np.int64)
    return genes, types, out_idx, [str(g) for g in output_genes], members


def _check_factors(type_gene_factors: np.ndarray | None, n_types: int, n_genes: int) -> np.ndarray | None:
    """``type_gene_factors`` as float32 ``(K, G)`` (None stays None), refused unless non-negative and finite."""
    if type_gene_factors is None:
        return None
    factors = np.asarray(type_gene_factors, dtype=np.float32)
    if factors.shape != (n_types, n_genes) or not np.all(np.isfinite(factors)) or (factors < 0).any():
        raise BlueInputError(
            f"type_gene_factors must be a non-negative finite ({n_types}, {n_genes}) array (cell types x "
            f"reference genes), got shape {factors.shape}."
        )
    return factors


def _content_scale(X: sp.csr_matrix, types: list[str], members: list[np.ndarray], sizes: np.ndarray,
                   rna_content: Mapping[str, float] | str) -> np.ndarray:
    """``(K,)`` float32 factor per type on its cells' counts: counts per cell follow the type's mRNA content (the
    reference's own mean library per type divided out; unmeasured types keep their own counts per cell)."""
    content = rna_content_factors(types, rna_content)["values"]
    library = np.asarray(X.sum(axis=1)).ravel()
    mean_library = np.array([library[m].mean() if m.size else 1.0 for m in members])
    given = np.array([content[t] is not None for t in types]) & (sizes > 0)
    if not given.any():
        raise BlueInputError("rna_content has no measurement for any cell type of this reference.")
    scale = np.ones(len(types))
    scale[given] = np.array([content[t] for t, g in zip(types, given) if g]) / np.maximum(mean_library[given], 1e-12)
    scale[~given] = scale[given].mean()  # unmeasured: the reference's own counts per cell
    return (scale / scale[sizes > 0].mean()).astype(np.float32)


def _mix(rng: np.random.Generator, X: sp.csr_matrix, members: list[np.ndarray], counts: np.ndarray,
         out_idx: np.ndarray, *, n_genes: int, state_blocks: list | None, weights: list | None,
         type_gene_factors: np.ndarray | None, content_scale: np.ndarray | None, progress: Progress | None
         ) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``counts[i, k]`` cells of type ``k`` into sample ``i`` and sum them: ``bulk (n, G)`` (platform factors
    and RNA content applied) and ``profiles (n, K, G_out)`` in CPM over the output genes (0 for absent types)."""
    n, n_types = counts.shape
    sizes = np.array([m.size for m in members])
    X_by_type = [X[m] if m.size else None for m in members]
    X_out_by_type = [x[:, out_idx] if x is not None else None for x in X_by_type]
    bulk = np.zeros((n, n_genes), dtype=np.float32)
    profiles = np.zeros((n, n_types, len(out_idx)), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = stop - start
        for k in range(n_types):
            if not sizes[k]:
                continue
            per_sample = counts[start:stop, k]
            total = int(per_sample.sum())
            if total == 0:
                continue
            sample_of_draw = np.repeat(np.arange(rows), per_sample)
            if state_blocks is not None:
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
    return bulk, profiles


def _add_platform_noise(bulk: np.ndarray, seed: int, *, gene_noise_sd: float, sample_noise_sd: float,
                        noise_batch_size: int) -> None:
    """Multiply ``bulk`` in place by log-normal factors: per gene shared by batches of samples, and per value."""
    if gene_noise_sd <= 0 and sample_noise_sd <= 0:
        return
    n, n_genes = bulk.shape
    noise_rng = np.random.default_rng([seed, 1])
    log_factor = np.zeros_like(bulk)
    if gene_noise_sd > 0:
        n_batches = -(-n // noise_batch_size)
        batch_factor = noise_rng.normal(0.0, gene_noise_sd, size=(n_batches, n_genes)).astype(np.float32)
        log_factor += np.repeat(batch_factor, noise_batch_size, axis=0)[:n]
    if sample_noise_sd > 0:
        log_factor += noise_rng.normal(0.0, sample_noise_sd, size=bulk.shape).astype(np.float32)
    bulk *= np.exp(log_factor)


def _state_blocks(
    reference: ad.AnnData, X: sp.csr_matrix, members: list[np.ndarray], state_key: str | None, n_states: int,
    seed: int, *, state_alpha: float, single_state_fraction: float,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per type: its cells reordered by state, the state block boundaries and the state value of each block
    (the state options checked first)."""
    if state_alpha <= 0 or not 0 <= single_state_fraction <= 1:
        raise BlueInputError("state_alpha must be > 0 and single_state_fraction in [0, 1].")
    if state_key and state_key not in reference.obs:
        raise BlueInputError(f"state_key {state_key!r} is not an obs column; columns: "
                             f"{list(reference.obs.columns)[:10]}.")
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
