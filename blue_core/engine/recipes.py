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
    fractions_of = "..."                # what the proportions are fractions of (shown beside every chart)
    data_root = "../../../shared/data"  # optional; relative to this recipe file's folder; env BLUE_SHARED_DATA wins

    [[references]]
    name = "pbmc3k"
    path = "pbmc/pbmc3k_clustifyr.h5ad" # relative to data_root
    cell_type_key = "cell_type"
    donor_key = ""                      # optional obs column with donors ("" = none)
    label_map = { "CD14 monocyte" = "Monocyte" }   # source label -> model label ("" drops the cells)
    keep = { malignant = ["normal"] }   # optional: obs column -> allowed values
    citation = "..."; accession = "..."; licence = "..."

    [[profile_references]]              # optional: cell types known only from bulk profiles (e.g. granulocytes)
    name = "hpa_granulocytes"
    path = "pbmc/hpa_blood_celltype_profiles_nx.csv.gz"   # genes x sorted cell types, any linear unit
    cell_types = { "Neutrophil" = "neutrophil" }          # model type -> profile column
    merge_into = "pbmc3k"               # the [[references]] entry that receives the synthetic cells
    n_cells = 300; n_donors = 6; donor_sd = 0.3; seed = 0 # see simulation.profile_cells
    extra_genes_versus = "total_PBMC"   # genes the reference lacks join only if specific to the profile types
    extra_genes_min_fold = 5.0

    [genes]
    protein_coding_only = true          # restrict to protein-coding genes (GENCODE biotype)
    input_panels = { tcga = "aml/tcga_laml_expr_714genes.csv.gz" }  # optional: cohort gene panels;
                                        # inputs = panel genes, trained with panel dropout
    outputs_include_inputs = false      # add the input genes to the output genes
    n_input_per_cell_type = 50
    n_output_per_cell_type = 200
    n_output_variable = 1000
    max_output_genes = 3000

    [calibration]                       # optional platform calibration (train_model(platform_profiles=...))
    profiles = "pbmc/hpa_blood_celltype_profiles_nx.csv.gz"   # genes x sorted cell types, bulk RNA-seq
    columns = { "B" = ["naive_B_cell", "memory_B_cell"] }     # model type -> mean of these columns
    shrinkage = 0.5

    [ensemble]                          # optional: the model is an ensemble of these seeds (one shared split)
    seeds = [0, 1, 2, 3, 4]
    split_seed = 0

    [simulation]                        # blue_core.train_model(simulation=...): noise, Dirichlet, sparsity
    [simulation.group_share]            # optional: a group's total share, e.g. granulocytes 40-85 % in half
                                        # of the pseudo-bulks (simulate(group_share=...))
    [gep_simulation]                    # optional: extra settings for the GEP branch only (e.g. n_states = 4)
    [[gep_references]]                  # optional: condition-bearing references for the GEP branch only
    name = "kang"
    path = "pbmc/kang_ifnb_harmony.h5ad"
    cell_type_key = ""                  # "" = no labels: derive them (transfer_labels from [[references]])
    label_exclude_sets = ["HALLMARK_INTERFERON_ALPHA_RESPONSE"]  # shipped Hallmark sets left out of the transfer
    subset = { column = "condition", fraction = 0.5, seed = 0 }  # label-free share of each group's cells
    state_key = "condition"             # simulation states (see simulate); whole pseudo-bulks of one state:
    single_state_fraction = 0.5
    [network]                           # blue_core.train_model(network=...): BlueNet widths
    [training]                          # other blue_core.train_model options (n_samples, epochs, seed, ...)

References are kept apart (no inner join): each keeps its own genes and cell labels, mapped to one
vocabulary, and :func:`~blue_core.engine.training.train_model` trains on all of them -- the model's genes are
the union of per-reference selections, each pseudo-bulk comes from one reference, and genes a reference
did not measure are masked (see ``train_model``). Genes are selected inside ``train_model`` on training
cells only. Donors are prefixed with the reference name; a reference without donor annotation is split
by cell. ``[genes] exclude_pattern`` / ``min_fold_change`` set the platform-robust selection (defaults
in :mod:`blue_core.engine.gene_selection`).
"""

from __future__ import annotations

import logging
import os
import warnings
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._types import Progress
from ..io.hdf5 import read_h5ad
from .config import VALIDATION_FRACTION
from ..exceptions import BlueInputError
from ..io.resources import package_data

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["read_recipe", "build_reference", "build_references", "build_gep_references", "gep_reference_subset", "panel_genes", "train_from_recipe", "train_recipe", "train_ensemble_recipe", "data_root", "calibration_profiles", "recipe_bank"]

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
            raise BlueInputError(f"recipe {path} has no '{key}' entry; see blue_core/recipes.py for the schema.")
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
    section (:func:`~blue_core.engine.simulation.profile_cells` at the reference's library sizes).

    The gene space becomes the union of the reference's genes and the genes the profiles express: a gene the
    single-cell reference lacks was not detected in its cells (e.g. pbmc3k keeps genes seen in >= 3 cells), so
    its cells get 0 there, while granulocyte genes such as CLC or FCGR3B stay measurable. With
    ``extra_genes_versus`` (a column of the profile table, e.g. total PBMC) only genes at least
    ``extra_genes_min_fold`` (default 5) times higher in a profile type than there (+1) are added: a gene the
    droplet protocol missed in every cell type would otherwise look specific to the profile types."""
    from ..io.genes import harmonize_gene_ids
    from .simulation import profile_cells

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


def train_from_recipe(path: str | os.PathLike, *, progress: Progress | None = None) -> BlueModel:
    """Read a recipe file and build its model: :func:`train_ensemble_recipe` when the recipe has an
    ``[ensemble]`` section, else :func:`train_recipe`.

    Returns
    -------
    BlueModel
        The trained model (an ensemble when the recipe has ``[ensemble]``).
    """
    recipe = read_recipe(path)
    if recipe.get("ensemble"):
        return train_ensemble_recipe(recipe, progress=progress)
    return train_recipe(recipe, progress=progress)


def train_ensemble_recipe(recipe: dict[str, Any], *, progress: Progress | None = None,
                          members: list | None = None) -> BlueModel:
    """Train the members of a recipe's ``[ensemble]`` (``seeds = [...]``, ``split_seed``) and stack them.

    Every member is :func:`train_recipe` with ``training.seed`` = one of the seeds and ``training.split_seed``
    = ``split_seed`` (one shared split: same genes, no member sees the validation cells); the ensemble's
    intervals are calibrated on those held-out cells (:func:`~blue_core.engine.ensemble.build_ensemble`).
    ``members`` may hold already trained members (in seed order) to reuse.

    Returns
    -------
    BlueModel
        The ensemble, its intervals calibrated on the held-out cells.
    """
    import copy

    from .ensemble import build_ensemble

    cfg = recipe["ensemble"]
    seeds = [int(s) for s in cfg.get("seeds", [])]
    if len(seeds) < 2:
        raise BlueInputError("[ensemble] seeds must list at least 2 seeds, e.g. seeds = [0, 1, 2, 3, 4].")
    split_seed = int(cfg.get("split_seed", 0))
    trained = list(members or [])
    references = build_references(recipe)  # once for the whole ensemble: every member and the calibration share it
    for k, seed in enumerate(seeds[len(trained):], start=len(trained)):
        member_recipe = copy.deepcopy(recipe)
        member_recipe["training"] = {**member_recipe.get("training", {}), "seed": seed, "split_seed": split_seed}
        report = None if progress is None else (
            lambda f, m, k=k: progress((k + f) / (len(seeds) + 0.2), f"member {k + 1}/{len(seeds)}: {m}"))
        trained.append(train_recipe(member_recipe, progress=report, references=references))
    model = build_ensemble(
        trained, name=recipe["name"], references=references if len(references) > 1 else next(iter(references.values())),
        validation_fraction=float(recipe.get("training", {}).get("validation_fraction", VALIDATION_FRACTION)),
        split_seed=split_seed,
        rna_content=recipe.get("simulation", {}).get("rna_content"),
    )
    model.card["ensemble_recipe"] = {"seeds": seeds, "split_seed": split_seed}
    if progress is not None:
        progress(1.0, "ensemble calibrated")
    return model


def train_recipe(recipe: dict[str, Any], *, progress: Progress | None = None,
                 references: dict[str, Any] | None = None) -> BlueModel:
    """Build the reference of a parsed recipe (as :func:`read_recipe` returns it) and train a model.

    Benchmarks pass modified copies of a shipped recipe to measure one change at a time. ``references``: the
    recipe's :func:`build_references`, when the caller already built them (an ensemble builds them once for all its
    members; they are not modified).

    Returns
    -------
    BlueModel
        The trained model; its card holds the recipe, the references' provenance and the training time.
    """
    from .gene_selection import EXCLUDE_PATTERN, MIN_FOLD_CHANGE
    from .training import train_model

    references = build_references(recipe) if references is None else references
    gep_references, gep_reference_simulation = build_gep_references(recipe, references)
    genes_cfg = recipe.get("genes", {})
    panels = panel_genes(recipe)
    input_genes = None
    if panels:
        # Cohort panels: the inputs are every panel gene the references detect (a random 714-gene panel
        # holds few markers, so all of its genes are informative input). Detection counts are label-free.
        union = set().union(*panels.values())
        min_cells = int(genes_cfg.get("min_cells", 10))
        detected = set()
        for ref in references.values():
            counts = np.asarray((ref.X > 0).sum(axis=0)).ravel()
            detected |= {g for g, c in zip(map(str, ref.var_names), counts) if c >= min_cells}
        order = list(dict.fromkeys(g for ref in references.values() for g in map(str, ref.var_names)))
        input_genes = [g for g in order if g in union and g in detected]
    provenance = {
        "recipe": {k: v for k, v in recipe.items() if not k.startswith("_")},
        "recipe_path": os.path.relpath(recipe["_path"]),
        "rebuild_command": f"blue train --recipe {os.path.relpath(recipe['_path'])} --out pretrained/{recipe['name']}",
        "references": [
            {k: spec.get(k, "") for k in ("name", "path", "cell_type_key", "citation", "accession", "licence")}
            for spec in recipe["references"]
        ],
        "profile_references": [
            {**{k: spec.get(k, "") for k in ("name", "path", "citation", "accession", "licence")},
             "cell_types": dict(spec.get("cell_types") or {}),
             "what": "bulk profiles of sorted cells, simulated as synthetic cells (blue_core.engine.simulation.profile_cells): "
                     f"{spec.get('n_cells', 300)} per type, {spec.get('n_donors', 6)} donor versions with log-normal "
                     f"factors SD {spec.get('donor_sd', 0.3)}"}
            for spec in recipe.get("profile_references") or []
        ] or None,
        "gep_references": [
            {**{k: spec.get(k, "") for k in ("name", "path", "citation", "accession", "licence")},
             "labels": f"obs[{spec['cell_type_key']!r}]" if spec.get("cell_type_key") else
             "derived (blue_core.engine.labels.transfer_labels from the references; genes of "
             f"{spec.get('label_exclude_sets', [])} excluded)", "subset": spec.get("subset")}
            for spec in recipe.get("gep_references") or []
        ] or None,
        "n_cells": int(sum(r.n_obs for r in references.values())),
        "cells_per_type": {str(k): int(v) for k, v in pd.concat(
            [r.obs["cell_type"].astype(str) for r in references.values()]).value_counts().items()},
        "input_panels": genes_cfg.get("input_panels", {}),
    }
    model = train_model(
        references if len(references) > 1 else next(iter(references.values())),
        input_genes=input_genes,
        n_markers=int(genes_cfg.get("n_input_per_cell_type", 50)),
        n_output_genes=int(genes_cfg.get("max_output_genes", 3000)),
        output_selection=dict(n_per_cell_type=int(genes_cfg.get("n_output_per_cell_type", 200)),
                              n_variable=int(genes_cfg.get("n_output_variable", 1000))),
        outputs_include_inputs=bool(genes_cfg.get("outputs_include_inputs", False)),
        gene_exclude=genes_cfg.get("exclude_pattern", EXCLUDE_PATTERN) or None,
        min_fold_change=float(genes_cfg.get("min_fold_change", MIN_FOLD_CHANGE)),
        platform_profiles=calibration_profiles(recipe),
        platform_shrinkage=float(recipe.get("calibration", {}).get("shrinkage", 0.5)),
        name=recipe["name"],
        tissue=recipe.get("tissue"),
        description=recipe.get("description", ""),
        provenance=provenance,
        progress=progress,
        input_panels=panels or None,
        simulation=recipe.get("simulation", {}),
        gep_simulation=recipe.get("gep_simulation") or None,
        gep_references=gep_references or None,
        gep_reference_simulation=gep_reference_simulation or None,
        network=recipe.get("network"),
        **recipe.get("training", {}),
    )
    for key in ("title", "limitations", "fractions_of"):
        if key in recipe:
            model.card[key] = recipe[key]
    return model


def recipe_bank(recipe: dict[str, Any], model: BlueModel) -> Any:
    """The adaptation bank of a model trained from ``recipe`` (what ``train_model`` builds at the end).

    For models trained before banks existed: the recipe's references are split as in training (its
    ``validation_fraction`` and ``[ensemble] split_seed`` or ``training.split_seed`` / ``seed``), and the
    bank is simulated from the training cells with the recipe's ``[simulation]`` settings
    (:func:`~blue_core.engine.adaptation.build_bank`). ``blue train --recipe FILE --out DIR --bank-only`` runs it.

    Returns
    -------
    SimulationBank
    """
    from .adaptation import build_bank
    from .simulation import split_reference

    if recipe.get("calibration"):
        raise BlueInputError("this recipe uses platform calibration; retrain the model (blue train --recipe) "
                             "to build its adaptation bank with the same gene factors.")
    training = recipe.get("training", {})
    if recipe.get("ensemble"):
        split_seed = int(recipe["ensemble"].get("split_seed", 0))
    else:
        split_seed = int(training.get("split_seed", training.get("seed", 0)))
    fraction = float(training.get("validation_fraction", VALIDATION_FRACTION))
    parts = {}
    for name, ref in build_references(recipe).items():
        parts[name], _, _ = split_reference(ref, fractions=(1.0 - fraction, fraction, 0.0), seed=split_seed)
    return build_bank(model, parts, cells_per_sample=int(training.get("cells_per_sample", 500)),
                      simulation=recipe.get("simulation", {}))
