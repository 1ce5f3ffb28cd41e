"""Reading a single-cell reference (.h5ad, cells x genes) for simulation and training, with its checks."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import BlueInputError, BlueWarning
from . import genes as _genes
from .source import BulkSource, InputLimits, detect_format, h5ad_matrix_info, load_source
from .units import LOG_MAX

__all__ = ["read_reference_obs", "read_reference"]

logger = logging.getLogger(__name__)


def read_reference_obs(
    source: BulkSource, *, filename: str | None = None, limits: InputLimits | None = None
) -> pd.DataFrame:
    """The cell annotations (``obs``) of an .h5ad reference, read without its expression matrix.

    For picking the cell-type and donor columns before the full (checked) read. The file passes the
    same size checks as :func:`read_reference`.

    Returns
    -------
    DataFrame
        ``(n_cells, n_annotations)``, index = cell names.

    Raises
    ------
    BlueInputError
        Not an h5ad, no or non-numeric expression matrix, too large, or unreadable annotations.
    """
    from anndata.io import read_elem

    from .hdf5 import open_hdf5

    limits = limits or InputLimits.from_env()
    data, name = load_source(source, filename=filename, limits=limits)
    fmt, payload = detect_format(data, name=name, limits=limits)
    if fmt != "h5ad":
        raise BlueInputError(f"{name}: a single-cell reference must be an AnnData .h5ad file (cells x genes).")
    h5ad_matrix_info(payload, name=name, limits=limits)
    try:
        with open_hdf5(payload, name=name) as handle:
            if "obs" not in handle:
                raise BlueInputError(f"{name} has no obs (cell annotations). Add a cell-type column to adata.obs.")
            obs = read_elem(handle["obs"])
    except BlueInputError:
        raise
    except Exception as err:  # h5py / anndata raise many types for malformed files
        raise BlueInputError(
            f"{name}: the cell annotations (obs) could not be read ({type(err).__name__}: {err}). Re-save the "
            "AnnData with anndata (adata.write_h5ad)."
        ) from None
    return pd.DataFrame(obs)


def read_reference(
    source: BulkSource,
    *,
    cell_type_key: str = "cell_type",
    donor_key: str | None = "donor",
    filename: str | None = None,
    min_cells_per_type: int = 10,
    limits: InputLimits | None = None,
) -> "anndata.AnnData":  # noqa: F821
    """Read and check a single-cell reference (.h5ad) for simulation and training.

    Parameters
    ----------
    source
        Path, bytes or binary file-like of an ``.h5ad`` file (cells x genes).
    cell_type_key
        ``obs`` column with the cell-type labels.
    donor_key
        ``obs`` column with donor IDs; optional (ignored when absent or ``None``).
    filename
        Name used in messages when ``source`` is bytes or a file-like.
    min_cells_per_type
        Cell types with fewer cells trigger a :class:`BlueWarning`.
    limits
        Decompression ceiling and memory budget (default :meth:`InputLimits.from_env`).

    Returns
    -------
    anndata.AnnData
        Shape (n_cells, n_genes): ``X`` CSR float32 counts (``layers["counts"]`` is used when present),
        ``var_names`` unique human symbols (duplicates summed), ``obs["cell_type"]`` str categorical,
        ``obs["donor"]`` str when a donor column exists; the other ``obs`` columns are kept as given.
        Cells without a label are removed.

    Raises
    ------
    BlueInputError
        Not an h5ad, missing key (the message lists the obs columns), log-normalised or negative
        values, NaN values, fewer than two cell types, mouse genes.
    """
    import anndata

    limits = limits or InputLimits.from_env()
    data, name = load_source(source, filename=filename, limits=limits)
    fmt, payload = detect_format(data, name=name, limits=limits)
    if fmt != "h5ad":
        raise BlueInputError(f"{name}: a single-cell reference must be an AnnData .h5ad file (cells x genes).")
    _, shape, n_values, dtype = h5ad_matrix_info(payload, name=name, limits=limits)
    # sparse float32 values + int32 indices, a few working copies
    limits.check_memory(4 * 8 * n_values + len(payload), name, f"a {shape[0]:,} x {shape[1]:,} matrix with {n_values:,} values")
    from .hdf5 import read_h5ad

    adata = read_h5ad(payload, name=name)
    if cell_type_key not in adata.obs.columns:
        raise BlueInputError(
            f"{name}: obs has no column {cell_type_key!r}. Available obs columns: {', '.join(map(str, adata.obs.columns)) or '(none)'}. "
            "Pass the column holding the cell-type labels as cell_type_key."
        )
    matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    values = matrix.data
    if values.size and not np.all(np.isfinite(values)):
        raise BlueInputError(f"{name}: X has NaN or infinite values. Provide raw counts without missing values.")
    if values.size and values.min() < 0:
        raise BlueInputError(
            f"{name}: X has negative values (min {values.min():.3g}): it looks scaled/centred. Provide raw counts in X or layers['counts']."
        )
    if values.size and not np.allclose(values, np.round(values), atol=1e-3):
        if values.max() <= LOG_MAX:
            raise BlueInputError(
                f"{name}: X looks log-normalised (non-integer values, max {values.max():.3g}). BLUE builds pseudo-bulk by "
                "summing raw counts; put the raw counts in X or layers['counts'] (e.g. adata.raw or the count matrix)."
            )
        warnings.warn(
            f"{name}: X is not integer (max {values.max():.3g}); it is used as linear expression (e.g. TPM). Raw counts are preferred.",
            BlueWarning,
            stacklevel=2,
        )
    labels = adata.obs[cell_type_key]
    keep = labels.notna().to_numpy() & (labels.astype(str).str.strip() != "").to_numpy()
    if not keep.all():
        warnings.warn(f"{name}: {int((~keep).sum())} cells without a {cell_type_key!r} label were removed.", BlueWarning, stacklevel=2)
    obs = adata.obs.loc[keep].copy()
    obs.index = pd.Index([str(v) for v in adata.obs_names[keep]])
    obs["cell_type"] = pd.Categorical(labels[keep].astype(str).to_numpy())
    if donor_key is not None and donor_key in adata.obs.columns:
        obs["donor"] = adata.obs[donor_key][keep].astype(str).to_numpy()
    n_types = obs["cell_type"].nunique()
    if n_types < 2:
        raise BlueInputError(
            f"{name}: only {n_types} cell type in obs[{cell_type_key!r}]. Deconvolution needs at least 2 labelled cell types; "
            "check cell_type_key (available columns: " + ", ".join(map(str, adata.obs.columns)) + ")."
        )
    counts = obs["cell_type"].value_counts()
    rare = counts[counts < min_cells_per_type]
    if len(rare):
        warnings.warn(
            f"{name}: cell types with fewer than {min_cells_per_type} cells: "
            + ", ".join(f"{k} ({v})" for k, v in rare.items())
            + ". Their profiles will be noisy; consider merging them or adding cells.",
            BlueWarning,
            stacklevel=2,
        )
    ref = anndata.AnnData(X=matrix[keep], obs=obs, var=pd.DataFrame(index=pd.Index([str(v) for v in adata.var_names])))
    ref = _genes.harmonize_var_names(ref, what="reference")
    ref.X = sp.csr_matrix(ref.X, dtype=np.float32)
    from ..engine.qc import check_reference_markers, marker_qc_messages

    for text in marker_qc_messages(check_reference_markers(ref), name=name):
        warnings.warn(text, BlueWarning, stacklevel=2)
    logger.info("reference %s: %d cells x %d genes, %d cell types", name, ref.n_obs, ref.n_vars, n_types)
    return ref
