"""Tiny synthetic single-cell references for the engine's unit tests (never used as a real-data result)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def synthetic_reference(
    n_cells: int = 240, n_genes: int = 120, n_types: int = 3, *, donors: int = 0, seed: int = 0
) -> ad.AnnData:
    """Cells x genes Poisson counts; each cell type over-expresses its own block of genes."""
    rng = np.random.default_rng(seed)
    types = np.array([f"type{k}" for k in range(n_types)])
    labels = types[np.arange(n_cells) % n_types]
    base = rng.gamma(2.0, 1.0, size=n_genes)
    rates = np.tile(base, (n_types, 1))
    block = n_genes // (n_types + 1)
    for k in range(n_types):
        rates[k, k * block : (k + 1) * block] *= 8.0
    codes = np.arange(n_cells) % n_types
    counts = rng.poisson(rates[codes] * rng.uniform(0.5, 1.5, size=(n_cells, 1)))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(n_cells)])
    if donors:
        obs["donor"] = [f"donor{i % donors}" for i in range(n_cells)]
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
