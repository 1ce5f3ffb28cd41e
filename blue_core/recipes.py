"""Training recipes: the reproducible build step of a pretrained tissue model.

A recipe is a TOML file (``pretrained/<name>/recipe.toml``) that says which real single-cell
references to use, how their labels map to the model's cell-type vocabulary, how genes are chosen,
and the simulation and training settings. ``blue train --recipe FILE`` runs it; the resulting model
card records the recipe, so every pretrained model says how to rebuild it.

Schema::

    name = "pbmc"                       # model name (the folder under pretrained/)
    tissue = "blood"
    title = "Human PBMC"
    description = "..."
    limitations = "..."                 # known limitations from validation, copied to the card
    data_root = "../shared/data"        # optional; relative to the repo root; env BLUE_SHARED_DATA wins

    [[references]]
    name = "pbmc3k"
    path = "pbmc/pbmc3k_clustifyr.h5ad" # relative to data_root
    cell_type_key = "cell_type"
    donor_key = ""                      # optional obs column with donors ("" = none)
    label_map = { "CD14 monocyte" = "Monocyte" }   # source label -> model label ("" drops the cells)
    keep = { malignant = ["normal"] }   # optional: obs column -> allowed values
    citation = "..."; accession = "..."; licence = "..."

    [genes]
    protein_coding_only = true          # restrict to protein-coding genes (GENCODE biotype)
    input_panels = { tcga = "aml/tcga_laml_expr_714genes.csv.gz" }  # optional: cohort gene panels;
                                        # inputs = panel genes, trained with panel dropout
    outputs_include_inputs = false      # add the input genes to the output genes
    n_input_per_cell_type = 50
    n_output_per_cell_type = 200
    n_output_variable = 1000
    max_output_genes = 3000

    [simulation]                        # blue_core.train_model(simulation=...): noise, Dirichlet, sparsity
    [network]                           # blue_core.train_model(network=...): BlueNet widths
    [training]                          # other blue_core.train_model options (n_samples, epochs, seed, ...)

References are combined on their shared genes (inner join); each keeps its own cell labels, mapped
to one vocabulary, and donors are prefixed with the reference name so splits never mix a donor
between training and validation. When any reference lacks donor annotation, the combined reference
has no ``obs['donor']`` and training/validation are split by cell.
"""

from __future__ import annotations

import logging
import os
import warnings
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .exceptions import BlueInputError

__all__ = ["read_recipe", "build_reference", "panel_genes", "train_from_recipe", "train_recipe", "REPO_ROOT"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

Progress = Callable[[float, str], None]


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a recipe TOML file. Returns the parsed dict with ``_path`` added."""
    path = Path(path)
    if not path.is_file():
        raise BlueInputError(f"recipe file {path} does not exist. Pass the path of a recipe.toml, e.g. pretrained/pbmc/recipe.toml.")
    try:
        recipe = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BlueInputError(f"recipe {path} is not valid TOML: {err}. Fix the syntax at that line.") from err
    for key in ("name", "references"):
        if key not in recipe:
            raise BlueInputError(f"recipe {path} has no '{key}' entry; see blue_core/recipes.py for the schema.")
    if not recipe["references"]:
        raise BlueInputError(f"recipe {path} lists no [[references]]; add at least one single-cell reference.")
    recipe["_path"] = str(path)
    return recipe


def data_root(recipe: dict[str, Any]) -> Path:
    """Folder that reference paths are relative to: env ``BLUE_SHARED_DATA``, else the recipe's ``data_root``."""
    env = os.environ.get("BLUE_SHARED_DATA")
    if env:
        return Path(env)
    return (REPO_ROOT / recipe.get("data_root", "../shared/data")).resolve()


def _protein_coding() -> set[str]:
    table = pd.read_csv(Path(__file__).parent / "data" / "genes" / "human_ensembl_to_symbol.tsv.gz", sep="\t")
    return set(table.loc[table["biotype"] == "protein_coding", "symbol"].astype(str))


def _load_one(spec: dict[str, Any], root: Path) -> ad.AnnData:
    path = root / spec["path"]
    if not path.is_file():
        raise BlueInputError(f"reference file {path} not found. Set BLUE_SHARED_DATA to the folder holding shared/data.")
    from .genes import harmonize_var_names  # current HGNC symbols, as read_bulk names a user's genes

    adata = harmonize_var_names(ad.read_h5ad(path))
    key = spec.get("cell_type_key", "cell_type")
    if key not in adata.obs:
        raise BlueInputError(f"{path.name} has no obs column '{key}'; available: {', '.join(map(str, adata.obs.columns))}.")
    keep = np.ones(adata.n_obs, dtype=bool)
    for column, allowed in spec.get("keep", {}).items():
        keep &= adata.obs[column].astype(str).isin([str(a) for a in allowed]).to_numpy()
    labels = adata.obs[key].astype(str)
    label_map = spec.get("label_map", {})
    labels = labels.map(lambda x: label_map.get(x, x))
    for dropped in spec.get("drop", []):
        keep &= (labels != dropped).to_numpy()
    keep &= (labels != "").to_numpy() & labels.notna().to_numpy()
    adata = adata[keep].copy()
    name = spec.get("name", path.stem)
    donor_key = spec.get("donor_key") or ""
    donors = adata.obs[donor_key].astype(str).to_numpy() if donor_key else np.full(adata.n_obs, "")
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    out = ad.AnnData(
        X=sp.csr_matrix(X, dtype=np.float32),
        obs=pd.DataFrame(
            {
                "cell_type": pd.Categorical(labels[keep].to_numpy()),
                "donor": [f"{name}:{d}" for d in donors],
                "reference": name,
            },
            index=[f"{name}:{c}" for c in adata.obs_names],
        ),
        var=pd.DataFrame(index=adata.var_names.astype(str)),
    )
    logger.info("reference %s: %d cells, %d genes, types %s", name, out.n_obs, out.n_vars,
                dict(out.obs["cell_type"].value_counts()))
    return out


def build_reference(recipe: dict[str, Any]) -> ad.AnnData:
    """Load, relabel and combine the recipe's references on their shared genes.

    Returns
    -------
    AnnData
        Cells x genes (CSR float32 counts), ``obs['cell_type']``, ``obs['donor']`` (``reference:donor``),
        ``obs['reference']``.
    """
    root = data_root(recipe)
    parts = [_load_one(spec, root) for spec in recipe["references"]]
    if len(parts) == 1:
        combined = parts[0]
    else:
        combined = ad.concat(parts, join="inner", merge="same")
        combined.obs["cell_type"] = pd.Categorical(combined.obs["cell_type"].astype(str))
    if not all(spec.get("donor_key") for spec in recipe["references"]):
        # A reference without donor annotation cannot be split by donor: split all cells individually.
        del combined.obs["donor"]
    if recipe.get("genes", {}).get("protein_coding_only", False):
        pc = _protein_coding()
        combined = combined[:, [g in pc for g in combined.var_names]].copy()
    if combined.n_vars < 50:
        raise BlueInputError(
            f"the references share only {combined.n_vars} genes; combine references measured on more common genes."
        )
    logger.info("combined reference: %d cells x %d genes", combined.n_obs, combined.n_vars)
    return combined


def panel_genes(recipe: dict[str, Any]) -> dict[str, list[str]]:
    """Gene panels of the recipe's ``input_panels`` bulk files, as ``read_bulk`` names them.

    Each panel is read with :func:`~blue_core.io.read_bulk`, so its gene names are harmonised exactly
    as a user's file of that cohort will be at inference time. Empty dict when the recipe has none.
    """
    from .io import read_bulk  # lazy: only panel recipes need it

    panels = recipe.get("genes", {}).get("input_panels", {})
    root = data_root(recipe)
    out: dict[str, list[str]] = {}
    for name, rel in panels.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = read_bulk(root / rel)
        out[name] = sorted(map(str, bulk.var_names))
        logger.info("input panel %s: %d genes", name, len(out[name]))
    return out


def train_from_recipe(path: str | os.PathLike, *, progress: Progress | None = None):
    """Read a recipe file, build its reference and train a model with its settings (see :func:`train_recipe`)."""
    return train_recipe(read_recipe(path), progress=progress)


def train_recipe(recipe: dict[str, Any], *, progress: Progress | None = None):
    """Build the reference of a parsed recipe (as :func:`read_recipe` returns it) and train a model.

    Benchmarks pass modified copies of a shipped recipe to measure one change at a time.

    Returns
    -------
    BlueModel
        The trained model; its card holds the recipe, the references' provenance and the training time.
    """
    from .features import select_input_genes, select_output_genes
    from .training import train_model

    reference = build_reference(recipe)
    genes_cfg = recipe.get("genes", {})
    panels = panel_genes(recipe)
    if panels:
        # Cohort panels: the inputs are every panel gene the reference detects (a random 714-gene panel
        # holds few markers, so all of its genes are informative input).
        union = set().union(*panels.values())
        detected = np.asarray((reference.X > 0).sum(axis=0)).ravel() >= int(genes_cfg.get("min_cells", 10))
        input_genes = [g for g, ok in zip(map(str, reference.var_names), detected) if ok and g in union]
    else:
        input_genes = select_input_genes(reference, n_per_cell_type=int(genes_cfg.get("n_input_per_cell_type", 50)))
    output_genes = select_output_genes(
        reference,
        n_per_cell_type=int(genes_cfg.get("n_output_per_cell_type", 200)),
        n_variable=int(genes_cfg.get("n_output_variable", 1000)),
        max_genes=int(genes_cfg.get("max_output_genes", 3000)),
        include=input_genes if genes_cfg.get("outputs_include_inputs", False) else [],
    )
    provenance = {
        "recipe": {k: v for k, v in recipe.items() if not k.startswith("_")},
        "recipe_path": os.path.relpath(recipe["_path"], REPO_ROOT),
        "rebuild_command": f"blue train --recipe {os.path.relpath(recipe['_path'], REPO_ROOT)} --out pretrained/{recipe['name']}",
        "references": [
            {k: spec.get(k, "") for k in ("name", "path", "cell_type_key", "citation", "accession", "licence")}
            for spec in recipe["references"]
        ],
        "n_cells": int(reference.n_obs),
        "cells_per_type": {str(k): int(v) for k, v in reference.obs["cell_type"].value_counts().items()},
        "input_panels": genes_cfg.get("input_panels", {}),
    }
    model = train_model(
        reference,
        input_genes=input_genes,
        output_genes=output_genes,
        name=recipe["name"],
        tissue=recipe.get("tissue"),
        description=recipe.get("description", ""),
        provenance=provenance,
        progress=progress,
        input_panels=panels or None,
        simulation=recipe.get("simulation", {}),
        network=recipe.get("network"),
        **recipe.get("training", {}),
    )
    for key in ("title", "limitations"):
        if key in recipe:
            model.card[key] = recipe[key]
    return model
