"""Cohort adaptation: fine-tune a copy of a model's proportion branch on the user's own bulk cohort.

A network trained on pseudo-bulk meets real bulk from another platform, protocol and set of donors;
its errors on a cohort are then shared by all samples of that cohort (issue 21: CD8 T called CD4 T and
monocytes over-called on every PBMC cohort the settings were not chosen on). Adaptation follows the
consistency idea of DISSECT (Khatri et al. 2024; imsb-uke/deconvolution, MIT): after training, each
member keeps training on

* simulated pseudo-bulks ``x_sim`` with known fractions ``y_sim`` (a bank shipped with the model,
  simulated from its training cells with its own settings: :func:`build_bank`), loss
  ``KL(y_sim || f(x_sim))``; and
* mixtures ``x_mix = a * x_sim + (1 - a) * x_real`` of a pseudo-bulk and a real sample of the cohort,
  ``a ~ U(alpha_low, alpha_high)``, whose target is ``a * y_sim + (1 - a) * f(x_real)`` (the network's own
  current estimate of the real sample, with gradient): ``KL(target || f(x_mix))``.

The mixture is made on the linear scale (CPM over the input genes the cohort measures) and then
preprocessed like any bulk (``mix_scale="linear"``: a physical mixture of two samples), or on the
network's input scale (``mix_scale="input"``, as DISSECT mixes its scaled inputs). Only the proportion
branch is adapted: the GEP branch is unchanged. The GEPs are unchanged only for a model whose GEPs are the
network's own (``gep_estimator`` ``"network"``); every other estimator splits each bulk by the fractions, so its
GEPs follow the adapted fractions (:func:`gep_effect`; ``bench/adaptation_gep.py`` measures how far). The shipped
weights are never touched (a deep copy is adapted), and the run is deterministic from ``AdaptationConfig.seed``.

A sample's result then depends on the cohort it was adapted with: the same sample in another cohort
can get (slightly) different fractions. The result records that adaptation ran and its settings.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._types import Progress
from .bank import SimulationBank, read_bank, write_bank
from .config import Settings
from ..exceptions import BlueInputError

__all__ = ["AdaptationConfig", "SimulationBank", "adapt_model", "adaptation_text", "build_bank", "read_bank", "gep_effect",
           "refusal", "cohort_rows", "default_adapt", "adapt_request", "write_bank", "MIN_SAMPLES"]

logger = logging.getLogger(__name__)

#: The smallest cohort adapted on by default (see ``bench/adaptation_cost.py`` for the measurement).
MIN_SAMPLES = 8


@dataclass(frozen=True)
class AdaptationConfig(Settings):
    """Settings of :func:`adapt_model` (declared before any cohort was scored; ``bench/selection.py``).

    Attributes
    ----------
    steps
        Optimiser steps per member.
    batch_size
        Pseudo-bulks (and as many mixtures) per step.
    learning_rate
        Adam learning rate for the proportion branch.
    consistency_weight
        Weight of the mixture loss against the pseudo-bulk loss.
    alpha_low, alpha_high
        Range of the simulated share ``a`` of a mixture.
    mix_scale
        ``"linear"``: mix CPM then preprocess; ``"input"``: mix the preprocessed inputs.
    min_samples
        Cohorts with fewer samples are refused (``adapt=True``) or not adapted (``adapt="auto"``).
    max_cohort_samples
        A larger cohort is adapted on this many evenly spaced samples (:func:`cohort_rows`): the steps draw
        ``steps x batch_size`` samples (19,200 by default) whatever the cohort's size, and a streamed archive
        reads exactly these rows, so in memory and streamed runs adapt the same networks.
    seed
        Seed of the batches, mixing shares and dropout masks (member ``m`` uses ``seed + m``).
    """

    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-4
    consistency_weight: float = 1.0
    alpha_low: float = 0.1
    alpha_high: float = 0.9
    mix_scale: Literal["linear", "input"] = "linear"
    min_samples: int = MIN_SAMPLES
    max_cohort_samples: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.steps, int) or self.steps < 1:
            problems.append(f"steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.consistency_weight >= 0:
            problems.append(f"consistency_weight must be >= 0, got {self.consistency_weight!r}")
        if not 0.0 <= self.alpha_low <= self.alpha_high <= 1.0:
            problems.append(f"need 0 <= alpha_low <= alpha_high <= 1, got {self.alpha_low}, {self.alpha_high}")
        if self.mix_scale not in ("linear", "input"):
            problems.append(f"mix_scale must be 'linear' or 'input', got {self.mix_scale!r}")
        if not isinstance(self.max_cohort_samples, int) or self.max_cohort_samples < self.min_samples:
            problems.append(f"max_cohort_samples must be an integer >= min_samples, got {self.max_cohort_samples!r}")
        if not isinstance(self.min_samples, int) or self.min_samples < 2:
            problems.append(f"min_samples must be an integer >= 2, got {self.min_samples!r}")
        if problems:
            raise BlueInputError("adaptation settings: " + "; ".join(problems) + ".")

    _what: ClassVar[str] = "adaptation"


def build_bank(model: Any, training_references: Any, *, n_samples: int = 2000, cells_per_sample: int = 500,
               simulation: Mapping[str, Any] | None = None,
               per_reference: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 4242) -> SimulationBank:
    """Simulate a model's adaptation bank from the **training** cells of its reference(s).

    Parameters
    ----------
    model
        The trained :class:`~blue_core.engine.model.BlueModel` (its cell types and input genes).
    training_references
        The training cells (one AnnData or ``{name: AnnData}``), never the validation cells.
    n_samples
        Pseudo-bulks in the bank (shared equally by the references).
    cells_per_sample, simulation
        ``simulate`` settings: those of the model's training, so that the bank looks like training data.
    per_reference
        Extra ``simulate`` settings per reference name (e.g. its platform ``type_gene_factors``).
    seed
        Seed of the bank's simulation (one value for every member of an ensemble).

    Returns
    -------
    SimulationBank
    """
    import anndata as ad
    import pandas as pd

    from .simulation import simulate

    refs = ({"reference": training_references} if isinstance(training_references, ad.AnnData)
            else dict(training_references))
    values, props = [], []
    for r, (ref_name, ref) in enumerate(refs.items()):
        kwargs = {**dict(simulation or {}), **dict((per_reference or {}).get(ref_name) or {})}
        pb = simulate(ref, max(50, n_samples // len(refs)), cells_per_sample=cells_per_sample,
                      cell_types=model.cell_types, seed=seed + r, **kwargs)
        pos = pd.Index(pb.genes).get_indexer(model.input_genes)
        block = np.zeros((pb.n_samples, len(model.input_genes)), dtype=np.float32)
        block[:, pos >= 0] = pb.bulk[:, pos[pos >= 0]]
        values.append(block)
        props.append(pb.proportions[model.cell_types].to_numpy(np.float32))
    return SimulationBank(np.concatenate(values), np.concatenate(props))


def adaptation_text(record: Mapping[str, Any] | None) -> str | None:
    """One plain sentence on what adaptation did (the app shows it, the CLI prints it); None when not asked.

    Returns
    -------
    str or None
        The sentence, or None when adaptation was not asked for.
    """
    if not record:
        return None
    if record.get("ran"):
        settings = record.get("settings") or {}
        return (f"adapted to this cohort: {record.get('n_members', 1)} network(s) fine-tuned on these "
                f"{record.get('n_samples')} samples ({settings.get('steps')} steps each, seed {settings.get('seed')}, "
                f"{float(record.get('seconds', 0)):.0f} s); each sample's fractions now depend on the cohort it came "
                f"with; cell-type expression (GEPs): {record.get('gep_branch') or 'unchanged'}")
    reason = str(record.get("reason") or "")
    if not reason or reason == "not requested":
        return None
    return f"not adapted to this cohort ({reason}): the shipped networks were used as they are"


def gep_effect(model: Any) -> str:
    """What adaptation does to ``model``'s GEPs, in words (the record's ``gep_branch``, the sentence's end).

    Returns
    -------
    str
        "unchanged ..." for a model whose GEPs are the network's own, else the sentence saying they follow the
        adapted fractions.
    """
    from .gep_estimators import model_estimator

    estimator = model_estimator(model)
    if estimator == "network":
        return "unchanged (GEPs are those of the shipped networks)"
    return (f"the GEP branch is unchanged, but this model's GEPs ({estimator.replace('_', '-')} estimator) split each "
            "bulk by the adapted fractions, so they change with them")


def default_adapt(model: Any) -> bool | str:
    """``deconvolve(adapt=None)``: ``"auto"`` for a model whose card says adaptation is its default, else False.

    A shipped model's card says so (``card["adaptation_bank"]["default"]``) only where adaptation was chosen
    leave-one-cohort-out on real cohorts (``bench/results/selection_loco.md``); a model a user trains adapts only
    when asked.

    Returns
    -------
    bool or str
        ``"auto"`` or False.
    """
    bank = (model.card or {}).get("adaptation_bank") or {}
    return "auto" if bank.get("default") is True and model.adaptation_bank is not None else False


def adapt_request(model: Any, adapt: Any) -> tuple[AdaptationConfig, bool] | None:
    """``deconvolve(adapt=...)`` read once for every path: ``(settings, required)``, or None when none is asked.

    ``None`` means the model's default (:func:`default_adapt`); ``True`` or an :class:`AdaptationConfig` is
    required (a cohort that cannot be adapted on is refused); ``"auto"`` adapts when it can.

    Returns
    -------
    tuple or None
        ``(AdaptationConfig, required)``.
    """
    adapt = default_adapt(model) if adapt is None else adapt
    if adapt is False:
        return None
    if isinstance(adapt, AdaptationConfig):
        return adapt, True
    if adapt is True or adapt == "auto":
        return AdaptationConfig(), adapt is True
    raise BlueInputError(f"adapt must be False, True, 'auto' or an AdaptationConfig, got {adapt!r}.")


def cohort_rows(n_samples: int, config: AdaptationConfig) -> np.ndarray:
    """The cohort rows adaptation learns from: all of them, or ``config.max_cohort_samples`` evenly spaced ones.

    Returns
    -------
    numpy.ndarray
        Increasing row positions, shape (min(n_samples, max_cohort_samples),).
    """
    if n_samples <= config.max_cohort_samples:
        return np.arange(n_samples)
    return np.unique(np.linspace(0, n_samples - 1, config.max_cohort_samples).round().astype(int))


def refusal(model: Any, *, n_samples: int, config: AdaptationConfig) -> tuple[str, str] | None:
    """Why a cohort of ``n_samples`` cannot be adapted on with ``model``: ``(short reason, message with the fix)``,
    or None when it can. The one rule: ``adapt_model`` raises the message, ``deconvolve(adapt="auto")`` records
    the short reason and runs the shipped networks.

    Returns
    -------
    tuple of (str, str) or None
        ``(short reason, full message with the fix)``, or None when the cohort can be adapted on.
    """
    if getattr(model, "adaptation_bank", None) is None:
        return (f"model {model.name!r} carries no simulation bank",
                f"model {model.name!r} carries no simulation bank, so it cannot adapt to a cohort; run without "
                "adaptation, or rebuild the model with its recipe (blue train --recipe ...), which writes the bank.")
    if n_samples < config.min_samples:
        return (f"{n_samples} samples, fewer than the {config.min_samples} adaptation needs",
                f"adaptation needs a cohort of at least {config.min_samples} samples and this one has {n_samples}: "
                "with so few samples it learns the samples' noise rather than the cohort's shift. Run without "
                "adaptation, or adapt on a larger cohort of the same kind (same platform and tissue).")
    return None


def _kl(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean over samples of KL(target || pred) for rows on the simplex."""
    eps = 1e-8
    return (target * (torch.log(target + eps) - torch.log(pred + eps))).sum(dim=1).mean()


def adapt_model(model: Any, values: np.ndarray, *, present: np.ndarray, config: AdaptationConfig | None = None,
                progress: Progress | None = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of every member's proportion branch on one cohort (see the module docstring).

    Parameters
    ----------
    model
        A :class:`~blue_core.engine.model.BlueModel` with an adaptation bank (``model.adaptation_bank``).
    values
        ``(n, G_in)`` the cohort's linear-scale values over the model's input genes (missing genes 0).
    present
        ``(G_in,)`` bool, the input genes the cohort measures (``BlueModel.match_genes``).
    config
        Settings (default :class:`AdaptationConfig`).
    progress
        Optional callback ``progress(fraction, message)``.

    Returns
    -------
    tuple
        ``(adapted copy of the model, record)``; ``record`` holds the settings, the cohort size, the bank
        size, the seconds taken and the mean losses of the first and last 20 steps.

    Raises
    ------
    BlueInputError
        The model has no bank, or the cohort has fewer than ``config.min_samples`` samples.
    """
    from .model import preprocess

    config = config or AdaptationConfig()
    values = np.asarray(values, dtype=np.float64)
    cohort_size = values.shape[0]
    refused = refusal(model, n_samples=cohort_size, config=config)
    if refused is not None:
        raise BlueInputError(refused[1])
    values = values[cohort_rows(cohort_size, config)]
    n = values.shape[0]
    bank: SimulationBank = model.adaptation_bank
    t0 = time.perf_counter()
    present = np.asarray(present, dtype=bool)

    def cpm(block: np.ndarray) -> np.ndarray:
        block = np.where(present[None, :], block, 0.0)
        total = block.sum(axis=1, keepdims=True)
        return np.divide(block * 1e6, total, out=np.zeros_like(block), where=total > 0)

    real_cpm, sim_cpm = cpm(values), cpm(bank.values.astype(np.float64))
    real_x = torch.from_numpy(preprocess(real_cpm, present))
    sim_x = torch.from_numpy(preprocess(sim_cpm, present))
    sim_y = torch.from_numpy(bank.proportions.astype(np.float32))
    adapted = copy.deepcopy(model)
    adapted.adaptation_bank = bank
    total_steps = config.steps * adapted.n_members
    losses: list[list[float]] = []
    for m, net in enumerate(adapted.networks):
        generator = torch.Generator().manual_seed(config.seed + m)
        rng = np.random.default_rng([config.seed, m])
        net.set_generator(generator)
        params = net.branch_parameters("proportion")
        for p in net.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(params, lr=config.learning_rate)
        net.train()
        history = []
        for step in range(config.steps):
            s = rng.integers(0, bank.n_samples, size=config.batch_size)
            r = rng.integers(0, n, size=config.batch_size)
            a = rng.uniform(config.alpha_low, config.alpha_high, size=(config.batch_size, 1))
            if config.mix_scale == "linear":
                x_mix = torch.from_numpy(preprocess(a * sim_cpm[s] + (1 - a) * real_cpm[r], present))
            else:
                a32 = a.astype(np.float32)
                x_mix = torch.from_numpy(a32) * sim_x[s] + torch.from_numpy(1 - a32) * real_x[r]
            a_t = torch.from_numpy(a.astype(np.float32))
            pred_sim = net.forward_proportions(sim_x[s])
            pred_real = net.forward_proportions(real_x[r])
            pred_mix = net.forward_proportions(x_mix)
            target = a_t * sim_y[s] + (1 - a_t) * pred_real
            loss = _kl(sim_y[s], pred_sim) + config.consistency_weight * _kl(target, pred_mix)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
            done = m * config.steps + step + 1
            if progress is not None and (step % 25 == 0 or step == config.steps - 1):
                elapsed = time.perf_counter() - t0
                left = elapsed / done * (total_steps - done)
                progress(done / total_steps, f"adapting member {m + 1}/{adapted.n_members} to the cohort "
                                             f"(about {left:.0f} s left)")
        for p in net.parameters():
            p.requires_grad_(True)
        net.set_generator(None)
        net.eval()
        losses.append(history)
    seconds = time.perf_counter() - t0
    head = float(np.mean([h[: min(20, len(h))] for h in losses]))
    tail = float(np.mean([h[-min(20, len(h)):] for h in losses]))
    record = dict(ran=True, method="consistency fine-tuning of the proportion branch (DISSECT-style)",
                  settings=config.as_dict(), n_samples=int(cohort_size), n_samples_used=int(n), n_members=int(adapted.n_members),
                  bank_samples=bank.n_samples, seconds=round(seconds, 2), loss_first=round(head, 5),
                  loss_last=round(tail, 5), gep_branch=gep_effect(model))
    logger.info("adapted %r on %d samples (%d members x %d steps) in %.1f s", model.name, n, adapted.n_members,
                config.steps, seconds)
    return adapted, record
