"""The pseudo-bulk sets a training run learns from: per reference, mixed across references, with platform
factors and panel dropout, as network tensors (:func:`simulate_sets`); and each type's reference profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .._types import Progress
from .config import SimulationConfig, TrainConfig
from .model import preprocess
from .simulation import PseudoBulk, simulate
from .reference_cells import check_reference

__all__ = ["platform_factors", "reference_profiles", "SimulatedSets", "simulate_sets", "concat_sets", "MIXED"]


def _panel_inputs(values: np.ndarray, panel_masks: Sequence[np.ndarray] | None, seed: int) -> np.ndarray:
    """Preprocess ``values`` (n, G_in); with panels, each sample sees the genes of one random panel only.

    Panel dropout: a model whose input genes are the union of several bulk gene panels (e.g. the
    TCGA-LAML 714-gene and TARGET-AML 1,984-gene panels) learns to read any one of them, exactly as
    :func:`~blue_core.engine.inference.deconvolve` presents a cohort measured on one panel (missing genes
    ignored in the normalisation and set to the sample mean after standardisation).
    """
    if not panel_masks:
        return preprocess(values)
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, len(panel_masks), size=values.shape[0])
    out = np.empty(values.shape, dtype=np.float32)
    for k, mask in enumerate(panel_masks):
        rows = np.flatnonzero(choice == k)
        if rows.size:
            out[rows] = preprocess(values[rows], mask)
    return out


def platform_factors(
    reference: ad.AnnData, profiles: pd.DataFrame, *, cell_types: Sequence[str], shrinkage: float = 0.5,
    clip: float = 3.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per cell type and gene, how bulk RNA-seq of sorted cells reads relative to single-cell pseudo-bulk.

    Parameters
    ----------
    reference
        Cells x genes (raw counts, ``obs['cell_type']``): the training cells of one reference.
    profiles
        Genes x cell types, bulk RNA-seq of sorted cells (linear; renormalised here).
    cell_types
        The model's cell types (order of the returned rows).
    shrinkage
        Fraction of the log-ratio applied (0 = no calibration, 1 = full).
    clip
        Bound of the natural-log ratio before shrinkage.

    Returns
    -------
    tuple
        ``factors (K, G)`` float32 over the reference's genes (1 where a gene or type has no profile) and a
        summary (types calibrated, genes shared, median |log factor|).
    """
    genes = pd.Index([str(g) for g in reference.var_names])
    prof = profiles.copy()
    prof.index = prof.index.astype(str)
    prof = prof[~prof.index.duplicated()]
    shared = genes.intersection(prof.index)
    factors = np.ones((len(cell_types), len(genes)), dtype=np.float32)
    if len(shared) < 100 or shrinkage <= 0:
        return factors, dict(types=[], n_shared_genes=int(len(shared)))
    X = check_reference(reference)
    pos = genes.get_indexer(shared)
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    done, sizes = [], []
    for k, cell_type in enumerate(cell_types):
        if cell_type not in prof.columns or not (labels == cell_type).any():
            continue
        sc = np.asarray(X[labels == cell_type][:, pos].sum(axis=0), dtype=np.float64).ravel()
        bulk = prof.loc[shared, cell_type].to_numpy(dtype=np.float64)
        if sc.sum() <= 0 or bulk.sum() <= 0:
            continue
        sc_cpm, bulk_cpm = sc / sc.sum() * 1e6, bulk / bulk.sum() * 1e6
        log_ratio = np.clip(np.log((bulk_cpm + 1.0) / (sc_cpm + 1.0)), -clip, clip) * shrinkage
        factors[k, pos] = np.exp(log_ratio).astype(np.float32)
        done.append(cell_type)
        sizes.append(float(np.median(np.abs(log_ratio))))
    return factors, dict(types=done, n_shared_genes=int(len(shared)),
                         median_abs_log_factor=float(np.median(sizes)) if sizes else 0.0)


#: Name of the cross-reference mixtures in cards and summaries.
MIXED = "mixed (all references, shared genes)"


def _allocate(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``n`` samples by ``shares`` (largest remainders); one share: all of ``n``."""
    total = sum(shares.values())
    raw = {k: n * v / total for k, v in shares.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    return out


def reference_profiles(
    references: Sequence[ad.AnnData], *, output_genes: Sequence[str], cell_types: Sequence[str]
) -> dict[str, Any]:
    """Each cell type's mean profile in the (training cells of the) references, CPM over the output genes.

    What a model would say without deconvolving expression: the app shows predicted GEPs against it, so
    that a user sees what is sample-specific. Per reference, the mean per-cell CPM of each type over the
    output genes it measured; averaged over the references that hold the type (per gene where measured);
    each type's profile renormalised to 1e6 over the output genes.

    Returns
    -------
    dict
        ``{"units": ..., "values": {cell type: [G_out floats]}}`` (types absent from every reference left out).
    """
    from .baselines import signature_from_reference

    genes = list(map(str, output_genes))
    total = pd.DataFrame(0.0, index=genes, columns=list(cell_types))
    count = pd.DataFrame(0.0, index=genes, columns=list(cell_types))
    for ref in references:
        measured = set(map(str, ref.var_names))
        present = [g for g in genes if g in measured]
        signature = signature_from_reference(ref, genes=present)
        for cell_type in signature.columns:
            if cell_type in total.columns:
                total.loc[present, cell_type] += signature[cell_type].to_numpy()
                count.loc[present, cell_type] += 1.0
    values = {}
    for cell_type in cell_types:
        if count[cell_type].sum() == 0:
            continue
        mean = (total[cell_type] / count[cell_type].where(count[cell_type] > 0)).fillna(0.0)
        mean = mean / mean.sum() * 1e6 if mean.sum() > 0 else mean
        values[cell_type] = [float(f"{v:.4g}") for v in mean.to_numpy()]
    return {"units": "CPM over the model's output genes (mean of the training cells' per-cell CPM)", "values": values}


def _reference_tensors(
    reference: ad.AnnData,
    n: int,
    input_genes: list[str],
    output_genes: list[str],
    cell_types: list[str],
    cells_per_sample: int,
    sim_kwargs: dict[str, Any],
    seed: int,
    panel_masks: Sequence[np.ndarray] | None,
    progress: Progress,
    *,
    in_place: bool = False,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], PseudoBulk, np.ndarray]:
    """Simulate ``n`` pseudo-bulks from one reference; network input, targets and gene mask.

    Genes the reference did not measure are treated as missing: left out of the input normalisation
    (set to the sample mean after standardisation, as :func:`~blue_core.engine.inference.deconvolve` does for
    genes missing from a user's bulk) and masked out of the GEP loss.

    Returns
    -------
    tuple
        ``((x (n, G_in), p (n, K), g (n, K, G_out) log1p CPM, mask (n, G_out) bool or None), the
        PseudoBulk over the reference's output genes, out_mask (G_out,) bool)``.
    """
    genes = pd.Index([str(v) for v in reference.var_names])
    in_pos = genes.get_indexer(input_genes)
    in_mask = in_pos >= 0
    out_mask = genes.get_indexer(output_genes) >= 0
    out_r = [gene for gene, ok in zip(output_genes, out_mask) if ok]
    pb = simulate(reference, n, cells_per_sample=cells_per_sample, output_genes=out_r, cell_types=cell_types,
                  seed=seed, progress=progress, **sim_kwargs)
    values = np.zeros((n, len(input_genes)), dtype=pb.bulk.dtype)
    values[:, in_mask] = pb.bulk[:, in_pos[in_mask]]
    if in_mask.all():
        masks = panel_masks
    else:
        masks = [pm & in_mask for pm in panel_masks] if panel_masks else [in_mask]
    x = torch.from_numpy(_panel_inputs(values, masks, seed))
    p = torch.from_numpy(pb.proportions.to_numpy(dtype=np.float32))
    if out_mask.all():
        profiles = np.log1p(pb.profiles, out=pb.profiles) if in_place else np.log1p(pb.profiles)
        mask = None
    else:
        profiles = np.zeros((n, len(cell_types), len(output_genes)), dtype=np.float32)
        profiles[:, :, out_mask] = np.log1p(pb.profiles)
        mask = torch.from_numpy(np.broadcast_to(out_mask, (n, len(output_genes))).copy())
    return (x, p, torch.from_numpy(profiles), mask), pb, out_mask


def concat_sets(parts: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stack the tensors of several references' pseudo-bulks (one part: returned as is).

    Returns
    -------
    tuple
        ``x (n, G_in)``, ``p (n, K)``, ``g (n, K, G_out)`` and the gene mask ``(n, G_out)`` or None.
    """
    if len(parts) == 1:
        return parts[0]
    x, p, g = (torch.cat([part[k] for part in parts]) for k in range(3))
    if all(part[3] is None for part in parts):
        return x, p, g, None
    masks = [part[3] if part[3] is not None else torch.ones(part[2].shape[0], part[2].shape[2], dtype=torch.bool)
             for part in parts]
    return x, p, g, torch.cat(masks)


@dataclass
class SimulatedSets:
    """The pseudo-bulk sets of a training run (:func:`simulate_sets`): ``plain`` (train tensors, validation
    tensors, validation sets, validation parts) for the proportion branch, ``gep`` the GEP branch's own or None."""

    plain: tuple  # (train tensors, validation tensors, validation sets, validation parts)
    gep: tuple | None  # the GEP branch's own sets, or None
    shares: dict[str, float]
    sim_splits: dict[str, tuple]
    n_val: int
    factors_by_ref: dict[str, np.ndarray]
    calibration: dict[str, Any]


def simulate_sets(splits: dict, extra_splits: dict, *, cell_types: list[str], input_genes: list[str],
                  output_genes: list[str], panel_masks: list[np.ndarray] | None, sim: SimulationConfig,
                  tr: TrainConfig, extra_sim: dict, platform_profiles: pd.DataFrame | None, report: Progress
                  ) -> SimulatedSets:
    """The training and validation pseudo-bulks: per reference (and mixed across references), plain for the
    proportion branch and, when the GEP branch has its own settings or references, its own set.

    Parameters
    ----------
    splits, extra_splits
        ``{reference name: (training cells, validation cells)}`` of the main references and of the GEP branch's
        own references.

    Returns
    -------
    SimulatedSets
        The tensors, validation sets, shares and platform calibration of the run.
    """
    n_val = sim.n_validation_samples or max(200, sim.n_samples // 8)
    sim_splits = dict(splits)
    shares = {name: 1.0 for name in splits}
    if sim.mixed_fraction > 0 and len(splits) > 1:
        # Mixtures across references: cells of every reference on the genes they all measured (other
        # genes masked), so that types found in different references meet in one pseudo-bulk.
        sim_splits[MIXED] = tuple(
            ad.concat([part[k] for part in splits.values()], join="inner", merge="same") for k in (0, 1))
        for part in sim_splits[MIXED]:
            part.obs["cell_type"] = pd.Categorical(part.obs["cell_type"].astype(str))
        shares = {name: (1.0 - sim.mixed_fraction) / len(splits) for name in splits}
        shares[MIXED] = sim.mixed_fraction
    calibration: dict[str, Any] = {}
    factors_by_ref: dict[str, np.ndarray] = {}
    if platform_profiles is not None:  # once per reference, shared by the plain and the GEP-branch sets
        for ref_name, (train_r, _) in splits.items():
            factors_by_ref[ref_name], calibration[ref_name] = platform_factors(
                train_r, platform_profiles, cell_types=cell_types, shrinkage=sim.platform_shrinkage)

    def one_pass(kwargs: dict[str, Any], seed_shift: int, span: tuple[float, float], parts: dict[str, tuple],
                      n_train: dict[str, int], n_valid: dict[str, int]) -> tuple:
        train_parts, val_parts, val_sets = [], [], []
        for r, (ref_name, (train_r, val_r)) in enumerate(parts.items()):
            lo = span[0] + (span[1] - span[0]) * r / len(parts)
            hi = span[0] + (span[1] - span[0]) * (r + 1) / len(parts)
            part_seed = tr.seed + 1000 * r + seed_shift
            factors = factors_by_ref.get(ref_name)  # none for the cross-reference mixtures
            part_kwargs = {**kwargs, **extra_sim.get(ref_name, {})}
            if factors is not None:
                part_kwargs["type_gene_factors"] = factors
            train_parts.append(_reference_tensors(
                train_r, n_train[ref_name], input_genes, output_genes, cell_types, sim.cells_per_sample, part_kwargs,
                part_seed, panel_masks, _sub_progress(report, lo, lo + 0.8 * (hi - lo)), in_place=True)[0])
            tensors, val_pb, out_mask = _reference_tensors(
                val_r, n_valid[ref_name], input_genes, output_genes, cell_types, sim.cells_per_sample, part_kwargs,
                part_seed + 1, panel_masks, _sub_progress(report, lo + 0.8 * (hi - lo), hi))
            val_parts.append(tensors)
            val_sets.append((val_pb, out_mask))
        return concat_sets(train_parts), concat_sets(val_parts), val_sets, val_parts

    sim_kwargs = dict(sim.options or {})
    gep_branch_own = bool(sim.gep_options) or bool(extra_splits)
    split_span = (0.02, 0.11) if gep_branch_own else (0.02, 0.2)
    plain = one_pass(sim_kwargs, 0, split_span, sim_splits, _allocate(sim.n_samples, shares),
                          _allocate(n_val, shares))
    gep_sets = None
    if gep_branch_own:
        # The GEP branch learns from its own pseudo-bulks (e.g. state-varying, or with condition-bearing
        # references); the proportion branch, which shares no parameter with it, keeps the plain ones:
        # proportions are unchanged by it.
        gep_parts = {**sim_splits, **extra_splits}
        gep_shares = {**shares, **{name: sum(shares.values()) / len(shares) for name in extra_splits}}
        gep_sets = one_pass({**sim_kwargs, **(sim.gep_options or {})}, 500, (0.11, 0.2), gep_parts,
                                 _allocate(sim.n_samples, gep_shares), _allocate(n_val, gep_shares))
    return SimulatedSets(plain, gep_sets, shares, sim_splits, n_val, factors_by_ref, calibration)


def _sub_progress(report: Progress, lo: float, hi: float) -> Progress:
    return lambda f, m: report(lo + (hi - lo) * f, m)
