"""Ensembles: several trained members read as one model, with per-sample proportion intervals.

Members are :class:`~blue_core.engine.model.BlueModel` s with the same cell types, genes, preprocessing and
network architecture -- in practice one recipe trained with different seeds on one shared
training/validation split (``train_model(..., seed=s, split_seed=0)``), so that no member has trained
on the validation cells. :func:`build_ensemble` stacks them into one model (one safetensors file with
member-prefixed tensors, one card listing the members) and calibrates the intervals on validation
pseudo-bulk simulated from those held-out cells: per cell type, ``sigma_k`` is the ensemble mean's
RMSE there, and ``spread_threshold`` is the 99 % quantile of the members' largest disagreement (a
sample above it is flagged ``members_disagree``). See :func:`~blue_core.engine.inference.proportion_intervals`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..exceptions import BlueInputError
from .calibration import Z90, proportion_intervals
from .model import BlueModel, preprocess
from .simulation import simulate
from .card import check_validation_cells, ensemble_card, recorded_split
from .reference_cells import validation_split

__all__ = ["build_ensemble", "real_cohort_sigma"]

logger = logging.getLogger(__name__)


def build_ensemble(
    members: Sequence[BlueModel],
    *,
    name: str | None = None,
    references: ad.AnnData | Mapping[str, ad.AnnData] | None = None,
    validation_fraction: float | None = None,
    split_seed: int | None = None,
    n_validation: int = 600,
    cells_per_sample: int = 500,
    seed: int = 2024,
    rna_content: Any = None,
) -> BlueModel:
    """Stack trained members into one ensemble model and calibrate its intervals.

    Parameters
    ----------
    members
        Two or more models with identical cell types, input/output genes and network configuration.
    name
        Name of the ensemble (default: the first member's).
    references
        The training reference(s) of the members (as given to ``train_model``). Their validation cells
        (``reference_cells.validation_split``, the split the members trained on) are used to calibrate
        the intervals; where the members' cards record those cells (``training.validation_cells``), the same cells
        must come out, or the references are refused. Without references the intervals use the members' spread
        only (stated in the card).
    validation_fraction, split_seed
        The split the members were trained with; default (None): read from the members' cards, which must agree
        (a value given here must equal theirs).
    n_validation
        Validation pseudo-bulks simulated for the calibration (shared equally by the references).
    cells_per_sample, seed
        Simulation of the calibration pseudo-bulks.
    rna_content
        The members' ``simulation.rna_content`` (if they trained with one): the calibration pseudo-bulks carry it
        too, so that a fraction means what it meant in training.

    Returns
    -------
    BlueModel
        ``n_members`` networks; ``card["members"]`` lists each member's seed, training time and validation
        metrics; ``card["intervals"]`` holds ``z``, ``sigma_by_type``, ``spread_threshold`` and how they were
        obtained.
    """
    members = list(members)
    if len(members) < 2:
        raise BlueInputError(f"an ensemble needs at least 2 members, got {len(members)}.")
    first = members[0]
    for other in members[1:]:
        for what in ("cell_types", "input_genes", "output_genes"):
            if getattr(other, what) != getattr(first, what):
                raise BlueInputError(
                    f"member {other.name!r} has different {what.replace('_', ' ')} than {first.name!r}; ensemble "
                    "members must be trained with one split (split_seed) and the same gene selection."
                )
        if other.network.config != first.network.config:
            raise BlueInputError("ensemble members must share one network configuration.")
    validation_fraction, split_seed = _members_split(members, validation_fraction, split_seed)
    networks = [net for m in members for net in m.networks]
    card = ensemble_card(members)
    model = BlueModel(name or first.name, first.cell_types, first.input_genes, first.output_genes,
                      first.preprocessing, networks, card)
    model.adaptation_bank = first.adaptation_bank  # one bank for all members (same split and bank seed)
    model.card["intervals"] = _calibrate(model, references, validation_fraction, split_seed, n_validation,
                                         cells_per_sample, seed, rna_content)
    logger.info("ensemble %r: %d members, intervals %s", model.name, model.n_members, model.card["intervals"])
    return model


def _members_split(members: Sequence[BlueModel], validation_fraction: float | None,
                   split_seed: int | None) -> tuple[float, int]:
    """The validation split the members trained on, from their cards (they must agree; a given value must match)."""
    recorded = {recorded_split(m.card) for m in members}
    if len(recorded) > 1:
        raise BlueInputError(f"ensemble members were trained on different validation splits {sorted(recorded)} "
                             "(validation_fraction, split_seed); train them with one split_seed.")
    fraction, seed = recorded.pop()
    for given, own, what in ((validation_fraction, fraction, "validation_fraction"), (split_seed, seed, "split_seed")):
        if given is not None and given != own:
            raise BlueInputError(f"{what}={given} was given, but the members were trained with {what}={own}; "
                                 "leave it out (the members' cards say which split they held out).")
    return fraction, seed


def _calibrate(model: BlueModel, references: Any, validation_fraction: float, split_seed: int, n_validation: int,
               cells_per_sample: int, seed: int, rna_content: Any = None) -> dict[str, Any]:
    if references is None:
        return dict(z=Z90, sigma_by_type={t: 0.0 for t in model.cell_types}, spread_threshold=None,
                    rule="members' spread only (no validation cells given: intervals are not calibrated)")
    refs = {"reference": references} if isinstance(references, ad.AnnData) else dict(references)
    truths, members_all = [], []
    for r, (ref_name, ref) in enumerate(refs.items()):
        _, val = validation_split(ref, fraction=validation_fraction, seed=split_seed)
        check_validation_cells(model.card, list(val.obs_names), reference=ref_name)  # never on cells a member saw
        pb = simulate(val, max(50, n_validation // len(refs)), cells_per_sample=cells_per_sample,
                      cell_types=model.cell_types, seed=seed + r, rna_content=rna_content)
        present = model.match_genes(pb.genes).present  # the rule deconvolve reads a bulk with
        in_pos = pd.Index(pb.genes).get_indexer(model.input_genes)
        values = np.zeros((pb.n_samples, len(model.input_genes)))
        values[:, present] = pb.bulk[:, in_pos[present]]
        member_props, _ = model.predict_members(preprocess(values, present))
        truths.append(pb.proportions[model.cell_types].to_numpy())
        members_all.append(member_props)
    truth = np.concatenate(truths)
    member_props = np.concatenate(members_all, axis=1)
    mean = member_props.mean(axis=0)
    sigma = np.sqrt(np.mean((mean - truth) ** 2, axis=0))
    _, _, spread = proportion_intervals(member_props, calibration=None, cell_types=model.cell_types)
    calibration = dict(z=Z90, sigma_by_type={t: float(v) for t, v in zip(model.cell_types, sigma)},
                       spread_threshold=float(np.quantile(spread.max(axis=1), 0.99)),
                       rule=("half-width z * sqrt(member SD^2 + sigma_k^2); sigma_k = the ensemble's RMSE on "
                             f"{truth.shape[0]} validation pseudo-bulks from held-out cells; spread_threshold = 99% "
                             "quantile of the largest member SD there"))
    lo, hi, _ = proportion_intervals(member_props, calibration=calibration, cell_types=model.cell_types)
    calibration["validation_coverage"] = float(np.mean((truth >= lo) & (truth <= hi)))
    return calibration


#: How ``card["intervals"]["real_cohorts"]`` was made (quoted in the card and in bench/results/intervals.md).
REAL_SIGMA_RULE = ("real_k = RMSE of the installed model's proportion of type k against the measured share on real "
                   "cohorts (the measured share of the scored groups, scaled to the share the model gives those "
                   "groups); a type no cohort measures takes the largest real_k measured")


def real_cohort_sigma(residuals: pd.DataFrame, cell_types: Sequence[str]) -> dict[str, float]:
    """Per cell type, the real-cohort error term of the intervals (``REAL_SIGMA_RULE``).

    Parameters
    ----------
    residuals
        Long table with columns ``cell_type`` and ``residual`` (model proportion minus measured share on the model's
        scale, one row per real sample and type measured one to one), from one or more real cohorts.
    cell_types
        The model's types, in order.

    Returns
    -------
    dict
        Type -> RMSE (fraction of cells); unmeasured types take the largest measured value.

    Raises
    ------
    BlueInputError
        When no residual is given (nothing measured: the intervals would not be calibrated on real data).
    """
    if residuals.empty:
        raise BlueInputError("No real-cohort residuals were given: the intervals cannot be calibrated on real data.")
    rmse = residuals.groupby("cell_type")["residual"].apply(lambda r: float(np.sqrt(np.mean(np.square(r)))))
    largest = float(rmse.max())
    return {t: float(rmse.get(t, largest)) for t in cell_types}
