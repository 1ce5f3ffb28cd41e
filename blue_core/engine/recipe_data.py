"""What a recipe's data sections build: the recipe file read and checked, its data folder, the single-cell
references (label maps, filters, profile-only types), the GEP branch's references, input panels and the
sorted-cell profiles of platform calibration. The schema is documented in :mod:`~blue_core.engine.recipes`.
"""

from __future__ import annotations

import logging
import os
import tomllib
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import BlueInputError
from ..io.hdf5 import read_h5ad
from ..io.resources import package_data

__all__ = ["read_recipe", "data_root", "build_reference", "build_references", "build_gep_references",
           "gep_reference_subset", "panel_genes", "calibration_profiles"]

logger = logging.getLogger(__name__)


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a recipe TOML file. Returns the parsed dict with ``_path`` added.

    Returns
    -------
    dict
        The parsed recipe with ``_path`` (the file) added.
    """
    path = Path(path)
    if not path.is_file():
        raise BlueInputError(f"recipe file {path} does not exist. Pass the path of a recipe.toml, e.g. pretrained/pbmc/recipe.toml.")
    try:
        recipe = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BlueInputError(f"recipe {path} is not valid TOML: {err}. Fix the syntax at that line.") from err
    for key in ("name", "references"):
        if key not in recipe:
            raise BlueInputError(f"recipe {path} has no '{key}' entry; see blue_core/engine/recipes.py for the schema.")
    if not recipe["references"]:
        raise BlueInputError(f"recipe {path} lists no [[references]]; add at least one single-cell reference.")
    recipe["_path"] = str(path)
    return recipe


def data_root(recipe: dict[str, Any]) -> Path:
    """Folder that reference paths are relative to: env ``BLUE_SHARED_DATA``, else the recipe's ``data_root``,
    relative to the recipe file's folder (to the working directory for a recipe built in code, without ``_path``).
    The library never locates data from its own install location.

    Returns
    -------
    pathlib.Path
        The data folder (absolute).
    """
    env = os.environ.get("BLUE_SHARED_DATA")
    if env:
        return Path(env)
    base = Path(recipe["_path"]).resolve().parent if recipe.get("_path") else Path.cwd()
    return (base / recipe.get("data_root", "shared/data")).resolve()


def _protein_coding() -> set[str]:
    table = pd.read_csv(package_data("genes", "human_ensembl_to_symbol.tsv.gz"), sep="\t")
    return set(table.loc[table["biotype"] == "protein_coding", "symbol"].astype(str))


def _load_one(spec: dict[str, Any], root: Path) -> ad.AnnData:
    path = root / spec["path"]
    if not path.is_file():
        raise BlueInputError(f"reference file {path} not found. Set BLUE_SHARED_DATA to the folder holding shared/data.")
    from ..io.genes import harmonize_var_names  # current HGNC symbols, as read_bulk names a user's genes

    adata = harmonize_var_names(read_h5ad(path))
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


def build_references(recipe: dict[str, Any]) -> dict[str, ad.AnnData]:
    """Load and relabel the recipe's references, each on its own genes.

    Returns
    -------
    dict
        ``{reference name: AnnData}``; each cells x genes (CSR float32 counts), ``obs['cell_type']``,
        ``obs['donor']`` (``reference:donor``; absent when the reference has no donor annotation),
        ``obs['reference']``.
    """
    root = data_root(recipe)
    pc = _protein_coding() if recipe.get("genes", {}).get("protein_coding_only", False) else None
    out: dict[str, ad.AnnData] = {}
    for spec in recipe["references"]:
        part = _load_one(spec, root)
        if not spec.get("donor_key"):
            del part.obs["donor"]  # no donor annotation: split this reference by cell
        if pc is not None:
            part = part[:, [g in pc for g in part.var_names]].copy()
        if part.n_vars < 50:
            raise BlueInputError(f"reference {spec.get('name')!r} keeps only {part.n_vars} genes; check its file.")
        out[str(part.obs["reference"].iloc[0])] = part
    for spec in recipe.get("profile_references") or []:
        target = str(spec.get("merge_into") or next(iter(out)))
        if target not in out:
            raise BlueInputError(f"profile reference {spec.get('name')!r}: merge_into={target!r} is not one of the "
                                 f"references {sorted(out)}.")
        out[target] = _with_profile_cells(out[target], spec, root, protein_coding=pc)
    return out


def _with_profile_cells(reference: ad.AnnData, spec: dict[str, Any], root: Path, *,
                        protein_coding: set[str] | None = None) -> ad.AnnData:
    """``reference`` plus synthetic cells of the bulk-profile cell types of one ``[[profile_references]]``
    section (:func:`~blue_core.engine.reference_cells.profile_cells` at the reference's library sizes).

    The gene space becomes the union of the reference's genes and the genes the profiles express: a gene the
    single-cell reference lacks was not detected in its cells (e.g. pbmc3k keeps genes seen in >= 3 cells), so
    its cells get 0 there, while granulocyte genes such as CLC or FCGR3B stay measurable. With
    ``extra_genes_versus`` (a column of the profile table, e.g. total PBMC) only genes at least
    ``extra_genes_min_fold`` (default 5) times higher in a profile type than there (+1) are added: a gene the
    droplet protocol missed in every cell type would otherwise look specific to the profile types."""
    from ..io.genes import harmonize_gene_ids
    from .reference_cells import profile_cells

    path = root / spec["path"]
    if not path.is_file():
        raise BlueInputError(f"profile file {path} not found. Set BLUE_SHARED_DATA to the folder holding shared/data.")
    name = str(spec.get("name", path.stem))
    columns = {str(k): str(v) for k, v in (spec.get("cell_types") or {}).items()}
    table = pd.read_csv(path, index_col=0)
    missing = [c for c in columns.values() if c not in table.columns]
    if not columns or missing:
        raise BlueInputError(f"profile reference {name!r}: cell_types must map model cell types to columns of "
                             f"{path.name}; missing {missing}, available {list(table.columns)[:20]}.")
    versus = spec.get("extra_genes_versus")  # only genes specific to the profile types join the gene space
    if versus and versus not in table.columns:
        raise BlueInputError(f"profile reference {name!r}: extra_genes_versus={versus!r} is not a column of "
                             f"{path.name}.")
    symbols, _ = harmonize_gene_ids([str(g) for g in table.index])
    table = table.set_axis(symbols, axis=0).groupby(level=0).sum()  # current symbols, duplicates summed
    profiles = table[list(columns.values())].set_axis(list(columns), axis=1)
    own = list(map(str, reference.var_names))
    candidates = profiles.fillna(0).max(axis=1)
    if versus:
        keep = candidates >= float(spec.get("extra_genes_min_fold", 5.0)) * (table[versus].fillna(0) + 1.0)
    else:
        keep = candidates > 0
    own_set = set(own)
    extra = [g for g in candidates.index[keep.to_numpy()] if g not in own_set
             and (protein_coding is None or g in protein_coding)]
    genes = own + sorted(extra)
    sizes = np.asarray(reference.X.sum(axis=1)).ravel()
    cells = profile_cells(profiles, genes=genes, library_sizes=sizes,
                          n_cells=int(spec.get("n_cells", 300)), n_donors=int(spec.get("n_donors", 6)),
                          donor_sd=float(spec.get("donor_sd", 0.3)), seed=int(spec.get("seed", 0)))
    obs = pd.DataFrame({"cell_type": cells.obs["cell_type"].astype(str).to_numpy(), "reference": name},
                       index=[f"{name}:{i}" for i in cells.obs_names])
    if "donor" in reference.obs:
        obs["donor"] = [f"{name}:{d}" for d in cells.obs["profile_donor"]]
    merged_obs = pd.concat([reference.obs.assign(cell_type=reference.obs["cell_type"].astype(str)), obs])
    merged_obs["cell_type"] = pd.Categorical(merged_obs["cell_type"])
    logger.info("profile reference %s: %d synthetic cells of %s merged into %s (+%d genes only the profiles have)",
                name, cells.n_obs, list(columns), reference.obs["reference"].iloc[0], len(extra))
    padded = sp.hstack([reference.X, sp.csr_matrix((reference.n_obs, len(extra)), dtype=np.float32)]).tocsr()
    return ad.AnnData(X=sp.vstack([padded, cells.X]).tocsr().astype(np.float32), obs=merged_obs,
                      var=pd.DataFrame(index=pd.Index(genes)))


def gep_reference_subset(spec: dict[str, Any], obs: pd.DataFrame) -> np.ndarray:
    """The cells a ``[[gep_references]]`` entry trains on (its ``subset``), as a boolean mask over ``obs``.

    Label-free (:func:`~blue_core.engine.labels.split_cells` on ``subset.column``), so that a benchmark can take
    the complement as held-out cells. All cells without a ``subset``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` bool mask over ``obs``.
    """
    from .labels import split_cells

    cfg = spec.get("subset")
    if not cfg:
        return np.ones(len(obs), dtype=bool)
    column = cfg.get("column")
    if column not in obs:
        raise BlueInputError(f"gep reference {spec.get('name')!r}: subset column {column!r} is not in its obs "
                             f"({list(obs.columns)[:10]}).")
    return split_cells(obs[column], fraction=float(cfg.get("fraction", 0.5)), seed=int(cfg.get("seed", 0)))


def build_gep_references(
    recipe: dict[str, Any], references: dict[str, ad.AnnData] | None = None
) -> tuple[dict[str, ad.AnnData], dict[str, dict[str, Any]]]:
    """The recipe's ``[[gep_references]]``: condition-bearing cells for the GEP branch only.

    Labels come from ``cell_type_key`` (mapped by ``label_map``) or, with ``cell_type_key = ""``, are
    derived by :func:`~blue_core.engine.labels.transfer_labels` from the recipe's ``[[references]]`` with the
    genes of ``label_exclude_sets`` (shipped Hallmark sets) left out. Types the model does not have are
    dropped. ``subset`` keeps a label-free share of the cells.

    Returns
    -------
    (references, simulation)
        ``{name: AnnData}`` (as :func:`build_references` makes them; ``obs`` keeps the state column) and
        ``{name: {"state_key": ..., "single_state_fraction": ...}}`` for ``train_model``.
    """
    from ..io.genes import harmonize_var_names
    from .labels import transfer_labels

    specs = recipe.get("gep_references") or []
    if not specs:
        return {}, {}
    references = build_references(recipe) if references is None else references
    model_types = set().union(*(set(r.obs["cell_type"].astype(str)) for r in references.values()))
    root = data_root(recipe)
    pc = _protein_coding() if recipe.get("genes", {}).get("protein_coding_only", False) else None
    out: dict[str, ad.AnnData] = {}
    sims: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = root / spec["path"]
        if not path.is_file():
            raise BlueInputError(f"GEP reference file {path} not found. Set BLUE_SHARED_DATA to the folder holding shared/data.")
        name = str(spec.get("name", path.stem))
        adata = harmonize_var_names(read_h5ad(path))
        adata = adata[gep_reference_subset(spec, adata.obs)].copy()
        key = spec.get("cell_type_key", "")
        if key:
            if key not in adata.obs:
                raise BlueInputError(f"{path.name} has no obs column {key!r}; set cell_type_key = \"\" to derive labels.")
            label_map = spec.get("label_map", {})
            labels = adata.obs[key].astype(str).map(lambda x: label_map.get(x, x))
        else:
            from ..analysis.enrichment import load_gene_sets

            sets, _ = load_gene_sets("hallmark")
            missing = [s for s in spec.get("label_exclude_sets", []) if s not in sets]
            if missing:
                raise BlueInputError(f"label_exclude_sets {missing} are not shipped Hallmark sets.")
            exclude = set().union(*(set(sets[s]) for s in spec.get("label_exclude_sets", [])))
            labels = transfer_labels(adata, list(references.values()), exclude_genes=sorted(exclude)).astype(str)
        keep = labels.isin(model_types).to_numpy()
        state_key = spec.get("state_key") or ""
        obs = pd.DataFrame({"cell_type": pd.Categorical(labels[keep].to_numpy()), "reference": name},
                           index=[f"{name}:{c}" for c in adata.obs_names[keep]])
        if state_key:
            if state_key not in adata.obs:
                raise BlueInputError(f"gep reference {name!r}: state_key {state_key!r} is not an obs column.")
            obs[state_key] = adata.obs[state_key].astype(str).to_numpy()[keep]
        X = adata.X[keep] if sp.issparse(adata.X) else sp.csr_matrix(adata.X[keep])
        part = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs,
                          var=pd.DataFrame(index=adata.var_names.astype(str)))
        if pc is not None:
            part = part[:, [g in pc for g in part.var_names]].copy()
        out[name] = part
        sims[name] = {k: spec[k] for k in ("state_key", "single_state_fraction", "state_alpha") if spec.get(k)}
        logger.info("GEP reference %s: %d cells, %d genes, types %s (labels %s)", name, part.n_obs, part.n_vars,
                    dict(part.obs["cell_type"].value_counts()), key or "derived by transfer")
    return out, sims


def build_reference(recipe: dict[str, Any]) -> ad.AnnData:
    """The recipe's references combined on their shared genes (inner join), as one AnnData.

    Only for inspection and for benchmarks that need one matrix; training uses :func:`build_references`
    and loses no genes.

    Returns
    -------
    anndata.AnnData
        Cells x shared genes, counts, ``obs['cell_type']`` and ``obs['reference']``.
    """
    parts = list(build_references(recipe).values())
    if len(parts) == 1:
        return parts[0]
    combined = ad.concat(parts, join="inner", merge="same")
    combined.obs["cell_type"] = pd.Categorical(combined.obs["cell_type"].astype(str))
    if "donor" in combined.obs and combined.obs["donor"].isna().any():
        del combined.obs["donor"]
    logger.info("combined reference: %d cells x %d genes", combined.n_obs, combined.n_vars)
    return combined


def panel_genes(recipe: dict[str, Any]) -> dict[str, list[str]]:
    """Gene panels of the recipe's ``input_panels`` bulk files, as ``read_bulk`` names them.

    Each panel is read with :func:`~blue_core.io.read_bulk`, so its gene names are harmonised exactly
    as a user's file of that cohort will be at inference time. Empty dict when the recipe has none.

    Returns
    -------
    dict
        Panel name -> gene symbols (empty without panels).
    """
    from ..io.bulk import read_bulk  # lazy: only panel recipes need it

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


def calibration_profiles(recipe: dict[str, Any]) -> pd.DataFrame | None:
    """The recipe's ``[calibration]`` sorted-cell profiles as genes x model cell types (None without one).

    Returns
    -------
    pandas.DataFrame or None
        Genes x model cell types, or None without a ``[calibration]`` section.
    """
    cfg = recipe.get("calibration")
    if not cfg:
        return None
    table = pd.read_csv(data_root(recipe) / cfg["profiles"], index_col=0)
    table.index = table.index.astype(str)
    out = {}
    for cell_type, columns in cfg["columns"].items():
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise BlueInputError(f"calibration profiles have no columns {missing}; available: {list(table.columns)}.")
        out[cell_type] = table[columns].div(table[columns].sum(axis=0), axis=1).mean(axis=1) * 1e6
    return pd.DataFrame(out)
