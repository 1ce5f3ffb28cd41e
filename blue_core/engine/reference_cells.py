"""Single-cell references as simulation input: the checks a reference passes, its cell types, train / validation
/ test splits by donor, synthetic cells of types known only from bulk, and each type's mRNA content per cell.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import BlueInputError

__all__ = ["check_reference", "cell_types_of", "split_reference", "validation_split", "cell_digest", "profile_cells",
           "rna_content_factors"]

logger = logging.getLogger(__name__)


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


def validation_split(reference: ad.AnnData, *, fraction: float, seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """The training and validation cells of a reference: the one split ``train_model`` trains on and
    ``build_ensemble`` calibrates on (:func:`split_reference` with no test part; by donor when donors are given).

    Returns
    -------
    tuple of AnnData
        ``(training cells, validation cells)``.
    """
    train, val, _ = split_reference(reference, fractions=(1.0 - fraction, fraction, 0.0), seed=seed)
    return train, val


def cell_digest(cells: Sequence[str]) -> str:
    """SHA-256 of a set of cell names (order-free): what a card records of its validation cells, so that a later
    step can prove it holds out the same cells.

    Returns
    -------
    str
        64 hex digits.
    """
    import hashlib

    return hashlib.sha256("\n".join(sorted(map(str, cells))).encode("utf-8")).hexdigest()
