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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._types import Progress
from .config import GeneSelection, NetworkConfig, SimulationConfig, TrainConfig
from ..exceptions import BlueInputError
from .card import recipe_fields
from .recipe_data import build_gep_references, build_references, calibration_profiles, panel_genes, read_recipe

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["train_from_recipe", "train_recipe", "train_ensemble_recipe", "recipe_bank", "recipe_configs", "RECIPE_GENE_KEYS",
           "RECIPE_OUTPUT_SELECTION_KEYS",
           "RECIPE_SIMULATION_KEYS"]

logger = logging.getLogger(__name__)


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
        rna_content=recipe.get("simulation", {}).get("rna_content"),
    )
    model.card.update(recipe_fields({}, ensemble={"seeds": seeds, "split_seed": split_seed}))
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
             "what": "bulk profiles of sorted cells, simulated as synthetic cells (blue_core.engine.reference_cells.profile_cells): "
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
    genes, simulation, training, network = recipe_configs(recipe, input_genes=input_genes, input_panels=panels or None,
                                                          gep_reference_simulation=gep_reference_simulation)
    model = train_model(
        references if len(references) > 1 else next(iter(references.values())),
        genes=genes, simulation=simulation, training=training, network=network,
        gep_references=gep_references or None, platform_profiles=calibration_profiles(recipe),
        name=recipe["name"], tissue=recipe.get("tissue"), description=recipe.get("description", ""),
        provenance=provenance, progress=progress,
    )
    model.card.update(recipe_fields(recipe))
    return model


#: A recipe's ``[genes]`` keys and the :class:`~blue_core.engine.config.GeneSelection` field each sets (absent keys
#: keep the config's defaults); ``protein_coding_only``, ``min_cells`` and ``input_panels`` are read when the
#: references and panels are built (:mod:`~blue_core.engine.recipe_data`).
RECIPE_GENE_KEYS = {"n_input_per_cell_type": "n_markers", "max_output_genes": "n_output_genes",
                    "exclude_pattern": "exclude", "min_fold_change": "min_fold_change",
                    "outputs_include_inputs": "outputs_include_inputs"}
#: ``[genes]`` keys passed to ``select_output_genes`` (``GeneSelection.output_selection``), by its argument names.
RECIPE_OUTPUT_SELECTION_KEYS = {"n_output_per_cell_type": "n_per_cell_type", "n_output_variable": "n_variable"}
_GENE_KEYS_READ_BY_RECIPE_DATA = {"protein_coding_only", "min_cells", "input_panels"}
#: ``[training]`` keys that set the pseudo-bulk counts (:class:`~blue_core.engine.config.SimulationConfig`); the
#: other keys are :class:`~blue_core.engine.config.TrainConfig` fields.
RECIPE_SIMULATION_KEYS = ("n_samples", "n_validation_samples", "cells_per_sample", "mixed_fraction")


def recipe_configs(recipe: dict[str, Any], *, input_genes: list[str] | None = None,
                   input_panels: dict[str, list[str]] | None = None,
                   gep_reference_simulation: dict[str, dict[str, Any]] | None = None
                   ) -> tuple[GeneSelection, SimulationConfig, TrainConfig, NetworkConfig]:
    """The configs a recipe trains with, one per part of the run: ``[genes]`` -> ``GeneSelection``,
    ``[simulation]`` / ``[gep_simulation]`` / the GEP references' settings / ``[calibration] shrinkage`` and the
    pseudo-bulk counts of ``[training]`` -> ``SimulationConfig``, the rest of ``[training]`` -> ``TrainConfig``,
    ``[network]`` -> ``NetworkConfig``. Absent keys keep the configs' own defaults (one set of defaults).
    ``input_genes`` / ``input_panels`` / ``gep_reference_simulation`` are what the recipe's panels and GEP
    references gave (:func:`~blue_core.engine.recipe_data.panel_genes`, ``build_gep_references``).

    Returns
    -------
    tuple
        ``(GeneSelection, SimulationConfig, TrainConfig, NetworkConfig)``.

    Raises
    ------
    BlueInputError
        An unknown ``[genes]`` or ``[training]`` key (the message lists the valid ones).
    """
    section = dict(recipe.get("genes") or {})
    valid = set(RECIPE_GENE_KEYS) | set(RECIPE_OUTPUT_SELECTION_KEYS) | _GENE_KEYS_READ_BY_RECIPE_DATA
    unknown = sorted(set(section) - valid)
    if unknown:
        raise BlueInputError(f"recipe [genes] has unknown key(s) {unknown}; valid: {sorted(valid)}.")
    gene_fields: dict[str, Any] = {RECIPE_GENE_KEYS[k]: v for k, v in section.items() if k in RECIPE_GENE_KEYS}
    if "exclude" in gene_fields:
        gene_fields["exclude"] = gene_fields["exclude"] or None  # "" = no exclusion
    selection = {name: int(section[key]) for key, name in RECIPE_OUTPUT_SELECTION_KEYS.items() if key in section}
    genes = GeneSelection.from_dict({**gene_fields, "input_genes": input_genes, "input_panels": input_panels,
                                     "output_selection": selection or None})
    section = dict(recipe.get("training") or {})
    counts = {k: section.pop(k) for k in RECIPE_SIMULATION_KEYS if k in section}
    simulation = SimulationConfig.from_dict({
        **counts, "options": dict(recipe.get("simulation") or {}),
        "gep_options": recipe.get("gep_simulation") or None,
        "gep_reference_options": gep_reference_simulation or None,
        "platform_shrinkage": float((recipe.get("calibration") or {}).get("shrinkage", 0.5))})
    return genes, simulation, TrainConfig.from_dict(section), NetworkConfig.from_dict(recipe.get("network"))


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
    from .card import check_validation_cells, recorded_split
    from .reference_cells import validation_split

    if recipe.get("calibration"):
        raise BlueInputError("this recipe uses platform calibration; retrain the model (blue train --recipe) "
                             "to build its adaptation bank with the same gene factors.")
    training = recipe.get("training", {})
    fraction, split_seed = recorded_split(model.card)  # the split the model trained on, as its card says
    parts = {}
    for name, ref in build_references(recipe).items():
        parts[name], val = validation_split(ref, fraction=fraction, seed=split_seed)
        check_validation_cells(model.card, list(val.obs_names), reference=name)
    return build_bank(model, parts, cells_per_sample=int(training.get("cells_per_sample", 500)),
                      simulation=recipe.get("simulation", {}))
