"""The model card: every field BLUE writes into a model's card (``model.json``), decided in this one room.

Who writes what: ``train_model`` -> :func:`training_card` and :func:`bank_rule`; ``build_ensemble`` ->
:func:`ensemble_card`; ``train_recipe`` -> :func:`recipe_fields`; ``blue train --bank-only`` -> :func:`bank_rule`;
``save_model`` -> :func:`final_card` (lists, network, checksum, bank file); ``bench/validate.py --update-cards``
-> :func:`real_data_fields`; ``bench/intervals.py --real --update-cards`` -> :func:`real_cohort_intervals`; ``bench/gep_candidates.py
--update-cards`` -> :func:`gep_estimator_field`. Other
code reads the card; it does not write fields of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..exceptions import BlueInputError
from .config import VALIDATION_FRACTION, GeneSelection, SimulationConfig, TrainConfig
from .model_format import BANK_FILE, FORMAT_VERSION, WEIGHTS_FILE
from .reference_cells import cell_digest, rna_content_factors

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel
    from .training_sets import SimulatedSets

__all__ = ["training_card", "reference_summary", "bank_rule", "ensemble_card", "recipe_fields", "final_card",
           "real_data_fields", "real_cohort_intervals", "gep_estimator_field", "recorded_split", "check_validation_cells", "RECIPE_FIELDS"]

#: Recipe keys copied to the card as they are (what the app shows beside the model).
RECIPE_FIELDS = ("title", "limitations", "fractions_of")

_BANK_RULES = {
    "training": "pseudo-bulks from the training cells with the training simulation settings (seed 4242), for "
                "cohort adaptation (blue_core.engine.adaptation)",
    "recipe": "pseudo-bulks from the training cells with the recipe's simulation settings (seed 4242), for "
              "cohort adaptation (blue_core.engine.adaptation); added after training by blue train --bank-only",
}


def training_card(*, tissue: str | None, description: str, provenance: dict[str, Any] | None,
                  references: dict, splits: dict, reference_qc: dict, gs: GeneSelection, sim: SimulationConfig,
                  tr: TrainConfig, sets: SimulatedSets, extra_refs: dict, extra_sim: dict, input_genes: list[str],
                  output_genes: list[str], cell_types: list[str], panel_masks: list[np.ndarray] | None,
                  platform_profiles: pd.DataFrame | None, history: list, validation: dict, seconds: tuple[float, float],
                  profiles: dict[str, Any] | None) -> dict[str, Any]:
    """The card ``train_model`` writes: the reference summary, gene selection, simulation and training settings,
    validation metrics, input panels and timings.

    Returns
    -------
    dict
        The card (``save_model`` adds the lists, network and checksum: :func:`final_card`).
    """
    total_seconds, train_seconds = seconds
    sim_kwargs = dict(sim.options or {})
    card = dict(
        tissue=tissue,
        description=description,
        provenance=provenance or {},
        reference_summary=reference_summary(references, splits),
        gene_selection=dict(
            selected_on="training cells of each reference (validation cells never seen)",
            exclude_pattern=gs.exclude, min_fold_change=gs.min_fold_change, n_markers_per_cell_type=gs.n_markers,
            union_over_references=len(references) > 1,
            mixed_fraction=sim.mixed_fraction if len(references) > 1 else 0.0,
        ),
        reference_qc=reference_qc,
        reference_profiles=profiles,
        platform_calibration=(dict(shrinkage=sim.platform_shrinkage,
                                   profile_columns=list(map(str, platform_profiles.columns)),
                                   per_reference=sets.calibration) if platform_profiles is not None else None),
        training=dict(
            n_samples=sim.n_samples, n_validation_samples=sets.n_val, cells_per_sample=sim.cells_per_sample,
            simulation=sim_kwargs, gep_simulation=dict(sim.gep_options) if sim.gep_options else None,
            gep_references=({name: dict(n_cells=int(ref.n_obs), simulation=extra_sim.get(name, {}),
                                        cells_per_type={str(k): int(v) for k, v in
                                                        ref.obs["cell_type"].astype(str).value_counts().items()})
                             for name, ref in extra_refs.items()} or None),
            gep_early_stopping=tr.gep_early_stopping if extra_refs else None,
            epochs=tr.epochs, epochs_run=sum(h["branch"] == "gep" for h in history),
            proportion_epochs=tr.proportion_epochs,
            proportion_epochs_run=sum(h["branch"] == "proportion" for h in history), batch_size=tr.batch_size,
            lr=tr.lr, weight_decay=tr.weight_decay, proportion_weight=tr.proportion_weight, patience=tr.patience,
            **({"gep_decorrelation": tr.gep_decorrelation} if tr.gep_decorrelation else {}),
            validation_fraction=tr.validation_fraction, seed=tr.seed,
            validation_cells={ref: dict(n=int(val.n_obs), sha256=cell_digest(val.obs_names))
                              for ref, (_, val) in splits.items()},
            split_seed=tr.seed if tr.split_seed is None else tr.split_seed,
            threads=torch.get_num_threads() if not tr.threads else int(tr.threads), n_markers=gs.n_markers,
            input_panel_size=len(gs.input_panel) if gs.input_panel else None,
            history=history,
        ),
        validation=validation,
        input_panels=(
            {name: [g for g, ok in zip(input_genes, mask) if ok] for name, mask in zip(gs.input_panels, panel_masks)}
            if panel_masks else None
        ),
        training_time_s=round(total_seconds, 1),
        network_training_time_s=round(train_seconds, 1),
        blue_version=__version__,
    )
    if sim_kwargs.get("rna_content") is not None:
        card["rna_content"] = dict(rna_content_factors(cell_types, sim_kwargs["rna_content"]),
                                   rule="each simulated cell's counts rescaled so that a type's counts per cell "
                                        "follow its mRNA content (simulation.simulate(rna_content=...))")
    return card


def reference_summary(references: dict[str, ad.AnnData], splits: dict[str, tuple]) -> dict[str, Any]:
    """What the card says of the training references: cells, genes, cells per type, donors, the split.

    Returns
    -------
    dict
        One reference's summary, or the pooled one with ``references`` (each reference's own).
    """
    def one(ref: ad.AnnData, train_r: ad.AnnData, val_r: ad.AnnData) -> dict[str, Any]:
        return dict(
            n_cells=int(ref.n_obs), n_genes=int(ref.n_vars),
            cells_per_type={t: int(c) for t, c in ref.obs["cell_type"].astype(str).value_counts().items()},
            n_donors=int(ref.obs["donor"].nunique()) if "donor" in ref.obs else None,
            n_training_cells=int(train_r.n_obs), n_validation_cells=int(val_r.n_obs),
        )

    parts = {name: one(ref, *splits[name]) for name, ref in references.items()}
    if len(parts) == 1:
        return next(iter(parts.values()))
    cells: dict[str, int] = {}
    for part in parts.values():
        for t, c in part["cells_per_type"].items():
            cells[t] = cells.get(t, 0) + c
    return dict(
        n_cells=sum(v["n_cells"] for v in parts.values()),
        n_genes=len(set().union(*(map(str, r.var_names) for r in references.values()))),
        cells_per_type=cells,
        n_training_cells=sum(v["n_training_cells"] for v in parts.values()),
        n_validation_cells=sum(v["n_validation_cells"] for v in parts.values()),
        references=parts,
    )


def bank_rule(source: Literal["training", "recipe"]) -> dict[str, str]:
    """The card's ``adaptation_bank`` entry before saving: how the bank was simulated (``save_model`` adds its file,
    size and sha256).

    Returns
    -------
    dict
        ``{"rule": ...}``.
    """
    return {"rule": _BANK_RULES[source]}


def ensemble_card(members: Sequence[BlueModel]) -> dict[str, Any]:
    """The card of an ensemble: the first member's, with every member's seed and validation, the mean validation
    metrics, the summed training time and the member seeds.

    Returns
    -------
    dict
        The card (``build_ensemble`` adds ``intervals``).
    """
    first = members[0]
    card = dict(first.card)
    card["members"] = [
        dict(seed=(m.card.get("training") or {}).get("seed"), training_time_s=m.card.get("training_time_s"),
             validation={k: v for k, v in (m.card.get("validation") or {}).items() if isinstance(v, (int, float))})
        for m in members
    ]
    numeric = {}
    for key in card["members"][0]["validation"]:
        values = [mm["validation"].get(key) for mm in card["members"]]
        if all(isinstance(v, (int, float)) for v in values):
            numeric[key] = float(np.mean(values))
    card["validation"] = {**(first.card.get("validation") or {}), **numeric,
                          "members_rule": "validation metrics are the mean over members"}
    card["training_time_s"] = float(sum(float(m.card.get("training_time_s") or 0) for m in members))
    training = dict(card.get("training") or {})
    training.pop("history", None)
    training["member_seeds"] = [mm["seed"] for mm in card["members"]]
    card["training"] = training
    return card


def recipe_fields(recipe: Mapping[str, Any], *, ensemble: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a recipe adds to the card it builds: :data:`RECIPE_FIELDS` as given, and the ensemble's seeds.

    Returns
    -------
    dict
        Fields to merge into the card.
    """
    fields = {key: recipe[key] for key in RECIPE_FIELDS if key in recipe}
    if ensemble is not None:
        fields["ensemble_recipe"] = dict(ensemble)
    return fields


def final_card(model: BlueModel, *, weights_sha256: str, bank: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card written next to the weights: the model's card plus its lists, network and checksum, and the bank
    file's entry (``bank``: ``n_samples`` and ``sha256``; None drops the entry).

    Returns
    -------
    dict
        The card as saved.
    """
    card = dict(model.card)
    card.update(
        format_version=FORMAT_VERSION,
        name=model.name,
        cell_types=model.cell_types,
        input_genes=model.input_genes,
        output_genes=model.output_genes,
        preprocessing=model.preprocessing,
        network=model.network.config,
        n_members=model.n_members,
        blue_version=card.get("blue_version", __version__),
        weights_file=WEIGHTS_FILE,
        weights_sha256=weights_sha256,
    )
    if bank is not None:
        card["adaptation_bank"] = dict(card.get("adaptation_bank") or {}, file=BANK_FILE, **bank)
    else:
        card.pop("adaptation_bank", None)
    return card


def real_data_fields(rows: Sequence[Mapping[str, Any]], *, limitations: str | None, command: str) -> dict[str, Any]:
    """The card's real-data section (``bench/validate.py --update-cards``): the validation rows, the command that
    reproduces them, and the recipe's limitations.

    Returns
    -------
    dict
        Fields to merge into the card.
    """
    fields: dict[str, Any] = {"real_data_validation": list(rows), "real_data_validation_command": command}
    if limitations:
        fields["limitations"] = limitations
    return fields


def real_cohort_intervals(sigma_by_type: Mapping[str, float], *, cohorts: Sequence[str], rule: str,
                          source: str) -> dict[str, Any]:
    """The card's ``intervals["real_cohorts"]`` entry: the real-cohort error term of the proportion intervals per
    cell type (rounded to 4 decimals), the cohorts it was measured on, its rule and the command that wrote it.

    Returns
    -------
    dict
        The entry (``bench/intervals.py`` writes it into the card JSON without re-saving the weights).
    """
    return {"sigma_by_type": {k: round(float(v), 4) for k, v in sigma_by_type.items()}, "cohorts": list(cohorts),
            "rule": rule, "source": source}


def recorded_split(card: Mapping[str, Any]) -> tuple[float, int]:
    """The validation split a model trained on, as its card records it: ``(validation_fraction, split_seed)``
    (``split_seed`` is the training seed when none was given; defaults for a card without them).

    Returns
    -------
    tuple
        ``(fraction, seed)``.
    """
    training = (card or {}).get("training") or {}
    seed = training.get("split_seed", training.get("seed"))
    return float(training.get("validation_fraction", VALIDATION_FRACTION)), int(seed or 0)


def check_validation_cells(card: Mapping[str, Any], cells: Sequence[str], *, reference: str) -> None:
    """Refuse validation cells that are not the ones the card says the model held out (``training.validation_cells``,
    a digest per reference; a card without it, made before issue 23, is not checked).

    Raises
    ------
    BlueInputError
        The cells differ: the reference is not the one the model was trained on, unchanged.
    """
    recorded = (((card or {}).get("training") or {}).get("validation_cells") or {}).get(reference)
    if recorded and recorded.get("sha256") != cell_digest(cells):
        raise BlueInputError(
            f"reference {reference!r} does not give the validation cells the model held out ({len(cells):,} cells "
            f"here, {recorded.get('n', 0):,} recorded): pass the reference the model was trained on, unchanged, or "
            "later steps would use cells the model saw.")


def gep_estimator_field(estimator: str, *, rule: str, command: str, scored_on: str, caveats: str = "") -> dict[str, Any]:
    """``card["gep_estimator"]``: which estimator produces the model's GEPs (:mod:`blue_core.engine.gep_estimators`),
    chosen among candidates declared before scoring.

    Returns
    -------
    dict
        ``{"gep_estimator": {"estimator", "rule", "scored_on", "caveats", "chosen_by", "command"}}``; ``caveats``: what
        the chosen estimator does worse than the others on this model's real cohorts, in words.
    """
    from .gep_estimators import GEP_ESTIMATORS

    if estimator not in GEP_ESTIMATORS:
        raise BlueInputError(f"estimator must be one of {list(GEP_ESTIMATORS)}, not {estimator!r}.")
    return {"gep_estimator": {"estimator": estimator, "rule": rule, "scored_on": scored_on, "caveats": caveats,
                              "chosen_by": "bench/results/gep_shifts.md (issue 25 section)", "command": command}}
