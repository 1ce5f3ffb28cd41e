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
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .._types import Progress
from .._version import __version__
from .config import GeneSelection, NetworkConfig, SimulationConfig, TrainConfig
from ..exceptions import BlueInputError, BlueWarning
from ..io.files import check_model_name
from .gene_selection import select_input_genes, select_output_genes
from .model import PREPROCESSING, BlueModel, preprocess
from .network import BlueNet
from .qc import check_reference_markers, marker_qc_messages
from .adaptation import build_bank
from .simulation import PseudoBulk, check_reference, cell_types_of, rna_content_factors, simulate, split_reference

__all__ = ["Loss", "blue_loss", "train_model", "platform_factors", "DEFAULT_NETWORK", "reference_profiles"]

logger = logging.getLogger(__name__)


#: Default BlueNet hyper-parameters, from their one home :class:`~blue_core.engine.config.NetworkConfig`.
DEFAULT_NETWORK: dict[str, Any] = NetworkConfig().as_dict()

#: Quantile of validation fit scores used as the poorly-explained threshold.
FIT_QUANTILE = 0.01


@dataclass
class Loss:
    """BLUE loss and its parts (tensors): ``total = gep + proportion_weight * proportion``."""

    total: torch.Tensor
    gep: torch.Tensor
    proportion: torch.Tensor


def blue_loss(
    pred_proportions: torch.Tensor,
    pred_gep: torch.Tensor,
    *,
    proportions: torch.Tensor,
    gep: torch.Tensor,
    proportion_weight: float = 100.0,
    gene_mask: torch.Tensor | None = None,
) -> Loss:
    """BLUE loss on a batch.

    Parameters
    ----------
    pred_proportions, proportions
        ``(B, K)`` predicted and true cell fractions.
    pred_gep, gep
        ``(B, K, G_out)`` predicted and true GEPs, log1p(CPM).
    proportion_weight
        Weight of the proportion MSE (100 in the paper).
    gene_mask
        ``(B, G_out)`` bool, genes measured by the reference each sample was simulated from (multi-reference
        training); unmeasured genes do not count. Default: all genes count.

    Returns
    -------
    Loss
        ``gep`` = sum over cell types of the per-gene MSE averaged over samples, weighted by the type's
        cell fraction (0 where absent); ``proportion`` = MSE over all (sample, type) pairs.
    """
    gep_loss = _gep_mse(pred_gep, gep, proportions, gene_mask)
    proportion_loss = ((pred_proportions - proportions) ** 2).mean()
    return Loss(gep_loss + proportion_weight * proportion_loss, gep_loss, proportion_loss)


def _gep_mse(
    pred_gep: torch.Tensor, gep: torch.Tensor, proportions: torch.Tensor, gene_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over cell types of the per-gene MSE, averaged over samples with weights = the type's cell fraction.

    The target profile of a type is the mean of the cells of that type drawn into the sample, so its
    sampling variance falls like 1 / (number of cells): weighting each (sample, type) by the cell
    fraction is inverse-variance weighting, and gives absent types weight 0 (they have no profile).
    """
    weight = proportions.to(pred_gep.dtype)
    if gene_mask is None:
        per_type = ((pred_gep - gep) ** 2).mean(dim=-1)
    else:  # mean over the genes the sample's reference measured
        mask = gene_mask.to(pred_gep.dtype)[:, None, :]
        per_type = (((pred_gep - gep) ** 2) * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
    return ((per_type * weight).sum(0) / weight.sum(0).clamp(min=1e-8)).sum()


def _branch_loss(
    net: BlueNet, branch: str, x: torch.Tensor, p: torch.Tensor, g: torch.Tensor, proportion_weight: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The part of the BLUE loss that depends on one branch's parameters."""
    if branch == "proportion":
        return proportion_weight * ((net.forward_proportions(x) - p) ** 2).mean()
    return _gep_mse(net.forward_gep(x), g, p, mask)


def _fit_branch(
    net: BlueNet,
    branch: str,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    proportion_weight: float,
    seed: int,
    history: list[dict[str, Any]],
    report: Progress,
    masks: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
) -> int:
    """Train one branch with Adam and early stopping on its validation loss; keep its best epoch.

    ``masks``: per-sample gene masks ``(n, G_out)`` of the training and validation sets (multi-reference
    training), or None.
    """
    params = net.branch_parameters(branch)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, patience // 2))
    generator = torch.Generator().manual_seed(seed + (0 if branch == "proportion" else 1))
    x, p, g = train
    vx, vp, vg = val
    best_loss, best_epoch, best_state = math.inf, 0, [q.detach().clone() for q in params]
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(x.shape[0], generator=generator)
        running = 0.0
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = _branch_loss(net, branch, x[idx], p[idx], g[idx], proportion_weight,
                                None if masks[0] is None else masks[0][idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += idx.numel() * loss.item()
        net.eval()
        with torch.inference_mode():
            if branch == "proportion":
                pred = torch.cat([net.forward_proportions(vx[i : i + 1024]) for i in range(0, vx.shape[0], 1024)])
                v_loss = proportion_weight * ((pred - vp) ** 2).mean().item()
            else:
                pred = torch.cat([net.forward_gep(vx[i : i + 512]) for i in range(0, vx.shape[0], 512)])
                v_loss = _gep_mse(pred, vg, vp, masks[1]).item()
        scheduler.step(v_loss)
        history.append(dict(branch=branch, epoch=epoch, train_loss=running / x.shape[0], val_loss=v_loss,
                            lr=optimizer.param_groups[0]["lr"]))
        logger.info("%s branch, epoch %d: train %.4f, validation %.4f", branch, epoch, running / x.shape[0], v_loss)
        if v_loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = v_loss, epoch, [q.detach().clone() for q in params]
        report(epoch / epochs, f"{branch} branch, epoch {epoch}/{epochs}: validation loss {v_loss:.4f}")
        if epoch - best_epoch >= patience:
            logger.info("%s branch: early stop at epoch %d (best %d)", branch, epoch, best_epoch)
            break
    with torch.no_grad():
        for q, saved in zip(params, best_state):
            q.copy_(saved)
    return best_epoch


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


#: simulate() arguments that train_model sets itself (not allowed in simulation= / gep_simulation=).
_SET_BY_TRAINING = frozenset({"reference", "n_samples", "seed", "output_genes", "cell_types", "progress"})

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


def _concat(parts: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stack the tensors of several references' pseudo-bulks (one part: returned as is)."""
    if len(parts) == 1:
        return parts[0]
    x, p, g = (torch.cat([part[k] for part in parts]) for k in range(3))
    if all(part[3] is None for part in parts):
        return x, p, g, None
    masks = [part[3] if part[3] is not None else torch.ones(part[2].shape[0], part[2].shape[2], dtype=torch.bool)
             for part in parts]
    return x, p, g, torch.cat(masks)


def _type_means(p: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Each type's mean GEP ``(K, G_out)`` over samples, weighted by its fraction (and the gene mask)."""
    if mask is None:
        weight = p / p.sum(0).clamp(min=1e-8)
        return torch.einsum("nk,nkg->kg", weight, g)
    m = mask.to(g.dtype)
    return torch.einsum("nk,ng,nkg->kg", p, m, g) / torch.einsum("nk,ng->kg", p, m).clamp(min=1e-8)


def _reference_summary(references: dict[str, ad.AnnData], splits: dict[str, tuple]) -> dict[str, Any]:
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


def _evaluate(
    network: BlueNet, x: torch.Tensor, p: torch.Tensor, g: torch.Tensor, proportion_weight: float, batch_size: int,
    mask: torch.Tensor | None = None,
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    network.eval()
    totals = np.zeros(3)
    preds_p, preds_g = [], []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            pp, gg = network(x[sl])
            loss = blue_loss(pp, gg, proportions=p[sl], gep=g[sl], proportion_weight=proportion_weight,
                             gene_mask=None if mask is None else mask[sl])
            w = pp.shape[0]
            totals += w * np.array([loss.total.item(), loss.gep.item(), loss.proportion.item()])
            preds_p.append(pp.numpy())
            preds_g.append(gg.numpy())
    totals /= x.shape[0]
    return totals[0], totals[1], totals[2], np.concatenate(preds_p), np.concatenate(preds_g)


def _validation_metrics(
    val_sets: list[tuple[PseudoBulk, np.ndarray]], pred_p: np.ndarray, pred_g_log: np.ndarray
) -> dict[str, float]:
    """Validation metrics pooled over references (``val_sets``: each reference's validation PseudoBulk and
    its output-gene mask, in the order their samples were stacked)."""
    from .inference import fit_scores
    from ..analysis.metrics import ccc, pearson

    true_all, rs_by_type, fits = [], {}, []
    start = 0
    for pb, out_mask in val_sets:
        sl = slice(start, start + pb.n_samples)
        start += pb.n_samples
        true_p = pb.proportions.to_numpy()
        true_all.append(true_p)
        true_g = np.log1p(pb.profiles)
        pred_g = pred_g_log[sl][:, :, out_mask]
        present = true_p > 0
        for k in range(true_p.shape[1]):
            per_sample = [pearson(true_g[i, k], pred_g[i, k]) for i in np.flatnonzero(present[:, k])[:200]]
            rs_by_type.setdefault(k, []).extend(r for r in per_sample if math.isfinite(r))
        out_idx = np.array([pb.genes.index(gene) for gene in pb.output_genes])
        fit = fit_scores(pred_p[sl], np.expm1(pred_g), bulk=pb.bulk[:, out_idx])
        fits.append(fit[np.isfinite(fit)])
    true_p = np.concatenate(true_all)
    rs = [float(np.median(v)) for _, v in sorted(rs_by_type.items()) if v]
    fit = np.concatenate(fits)
    return dict(
        proportion_ccc=ccc(true_p, pred_p),
        proportion_rmse=float(np.sqrt(np.mean((true_p - pred_p) ** 2))),
        gep_pearson_log1p_median=float(np.median(rs)) if rs else float("nan"),
        fit_r_median=float(np.median(fit)) if fit.size else float("nan"),
        fit_r_threshold=float(np.quantile(fit, FIT_QUANTILE)) if fit.size else float("nan"),
        fit_r_threshold_rule=f"{FIT_QUANTILE:.0%} quantile of the fit score on validation pseudo-bulk",
        n_validation_samples=int(true_p.shape[0]),
    )


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
        train_r, val_r, _ = split_reference(
            ref, fractions=(1.0 - tr.validation_fraction, tr.validation_fraction, 0.0),
            seed=tr.seed if tr.split_seed is None else tr.split_seed,
        )
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


@dataclass
class _Simulated:
    """The pseudo-bulk sets of a run (``_simulate_all``)."""

    plain: tuple  # (train tensors, validation tensors, validation sets, validation parts)
    gep: tuple | None  # the GEP branch's own sets, or None
    shares: dict[str, float]
    sim_splits: dict[str, tuple]
    n_val: int
    factors_by_ref: dict[str, np.ndarray]
    calibration: dict[str, Any]


def _simulate_all(splits: dict, extra_splits: dict, cell_types: list[str], input_genes: list[str],
                  output_genes: list[str], panel_masks: list[np.ndarray] | None, sim: SimulationConfig,
                  tr: TrainConfig, extra_sim: dict, platform_profiles: pd.DataFrame | None, report: Progress
                  ) -> _Simulated:
    """The training and validation pseudo-bulks: per reference (and mixed across references), plain for the
    proportion branch and, when the GEP branch has its own settings or references, its own set."""
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

    def simulate_sets(kwargs: dict[str, Any], seed_shift: int, span: tuple[float, float], parts: dict[str, tuple],
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
        return _concat(train_parts), _concat(val_parts), val_sets, val_parts

    sim_kwargs = dict(sim.options or {})
    gep_branch_own = bool(sim.gep_options) or bool(extra_splits)
    split_span = (0.02, 0.11) if gep_branch_own else (0.02, 0.2)
    plain = simulate_sets(sim_kwargs, 0, split_span, sim_splits, _allocate(sim.n_samples, shares),
                          _allocate(n_val, shares))
    gep_sets = None
    if gep_branch_own:
        # The GEP branch learns from its own pseudo-bulks (e.g. state-varying, or with condition-bearing
        # references); the proportion branch, which shares no parameter with it, keeps the plain ones:
        # proportions are unchanged by it.
        gep_parts = {**sim_splits, **extra_splits}
        gep_shares = {**shares, **{name: sum(shares.values()) / len(shares) for name in extra_splits}}
        gep_sets = simulate_sets({**sim_kwargs, **(sim.gep_options or {})}, 500, (0.11, 0.2), gep_parts,
                                 _allocate(sim.n_samples, gep_shares), _allocate(n_val, gep_shares))
    return _Simulated(plain, gep_sets, shares, sim_splits, n_val, factors_by_ref, calibration)


def _sub_progress(report: Progress, lo: float, hi: float) -> Progress:
    return lambda f, m: report(lo + (hi - lo) * f, m)


def _train_network(sets: _Simulated, cell_types: list[str], input_genes: list[str], output_genes: list[str],
                   net_cfg: NetworkConfig, tr: TrainConfig, has_gep_references: bool, report: Progress
                   ) -> tuple[BlueNet, list[dict[str, Any]], dict[str, Any], float]:
    """Both branches, each on its own loss term with its own early stopping; then the validation metrics.

    Returns
    -------
    tuple
        ``net``, ``history`` (one row per epoch), ``validation`` (metrics), ``train_seconds``.
    """
    torch_generator = torch.Generator().manual_seed(tr.seed)
    (x, p, g, m), (vx, vp, vg, vm), val_sets, _ = sets.plain
    gep_sets = sets.gep
    net = BlueNet(len(input_genes), len(output_genes), len(cell_types), generator=torch_generator, **net_cfg.as_dict())
    net.init_type_baseline(_type_means(p, g, m) if gep_sets is None else _type_means(gep_sets[0][1], gep_sets[0][2],
                                                                                     gep_sets[0][3]))
    history: list[dict[str, Any]] = []
    best_epochs: dict[str, int] = {}
    t_train = time.perf_counter()
    stages = (("proportion", tr.proportion_epochs, 0.2, 0.35), ("gep", tr.epochs, 0.35, 0.97))
    for branch, n_epochs, lo, hi in stages:
        if branch == "gep" and gep_sets is not None:
            (tx, tp, tg, tm), (wx, wp, wg, wm), _, gep_val_parts = gep_sets
            if has_gep_references and tr.gep_early_stopping == "main":  # stop on the main references' validation
                wx, wp, wg, wm = _concat(gep_val_parts[: len(sets.sim_splits)])
            train_set, val_set, masks = (tx, tp, tg), (wx, wp, wg), (tm, wm)
        else:
            train_set, val_set, masks = (x, p, g), (vx, vp, vg), (m, vm)
        best_epochs[branch] = _fit_branch(
            net, branch, train_set, val_set, epochs=n_epochs, batch_size=tr.batch_size, lr=tr.lr,
            weight_decay=tr.weight_decay, patience=tr.patience, proportion_weight=tr.proportion_weight,
            seed=tr.seed, history=history, report=lambda f, m_, lo=lo, hi=hi: report(lo + (hi - lo) * f, m_),
            masks=masks,
        )
    net.set_generator(None)  # the model outlives this run: keep no reference to its generator
    train_seconds = time.perf_counter() - t_train
    v_total, _, _, pred_p, pred_g = _evaluate(net, vx, vp, vg, tr.proportion_weight, 512, vm)
    validation = _validation_metrics(val_sets, pred_p, pred_g)
    validation.update(best_epoch=best_epochs["gep"], proportion_best_epoch=best_epochs["proportion"],
                      val_loss=float(v_total))
    return net, history, validation, train_seconds


def _training_card(*, tissue: str | None, description: str, provenance: dict[str, Any] | None,
                   references: dict, splits: dict, reference_qc: dict, gs: GeneSelection, sim: SimulationConfig,
                   tr: TrainConfig, sets: _Simulated, extra_refs: dict, extra_sim: dict, input_genes: list[str],
                   output_genes: list[str], cell_types: list[str], panel_masks: list[np.ndarray] | None,
                   platform_profiles: pd.DataFrame | None, history: list, validation: dict, seconds: tuple[float, float]
                   ) -> dict[str, Any]:
    """The card ``train_model`` writes (the one place its fields are decided)."""
    total_seconds, train_seconds = seconds
    sim_kwargs = dict(sim.options or {})
    card = dict(
        tissue=tissue,
        description=description,
        provenance=provenance or {},
        reference_summary=_reference_summary(references, splits),
        gene_selection=dict(
            selected_on="training cells of each reference (validation cells never seen)",
            exclude_pattern=gs.exclude, min_fold_change=gs.min_fold_change, n_markers_per_cell_type=gs.n_markers,
            union_over_references=len(references) > 1,
            mixed_fraction=sim.mixed_fraction if len(references) > 1 else 0.0,
        ),
        reference_qc=reference_qc,
        reference_profiles=reference_profiles([t for t, _ in splits.values()], output_genes=output_genes,
                                              cell_types=cell_types),
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
            validation_fraction=tr.validation_fraction, seed=tr.seed,
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
    (``_select_genes``), simulate pseudo-bulk (``_simulate_all``), train both branches (``_train_network``); the
    card is written in one place (``_training_card``).

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
        sets = _simulate_all(splits, extra_splits, cell_types, input_genes, output_genes, panel_masks, sim, tr,
                             extra_sim, platform_profiles, report)
        net, history, validation, train_seconds = _train_network(sets, cell_types, input_genes, output_genes, net_cfg,
                                                                 tr, bool(extra_splits), report)
        report(0.99, "validated")
    finally:
        torch.set_num_threads(previous_threads)
    total_seconds = time.perf_counter() - t_start
    card = _training_card(tissue=tissue, description=description, provenance=provenance, references=references,
                          splits=splits, reference_qc=reference_qc, gs=gs, sim=sim, tr=tr, sets=sets,
                          extra_refs=extra_refs, extra_sim=extra_sim, input_genes=input_genes,
                          output_genes=output_genes, cell_types=cell_types, panel_masks=panel_masks,
                          platform_profiles=platform_profiles, history=history, validation=validation,
                          seconds=(total_seconds, train_seconds))
    logger.info("trained %r in %.0f s; validation %s", name, total_seconds, validation)
    model = BlueModel(name, cell_types, input_genes, output_genes, dict(PREPROCESSING), net, card)
    report(0.995, "simulating the adaptation bank")
    model.adaptation_bank = build_bank(model, {r: t for r, (t, _) in splits.items()},
                                       n_samples=min(2000, sim.n_samples), cells_per_sample=sim.cells_per_sample,
                                       simulation=dict(sim.options or {}),
                                       per_reference={r: {"type_gene_factors": f} for r, f in sets.factors_by_ref.items()})
    model.card["adaptation_bank"] = dict(
        rule="pseudo-bulks from the training cells with the training simulation settings (seed 4242), for "
             "cohort adaptation (blue_core.engine.adaptation)")
    report(1.0, "done")
    return model
