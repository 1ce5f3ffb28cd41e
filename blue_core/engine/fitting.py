"""Fitting a BlueNet: the BLUE loss, one branch's optimisation with early stopping, and the validation metrics.

``loss = sum_k MSE(GEP_k) + proportion_weight * MSE(proportions)``; a cell type's GEP loss is averaged over
samples with weights equal to its cell fraction (an absent type has no profile). Each branch (proportion MLP,
GEP U-Net) is trained on its own term with its own early stopping (:func:`train_network`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._types import Progress
from .config import NetworkConfig, TrainConfig
from ..analysis.leakage import MIN_FRACTION, MIN_SAMPLES
from .network import BlueNet
from .simulation import PseudoBulk
from .training_sets import SimulatedSets, concat_sets

__all__ = ["Loss", "blue_loss", "leakage_penalty", "train_network", "FIT_QUANTILE"]

logger = logging.getLogger(__name__)


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


def _batch_r(values: torch.Tensor, fraction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pearson r over the batch, per type and gene, of ``values (B, K, G)`` with ``fraction (B, K)``, counting the
    samples where ``weight (B, K)`` is 1."""
    n = weight.sum(0).clamp(min=1.0)
    f = (fraction - (weight * fraction).sum(0) / n) * weight
    v = (values - (weight[:, :, None] * values).sum(0) / n[:, None]) * weight[:, :, None]
    covariance = (v * f[:, :, None]).sum(0)
    return covariance / torch.sqrt((v**2).sum(0) * (f**2).sum(0)[:, None] + 1e-8)


def leakage_penalty(pred_gep: torch.Tensor, gep: torch.Tensor, *, fraction: torch.Tensor, proportions: torch.Tensor,
                    gene_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Issue 25's decorrelation penalty: how much more (or less) each predicted profile follows a fraction than its
    target does, over a batch.

    Parameters
    ----------
    pred_gep, gep
        ``(B, K, G_out)`` predicted and target profiles, log1p(CPM).
    fraction
        ``(B, K)`` the fractions the profiles are correlated with (the network's own proportion output).
    proportions
        ``(B, K)`` true fractions: a type counts in a sample where it is at least
        :data:`~blue_core.analysis.leakage.MIN_FRACTION` of the cells (the leakage measure's rule).
    gene_mask
        ``(B, G_out)`` genes measured per sample; only genes measured in every sample of the batch count.

    Returns
    -------
    torch.Tensor
        Scalar: the sum over types (with >= :data:`~blue_core.analysis.leakage.MIN_SAMPLES` samples present) of
        the mean over genes of
        ``(r(pred, fraction) - r(target, fraction))^2``; 0 when no type has enough samples.
    """
    weight = (proportions >= MIN_FRACTION).to(pred_gep.dtype)
    fraction = fraction.detach().to(pred_gep.dtype)
    gap = (_batch_r(pred_gep, fraction, weight) - _batch_r(gep, fraction, weight)) ** 2
    if gene_mask is not None:
        gap = gap[:, gene_mask.all(0)]
    counted = weight.sum(0) >= MIN_SAMPLES
    if not bool(counted.any()) or gap.shape[1] == 0:
        return pred_gep.new_zeros(())
    return gap.mean(dim=1)[counted].sum()


def _branch_loss(
    net: BlueNet, branch: str, x: torch.Tensor, p: torch.Tensor, g: torch.Tensor, proportion_weight: float,
    mask: torch.Tensor | None = None, decorrelation: float = 0.0,
) -> torch.Tensor:
    """The part of the BLUE loss that depends on one branch's parameters (plus the GEP branch's leakage penalty
    when ``decorrelation`` > 0)."""
    if branch == "proportion":
        return proportion_weight * ((net.forward_proportions(x) - p) ** 2).mean()
    pred = net.forward_gep(x)
    loss = _gep_mse(pred, g, p, mask)
    if decorrelation > 0:
        with torch.no_grad():
            own = net.forward_proportions(x)
        loss = loss + decorrelation * leakage_penalty(pred, g, fraction=own, proportions=p, gene_mask=mask)
    return loss


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
    decorrelation: float = 0.0,
) -> int:
    """Train one branch with Adam and early stopping on its validation loss; keep its best epoch.

    ``masks``: per-sample gene masks ``(n, G_out)`` of the training and validation sets (multi-reference
    training), or None. ``decorrelation``: weight of :func:`leakage_penalty` in the GEP branch's training loss
    (the validation loss that stops it stays the GEP MSE).
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
                                None if masks[0] is None else masks[0][idx], decorrelation)
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


def _type_means(p: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Each type's mean GEP ``(K, G_out)`` over samples, weighted by its fraction (and the gene mask)."""
    if mask is None:
        weight = p / p.sum(0).clamp(min=1e-8)
        return torch.einsum("nk,nkg->kg", weight, g)
    m = mask.to(g.dtype)
    return torch.einsum("nk,ng,nkg->kg", p, m, g) / torch.einsum("nk,ng->kg", p, m).clamp(min=1e-8)


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


def train_network(sets: SimulatedSets, *, cell_types: list[str], input_genes: list[str], output_genes: list[str],
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
                wx, wp, wg, wm = concat_sets(gep_val_parts[: len(sets.sim_splits)])
            train_set, val_set, masks = (tx, tp, tg), (wx, wp, wg), (tm, wm)
        else:
            train_set, val_set, masks = (x, p, g), (vx, vp, vg), (m, vm)
        best_epochs[branch] = _fit_branch(
            net, branch, train_set, val_set, epochs=n_epochs, batch_size=tr.batch_size, lr=tr.lr,
            weight_decay=tr.weight_decay, patience=tr.patience, proportion_weight=tr.proportion_weight,
            seed=tr.seed, history=history, report=lambda f, m_, lo=lo, hi=hi: report(lo + (hi - lo) * f, m_),
            masks=masks, decorrelation=tr.gep_decorrelation,
        )
    net.set_generator(None)  # the model outlives this run: keep no reference to its generator
    train_seconds = time.perf_counter() - t_train
    v_total, _, _, pred_p, pred_g = _evaluate(net, vx, vp, vg, tr.proportion_weight, 512, vm)
    validation = _validation_metrics(val_sets, pred_p, pred_g)
    validation.update(best_epoch=best_epochs["gep"], proportion_best_epoch=best_epochs["proportion"],
                      val_loss=float(v_total))
    return net, history, validation, train_seconds
