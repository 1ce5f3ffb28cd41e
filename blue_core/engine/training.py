"""train_model: simulate pseudo-bulk from a reference and train a BlueNet on it.

Steps: split the reference into training / validation cells (by donor when ``obs['donor']`` has >= 3
donors), select input and output genes on the training cells, simulate pseudo-bulk from each part
(validation pseudo-bulks never share cells or donors with training ones), train with Adam on
``loss = sum_k MSE(GEP_k) + proportion_weight * MSE(proportions)`` with early stopping on the
validation loss, and keep the best epoch. See :data:`blue_core.engine.model.PREPROCESSING` for the input
transform and the GEP target scale (log1p CPM over output genes).

A cell type's GEP loss is averaged over samples with weights equal to its cell fraction: an absent
type has no profile (weight 0; asking the network to output zeros for it would fight the GEP of present
types), and a profile made of few cells is a noisy target (inverse-variance weighting).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .._types import Progress
from .card import bank_rule, training_card
from .config import GeneSelection, NetworkConfig, SimulationConfig, TrainConfig
from ..exceptions import BlueInputError, BlueWarning
from ..io.files import check_model_name
from .gene_selection import select_input_genes, select_output_genes
from .model import PREPROCESSING, BlueModel
from .qc import check_reference_markers, marker_qc_messages
from .adaptation import build_bank
from .fitting import train_network
from .reference_cells import check_reference, cell_types_of, validation_split
from .training_sets import reference_profiles, simulate_sets

__all__ = ["train_model", "DEFAULT_NETWORK"]

logger = logging.getLogger(__name__)


#: Default BlueNet hyper-parameters, from their one home :class:`~blue_core.engine.config.NetworkConfig`.
DEFAULT_NETWORK: dict[str, Any] = NetworkConfig().as_dict()


#: simulate() arguments that train_model sets itself (not allowed in simulation= / gep_simulation=).
_SET_BY_TRAINING = frozenset({"reference", "n_samples", "seed", "output_genes", "cell_types", "progress"})


def _as_references(reference: Any) -> dict[str, ad.AnnData]:
    """``{name: reference}`` from one AnnData, a mapping or a list of them (each checked)."""
    if isinstance(reference, ad.AnnData):
        refs = {"reference": reference}
    elif isinstance(reference, Mapping):
        refs = {str(k): v for k, v in reference.items()}
    elif isinstance(reference, Sequence) and not isinstance(reference, (str, bytes)):
        refs = {f"reference{i + 1}": r for i, r in enumerate(reference)}
    else:
        refs = {"reference": reference}
    if not refs:
        raise BlueInputError("no reference given; pass an AnnData or a {name: AnnData} mapping of references.")
    for name, ref in refs.items():
        try:
            check_reference(ref)
        except BlueInputError as err:
            raise BlueInputError(f"reference {name!r}: {err}") from None
    return refs


def _union(lists: Sequence[Sequence[str]], *, first: Sequence[str] = (), cap: int | None = None) -> list[str]:
    """Genes of several selections, each once: ``first``, then by how many selections chose them
    (more first), ties in order of appearance; at most ``cap``. One selection is returned as it is."""
    if len(lists) == 1:  # one reference: its selection as it is (it already holds ``first``)
        return list(lists[0])[:cap] if cap else list(lists[0])
    votes: dict[str, int] = {}
    for genes in lists:
        for gene in genes:
            votes[gene] = votes.get(gene, 0) + 1
    ranked = sorted(votes, key=lambda gene: -votes[gene])  # stable: order of appearance within ties
    out = list(dict.fromkeys([*first, *ranked]))
    return out[:cap] if cap else out




#: The keyword names ``train_model`` took before its configs (issue 23.3), each routed to (config, field): callers
#: written for the old signature (recipes' ``[training]`` tables, benches) keep working.
_LEGACY: dict[str, tuple[str, str]] = {
    **{k: ("genes", k) for k in ("input_genes", "output_genes", "input_panel", "input_panels", "n_markers",
                                  "n_output_genes", "min_fold_change", "output_selection", "outputs_include_inputs")},
    "gene_exclude": ("genes", "exclude"),
    **{k: ("simulation", k) for k in ("n_samples", "n_validation_samples", "cells_per_sample", "mixed_fraction",
                                       "platform_shrinkage")},
    "gep_simulation": ("simulation", "gep_options"),
    "gep_reference_simulation": ("simulation", "gep_reference_options"),
    **{k: ("training", k) for k in ("epochs", "proportion_epochs", "batch_size", "lr", "weight_decay",
                                     "proportion_weight", "patience", "validation_fraction", "seed", "split_seed",
                                     "threads", "gep_early_stopping")},
}


def _resolve_configs(genes: GeneSelection | None, simulation: SimulationConfig | Mapping[str, Any] | None,
                     training: TrainConfig | None, network: NetworkConfig | Mapping[str, Any] | None,
                     settings: Mapping[str, Any]) -> tuple[GeneSelection, SimulationConfig, TrainConfig, NetworkConfig]:
    """The four configs of a run: the given ones (a plain ``simulation`` mapping is ``simulate``'s options, as
    before the configs), then each keyword of the old signature applied to its config (``_LEGACY``)."""
    unknown = sorted(set(settings) - set(_LEGACY))
    if unknown:
        raise BlueInputError(f"train_model got unknown setting(s) {unknown}; pass genes=GeneSelection(...), "
                             "simulation=SimulationConfig(...), training=TrainConfig(...), network=NetworkConfig(...) "
                             f"or one of {sorted(_LEGACY)}.")
    if simulation is not None and not isinstance(simulation, SimulationConfig):
        simulation = SimulationConfig(options=dict(simulation))
    parts: dict[str, Any] = {"genes": genes or GeneSelection(), "simulation": simulation or SimulationConfig(),
                             "training": training or TrainConfig()}
    for key, value in settings.items():
        where, name = _LEGACY[key]
        parts[where] = dataclasses.replace(parts[where], **{name: value})
    net = network if isinstance(network, NetworkConfig) else NetworkConfig.from_dict(network)
    return parts["genes"], parts["simulation"], parts["training"], net


def _check_run(reference: Any, gep_references: Mapping[str, ad.AnnData] | None, sim: SimulationConfig,
               tr: TrainConfig) -> tuple[dict, list[str], dict, dict, dict]:
    """Every check before any work: references, cell types, settings, GEP references.

    Returns
    -------
    tuple
        ``references``, ``cell_types``, ``reference_qc``, ``extra_refs`` (GEP references), ``extra_sim`` (their
        simulation settings).
    """
    references = _as_references(reference)
    cell_types = sorted(set().union(*(cell_types_of(ref) for ref in references.values())))
    reference_qc = {}
    for ref_name, ref in references.items():
        qc_messages = marker_qc_messages(check_reference_markers(ref), name=f"reference {ref_name!r}")
        for text in qc_messages:
            warnings.warn(text, BlueWarning, stacklevel=3)
        reference_qc[ref_name] = qc_messages
    if len(cell_types) < 2:
        raise BlueInputError(
            f"the reference has {len(cell_types)} cell type(s); BLUE needs at least 2 labelled cell types."
        )
    if not 0 < tr.validation_fraction < 1:
        raise BlueInputError(f"validation_fraction must be in (0, 1), got {tr.validation_fraction}.")
    if tr.epochs < 1 or tr.proportion_epochs < 1 or tr.batch_size < 1 or tr.lr <= 0 or tr.patience < 1:
        raise BlueInputError("epochs, proportion_epochs, batch_size and patience must be >= 1 and lr > 0.")
    for what, settings in (("simulation", sim.options or {}), ("gep_simulation", sim.gep_options or {})):
        bad = set(settings) & _SET_BY_TRAINING
        if bad:
            raise BlueInputError(f"{what}= may not set {sorted(bad)}; these are set by train_model.")
    extra_refs = _as_references(dict(gep_references)) if gep_references else {}
    extra_sim = {str(k): dict(v) for k, v in (sim.gep_reference_options or {}).items()}
    unknown = (set(extra_sim) - set(extra_refs)) | (set(extra_refs) & set(references))
    if tr.gep_early_stopping not in ("main", "all"):
        raise BlueInputError(f"gep_early_stopping must be 'main' or 'all', got {tr.gep_early_stopping!r}.")
    if unknown:
        raise BlueInputError(f"gep_reference_simulation / gep_references name {sorted(unknown)}: each GEP reference "
                             "needs its own name, different from the main references'.")
    for ref_name, ref in extra_refs.items():
        foreign = sorted(set(cell_types_of(ref)) - set(cell_types))
        if foreign:
            raise BlueInputError(f"GEP reference {ref_name!r} has cell types {foreign} that no main reference has; "
                                 "map them to the model's types or drop those cells.")
        bad = set(extra_sim.get(ref_name, {})) & _SET_BY_TRAINING
        if bad:
            raise BlueInputError(f"gep_reference_simulation[{ref_name!r}] may not set {sorted(bad)}.")
    return references, cell_types, reference_qc, extra_refs, extra_sim


def _split(refs: dict[str, ad.AnnData], tr: TrainConfig, what: str) -> dict[str, tuple[ad.AnnData, ad.AnnData]]:
    """Training / validation cells of each reference (``tr.split_seed``, else ``tr.seed``)."""
    out = {}
    for ref_name, ref in refs.items():
        train_r, val_r = validation_split(ref, fraction=tr.validation_fraction,
                                          seed=tr.seed if tr.split_seed is None else tr.split_seed)
        if val_r.n_obs == 0 or train_r.n_obs == 0:
            raise BlueInputError(f"the {what} {ref_name!r} is too small to hold out validation cells; add cells.")
        out[ref_name] = (train_r, val_r)
    return out


def _select_genes(splits: dict[str, tuple], references: dict[str, ad.AnnData], gs: GeneSelection
                  ) -> tuple[list[str], list[str], list[np.ndarray] | None]:
    """Input and output genes (selected on training cells unless given) and the input panels' masks."""
    selection = dict(exclude=gs.exclude, min_fold_change=gs.min_fold_change)
    input_genes, output_genes = gs.input_genes, gs.output_genes
    if input_genes is None:
        input_genes = _union([select_input_genes(tr, n_per_cell_type=gs.n_markers, panel=gs.input_panel, **selection)
                              for tr, _ in splits.values()])
    if output_genes is None:
        include = list(input_genes) if gs.outputs_include_inputs else []
        output_genes = _union([select_output_genes(tr, max_genes=max(gs.n_output_genes, 1), include=include,
                                                   **selection, **(gs.output_selection or {}))
                               for tr, _ in splits.values()], first=include, cap=max(gs.n_output_genes, 1))
    input_genes, output_genes = list(map(str, input_genes)), list(map(str, output_genes))
    measured = {r: set(map(str, ref.var_names)) for r, ref in references.items()}
    absent = [g for g in input_genes + output_genes if not any(g in m for m in measured.values())]
    if absent:
        raise BlueInputError(
            f"{len(absent)} requested genes are not in the reference (e.g. {absent[:3]}); pick genes among "
            "reference.var_names."
        )
    panel_masks = None
    if gs.input_panels:
        panel_masks = [np.isin(np.asarray(input_genes), list(map(str, genes))) for genes in gs.input_panels.values()]
        if any(not m.any() for m in panel_masks):
            raise BlueInputError("an input panel shares no gene with the input genes; check input_panels.")
    return input_genes, output_genes, panel_masks




def train_model(
    reference: ad.AnnData | Mapping[str, ad.AnnData] | Sequence[ad.AnnData],
    *,
    genes: GeneSelection | None = None,
    simulation: SimulationConfig | Mapping[str, Any] | None = None,
    training: TrainConfig | None = None,
    network: NetworkConfig | Mapping[str, Any] | None = None,
    gep_references: Mapping[str, ad.AnnData] | None = None,
    platform_profiles: pd.DataFrame | None = None,
    name: str = "blue-model",
    tissue: str | None = None,
    description: str = "",
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> BlueModel:
    """Train a BLUE model on pseudo-bulk simulated from a labelled single-cell reference.

    The run is four named steps: check the inputs (``_check_run``), select genes on training cells
    (``_select_genes``), simulate pseudo-bulk (``training_sets.simulate_sets``), train both branches (``fitting.train_network``); the
    card is written in one place (:func:`~blue_core.engine.card.training_card`).

    Parameters
    ----------
    reference
        Cells x genes AnnData, raw counts, ``obs['cell_type']`` (optional ``obs['donor']``); or several
        such references (a ``{name: AnnData}`` mapping or a list) with harmonised labels. With several, no
        genes are thrown away: the model's genes are the union of the per-reference selections, each
        pseudo-bulk is simulated from one reference (an equal share each), and the genes a reference did
        not measure are masked in that pseudo-bulk's input and GEP loss.
    genes
        :class:`~blue_core.engine.config.GeneSelection`: which genes the model reads and predicts (default: selected on
        the training cells only).
    simulation
        :class:`~blue_core.engine.config.SimulationConfig`: pseudo-bulk counts and ``simulate`` options; a plain mapping is
        taken as those options (``dirichlet_alpha``, ``rna_content``, ...), as before the configs.
    training
        :class:`~blue_core.engine.config.TrainConfig`: optimisation, early stopping, validation split, seeds. Only local
        generators are used; the process-wide ones are neither read nor changed.
    network
        :class:`~blue_core.engine.config.NetworkConfig` (or a mapping overriding its defaults).
    gep_references
        Condition-bearing references ``{name: AnnData}`` that only the GEP branch trains on (e.g. control and
        interferon-stimulated cells); per-reference settings in ``simulation.gep_reference_options``.
    platform_profiles
        Optional bulk profiles of sorted cells (genes x cell types): per reference, gene and type, the shrunk
        log-ratio to the type's single-cell mean becomes a factor on that type's simulated contribution
        (``simulation.platform_shrinkage``), so the network reads bulk as bulk RNA-seq measures the types.
    name, tissue, description
        Written to the model card.
    provenance
        Training-data provenance (datasets, accessions, citations, recipe), stored in the card.
    progress
        Optional callback ``progress(fraction, message)``.
    **settings
        The keyword names of the old signature (``n_markers=``, ``epochs=``, ``seed=``, ``gep_simulation=``, ...),
        each applied to its config (``_LEGACY``); an unknown name is refused.

    Returns
    -------
    BlueModel
        The trained model; ``model.card`` holds settings, provenance and validation metrics.
    """
    check_model_name(name)  # before any work: the name ends up in file and folder names
    gs, sim, tr, net_cfg = _resolve_configs(genes, simulation, training, network, settings)
    references, cell_types, reference_qc, extra_refs, extra_sim = _check_run(reference, gep_references, sim, tr)
    report = progress or (lambda fraction, message: None)
    t_start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if tr.threads:
        torch.set_num_threads(int(tr.threads))
    try:
        splits, extra_splits = _split(references, tr, "reference"), _split(extra_refs, tr, "GEP reference")
        report(0.01, "selecting genes")
        input_genes, output_genes, panel_masks = _select_genes(splits, references, gs)
        sets = simulate_sets(splits, extra_splits, cell_types=cell_types, input_genes=input_genes,
                             output_genes=output_genes, panel_masks=panel_masks, sim=sim, tr=tr, extra_sim=extra_sim,
                             platform_profiles=platform_profiles, report=report)
        net, history, validation, train_seconds = train_network(
            sets, cell_types=cell_types, input_genes=input_genes, output_genes=output_genes, net_cfg=net_cfg, tr=tr,
            has_gep_references=bool(extra_splits), report=report)
        report(0.99, "validated")
    finally:
        torch.set_num_threads(previous_threads)
    total_seconds = time.perf_counter() - t_start
    card = training_card(tissue=tissue, description=description, provenance=provenance, references=references,
                          splits=splits, reference_qc=reference_qc, gs=gs, sim=sim, tr=tr, sets=sets,
                          extra_refs=extra_refs, extra_sim=extra_sim, input_genes=input_genes,
                          output_genes=output_genes, cell_types=cell_types, panel_masks=panel_masks,
                          platform_profiles=platform_profiles, history=history, validation=validation,
                          seconds=(total_seconds, train_seconds),
                          profiles=reference_profiles([t for t, _ in splits.values()], output_genes=output_genes,
                                                      cell_types=cell_types))
    logger.info("trained %r in %.0f s; validation %s", name, total_seconds, validation)
    model = BlueModel(name, cell_types, input_genes, output_genes, dict(PREPROCESSING), net, card)
    report(0.995, "simulating the adaptation bank")
    model.adaptation_bank = build_bank(model, {r: t for r, (t, _) in splits.items()},
                                       n_samples=min(2000, sim.n_samples), cells_per_sample=sim.cells_per_sample,
                                       simulation=dict(sim.options or {}),
                                       per_reference={r: {"type_gene_factors": f} for r, f in sets.factors_by_ref.items()})
    model.card["adaptation_bank"] = bank_rule("training")
    report(1.0, "done")
    return model
