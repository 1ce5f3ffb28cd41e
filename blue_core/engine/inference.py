"""deconvolve: cell-type proportions, cell-type GEPs and a fit score for every bulk sample.

The bulk is aligned to the model's input genes (genes missing from the bulk are left out of the
library size and set to the sample mean after standardisation; see ``model.preprocess``), run through
the network in batches, and scored.

Fit score (``fit_r``): Pearson r, over the model's output genes measured in the bulk, between
``log1p(sum_k p_k * GEP_k)`` and ``log1p(bulk)``, both rescaled to CPM over those genes. A sample is
``poorly_explained`` when ``fit_r`` is below the model's threshold (:func:`blue_core.engine.calibration.fit_threshold`):
for a shipped model whose weights were calibrated on real cohorts, the 5 % quantile of ``fit_r`` over real
in-tissue samples (so about 1 in 20 samples of the right tissue is flagged); for any other model the card's
``validation.fit_r_threshold``, the 1 % quantile over the model's simulated validation mixtures, which real bulk
fits worse (so real samples are flagged far more often; the input report says which basis applied).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._types import Progress, log1p_cpm
from .adaptation import AdaptationConfig, adapt_model, adapt_request, refusal
from .calibration import FIT_LIMIT_WORDS, flag_fit, proportion_intervals
from .config import GepEstimator
from .gep_estimators import ProfileEstimator, model_estimator, with_estimator
from ..exceptions import BlueInputError, PoorFitWarning
from .model import BlueModel, preprocess
from .result import Deconvolution

__all__ = ["deconvolve", "deconvolve_chunk", "cohort_on_source", "fit_scores"]

logger = logging.getLogger(__name__)


def fit_scores(
    proportions: np.ndarray, expression: np.ndarray, *, bulk: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample fit score: Pearson r of log1p(reconstruction) vs log1p(bulk), both CPM over present genes.

    Parameters
    ----------
    proportions
        ``(n, K)`` cell fractions.
    expression
        ``(n, K, G)`` GEPs, linear scale (CPM).
    bulk
        ``(n, G)`` bulk values (linear scale) over the same genes.
    present
        ``(G,)`` bool: genes measured in the bulk (default all).

    Returns
    -------
    ndarray
        ``(n,)`` float64; NaN where a side is constant or empty.
    """
    if present is None:
        present = np.ones(bulk.shape[1], dtype=bool)
    recon = np.einsum("nk,nkg->ng", proportions.astype(np.float64), expression[:, :, present].astype(np.float64))
    observed = np.asarray(bulk, dtype=np.float64)[:, present]

    a, b = log1p_cpm(recon), log1p_cpm(observed)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    denominator = np.sqrt((a**2).sum(1) * (b**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(1) / denominator, np.nan)


def _as_bulk(bulk: Any, model: BlueModel) -> ad.AnnData:
    if isinstance(bulk, ad.AnnData):
        return bulk
    if isinstance(bulk, pd.DataFrame):
        return ad.AnnData(X=bulk.to_numpy(dtype=np.float64), obs=pd.DataFrame(index=bulk.index.astype(str)),
                          var=pd.DataFrame(index=bulk.columns.astype(str)))
    if isinstance(bulk, (str, Path)):
        try:
            from ..io.bulk import read_bulk
        except ImportError as err:  # pragma: no cover - io.py is part of the package
            raise BlueInputError("reading files needs blue_core.io (read_bulk), which is not installed.") from err
        return read_bulk(bulk)  # reads and harmonises only; the model decides on the genes (check_genes)
    raise BlueInputError(
        f"bulk must be an AnnData (samples x genes), a DataFrame (samples x genes) or a file path, got "
        f"{type(bulk).__name__}."
    )


def _run_networks(model: BlueModel, X: Any, *, in_pos: np.ndarray, present: np.ndarray, out_pos: np.ndarray,
                  batch_size: int, progress: Progress | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Every member on every sample, in batches: ``props (n, K)``, ``member_props (M, n, K)``, ``expression
    (n, K, G_out)`` CPM, ``fit_r (n,)`` (NaN with fewer than 3 output genes measured) and what the GEP estimator
    fitted on the cohort, in words ("" for all but ``"cohort"`` and ``"joint"``, which split in a second pass once
    every sample's fractions are known)."""
    n = X.shape[0]
    out_present = out_pos >= 0
    props = np.empty((n, len(model.cell_types)), dtype=np.float32)
    member_props = np.empty((model.n_members, n, len(model.cell_types)), dtype=np.float32)
    expression = np.empty((n, len(model.cell_types), len(model.output_genes)), dtype=np.float32)
    fit_r = np.full(n, np.nan)
    profiles = ProfileEstimator.of(model)  # the card read once, not once per batch
    cohort = profiles.needs_cohort and out_present.sum() >= 3
    out_all = np.zeros((n, len(model.output_genes))) if cohort else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        block = _dense_block(X[start:stop])
        values = _gene_values(block, in_pos, present)
        member_props[:, start:stop], expression[start:stop] = model.predict_members(preprocess(values, present),
                                                                                    batch_size=batch_size)
        props[start:stop] = member_props[:, start:stop].mean(axis=0)
        if out_present.sum() >= 3:
            out_values = _gene_values(block, out_pos, out_present)
            fit_r[start:stop] = fit_scores(props[start:stop], expression[start:stop], bulk=out_values,
                                            present=out_present)  # the network's own GEPs explain the bulk
            if cohort:
                out_all[start:stop] = out_values
            else:
                expression[start:stop] = profiles.apply(expression[start:stop], bulk=out_values,
                                                        present=out_present, proportions=props[start:stop])
        if progress is not None:
            progress(stop / n, f"deconvolved {stop:,} of {n:,} samples")
    if cohort:
        profiles, _ = profiles.fit_cohort(out_all, present=out_present, proportions=props)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            expression[start:stop] = profiles.apply(expression[start:stop], bulk=out_all[start:stop],
                                                    present=out_present, proportions=props[start:stop])
    return props, member_props, expression, fit_r, profiles.words


def deconvolve(
    bulk: ad.AnnData | pd.DataFrame | str | Path,
    model: BlueModel | str | Path,
    *,
    batch_size: int = 256,
    adapt: bool | Literal["auto"] | AdaptationConfig | None = None,
    gep_estimator: GepEstimator | None = None,
    progress: Progress | None = None,
) -> Deconvolution:
    """Estimate cell-type proportions and cell-type GEPs for every bulk sample.

    Parameters
    ----------
    bulk
        AnnData or DataFrame, samples x genes (HGNC symbols), linear-scale non-negative values
        (counts, CPM or TPM; use :func:`blue_core.read_bulk` for files), or a path read with ``read_bulk``.
    model
        A :class:`~blue_core.engine.model.BlueModel`, a model name or a model directory.
    batch_size
        Samples per forward pass; memory stays flat in the number of samples apart from the result.
    adapt
        Cohort adaptation (:mod:`blue_core.engine.adaptation`); None: :func:`~blue_core.engine.adaptation.default_adapt` (``"auto"`` for the
        shipped models where adaptation was chosen on real cohorts, else False). ``False`` (the shipped
        networks as they are);
        ``True`` or an :class:`~blue_core.engine.adaptation.AdaptationConfig` (fine-tune a copy of each member's
        proportion branch on this cohort first; refused for a cohort below ``min_samples`` or a model
        without a simulation bank); ``"auto"`` (adapt when the model has a bank and the cohort is large
        enough, else run without and say why in the input report). With adaptation a sample's fractions
        depend on the cohort it came with. ``input_report["adaptation"]`` records what ran.
    gep_estimator
        Which estimator produces the GEPs (:mod:`blue_core.engine.gep_estimators`): ``"network"``,
        ``"closed_form"`` (E[Z|X] given the network's fractions), ``"blend"``, ``"refit"``, ``"cohort"`` or
        ``"joint"`` (:mod:`~blue_core.engine.gep_estimators` says what each is); None: the model card's (``"network"``
        without one). Proportions and the fit score do not depend on it. ``input_report["gep_estimator"]`` records
        what ran, ``input_report["gep_cohort_profiles"]`` what ``"cohort"`` / ``"joint"`` fitted.
    progress
        Optional callback ``progress(fraction, message)``.

    Returns
    -------
    Deconvolution
        Proportions ``(n, K)``, GEPs ``(n, K, G_out)`` in CPM, and per-sample fit scores.

    Raises
    ------
    BlueInputError
        Fewer than half of the model's input genes are in the bulk, or the values are not usable.

    Warns
    -----
    GeneOverlapWarning
        Fewer than 90 % of the model's input genes are in the bulk.
    PoorFitWarning
        Some samples are poorly explained by the model.
    """
    model = _resolve_model(model, gep_estimator)
    if batch_size < 1:
        raise BlueInputError(f"batch_size must be >= 1, got {batch_size}.")
    t0 = time.perf_counter()
    if isinstance(bulk, (str, Path)):
        from .run_plan import plan_run

        plan = plan_run(bulk, model)
        if plan.streams:  # the same numbers, read in chunks (bounded memory for the input)
            return _deconvolve_in_chunks(Path(bulk), model, reason=plan.reason, batch_size=batch_size, adapt=adapt,
                                         progress=progress)
    adata = _as_bulk(bulk, model)
    n = adata.n_obs
    if n == 0:
        raise BlueInputError("the bulk has no samples; pass a table with at least one sample.")
    genes = _unique_genes(adata)
    in_pos = genes.get_indexer(model.input_genes)
    match = model.check_genes(genes, report=adata.uns.get("blue_input"))  # the one overlap rule (streaming, the CLI and the app's input report use it too)
    present = match.present
    out_pos = genes.get_indexer(model.output_genes)
    out_present = out_pos >= 0

    X = adata.X
    shipped_name = model.name
    model, adaptation, progress = _maybe_adapt(model, X, in_pos, present, adapt, progress)
    props, member_props, expression, fit_r, cohort_words = _run_networks(
        model, X, in_pos=in_pos, present=present, out_pos=out_pos, batch_size=batch_size, progress=progress)
    index = pd.Index([str(s) for s in adata.obs_names], name="sample")
    intervals: dict[str, pd.DataFrame] = {}
    spread_max = None
    if model.n_members > 1:
        lo, hi, spread = proportion_intervals(member_props, calibration=model.card.get("intervals"),
                                              cell_types=model.cell_types)
        intervals = {name: pd.DataFrame(v, index=index, columns=model.cell_types)
                     for name, v in (("proportions_lo", lo), ("proportions_hi", hi), ("member_spread", spread))}
        spread_max = spread.max(axis=1)
    flags = flag_fit(model, fit_r, member_spread=spread_max)  # the one flag rule (trust.assess applies it too)
    threshold, basis, poorly = flags.fit_threshold, flags.fit_basis, flags.poorly_explained
    fit = pd.DataFrame({"fit_r": fit_r, "poorly_explained": poorly}, index=index)
    if spread_max is not None:
        fit["member_spread"] = spread_max
        fit["members_disagree"] = flags.members_disagree
    _warn_poor_fit(int(poorly.sum()), n, model.name, threshold, basis)
    report = dict(adata.uns.get("blue_input", {})) if isinstance(adata.uns.get("blue_input"), dict) else {}
    report.update(
        n_samples=n,
        n_model_genes=match.n_expected,
        n_model_genes_matched=match.n_matched,
        input_panel=match.panel or "",
        missing_model_genes=[g for g, ok in zip(model.input_genes, present) if not ok][:50],
        n_output_genes_in_bulk=int(out_present.sum()),
        unmeasured_output_genes=[g for g, ok in zip(model.output_genes, out_present) if not ok],
        fit_r_threshold=threshold,
        fit_r_threshold_basis=basis,
        spread_threshold=flags.spread_threshold,
        spread_threshold_basis=flags.spread_basis,
        adaptation=adaptation,
        gep_estimator=model_estimator(model),
    )
    if cohort_words:
        report["gep_cohort_profiles"] = cohort_words
    logger.info("deconvolved %d samples with %r in %.2f s", n, shipped_name, time.perf_counter() - t0)
    proportions = pd.DataFrame(props, index=index, columns=model.cell_types)
    return Deconvolution(proportions, expression, list(model.cell_types), list(model.output_genes), fit,
                         model.name, report, **intervals)


def _unique_genes(adata: ad.AnnData) -> pd.Index:
    """The bulk's gene symbols, refused when one is repeated."""
    genes = pd.Index([str(g) for g in adata.var_names])
    if genes.has_duplicates:
        raise BlueInputError(
            f"the bulk has duplicated genes (e.g. {genes[genes.duplicated()][:3].tolist()}); read it with "
            "read_bulk, which sums duplicates."
        )
    return genes


def _resolve_model(model: BlueModel | str | Path, gep_estimator: GepEstimator | None) -> BlueModel:
    """The model a deconvolution runs: loaded by name or folder, its GEPs from ``gep_estimator`` when one is given."""
    if not isinstance(model, BlueModel):
        from .model import load_model

        model = load_model(model)
    return model if gep_estimator is None else with_estimator(model, gep_estimator)


def deconvolve_chunk(frame: pd.DataFrame, model: BlueModel, *, batch_size: int) -> Deconvolution:
    """One chunk through the in-memory core (``deconvolve`` with ``adapt=False``: the model given is already the one
    the whole file adapted); per-chunk poor-fit warnings are left to one summary for the file.

    Parameters
    ----------
    frame
        ``(samples, genes)`` linear values over the model's genes.
    model
        The model to run.
    batch_size
        Samples per forward pass.

    Returns
    -------
    Deconvolution
        The chunk's result.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorFitWarning)
        return deconvolve(frame, model, batch_size=batch_size, adapt=False)


def cohort_on_source(model: BlueModel, source: Any, *, plan: Any, log_base: str, chunk_size: int) -> BlueModel:
    """For the ``"cohort"`` and ``"joint"`` GEP estimators: the model with its cohort profiles fitted on the file's
    samples (every ``step``-th, at most :data:`~blue_core.engine.gep_estimators.COHORT_MAX_SAMPLES`, read in one
    pass), so every chunk is split by the same profiles; any other model is returned as it is. ``source``, ``plan``, ``log_base``,
    ``chunk_size``: the chunked file and how it is read (:mod:`~blue_core.engine.chunk_core`).

    Returns
    -------
    BlueModel
        ``model``, or a copy carrying the fitted profiles (:func:`~blue_core.engine.gep_estimators.with_cohort`).
    """
    from .chunk_core import chunk_frames
    from .gep_estimators import COHORT_MAX_SAMPLES, with_cohort

    profiles = ProfileEstimator.of(model)
    if not profiles.needs_cohort:
        return model
    step = max(1, -(-source.n_samples // COHORT_MAX_SAMPLES))
    network = with_estimator(model, "network")
    fractions, values, present = [], [], None
    for start, stop, frame in chunk_frames(source, plan, chunk_size=chunk_size, log_base=log_base):
        keep = [i - start for i in range(start, stop) if i % step == 0]
        if not keep:
            continue
        part = frame.iloc[keep]
        fractions.append(deconvolve_chunk(part, network, batch_size=256).proportions.to_numpy())
        positions = pd.Index([str(c) for c in part.columns]).get_indexer(list(model.output_genes))
        present = positions >= 0
        values.append(_gene_values(part.to_numpy(dtype=np.float64), positions, present))
    fitted, words = profiles.fit_cohort(np.vstack(values), present=present, proportions=np.vstack(fractions))
    if step > 1:
        words += f" (every {step}th of the file's {source.n_samples:,})"
    return with_cohort(model, fitted, words=words)


def _warn_poor_fit(n_poor: int, n: int, model_name: str, threshold: float, basis: str) -> None:
    """The one PoorFitWarning of a run (in memory or read in chunks)."""
    if n_poor:
        warnings.warn(
            f"{n_poor} of {n} samples are poorly explained by model {model_name!r} (fit r < {threshold:.2f}, "
            f"{FIT_LIMIT_WORDS[basis]}); treat their estimates with caution (wrong tissue, strong platform or batch "
            "effects, or cell types missing from the model).",
            PoorFitWarning,
            stacklevel=3,
        )


def _deconvolve_in_chunks(path: Path, model: BlueModel, *, reason: str, batch_size: int, adapt: Any,
                          progress: Progress | None) -> Deconvolution:
    """``deconvolve`` of a file over the memory budget: read chunk by chunk (``engine.chunk_core``), adapted on the
    whole file as in memory, every chunk through the in-memory core, the results held in memory."""
    from ..io.source import InputLimits
    from .chunk_core import adapt_on_source, chunk_frames, chunked_report, open_cohort
    from .run_plan import DEFAULT_CHUNK_SIZE, gep_bytes

    source, plan, match = open_cohort(path, model)
    need = 2 * gep_bytes(source.n_samples, model)  # the chunks' GEPs and their concatenation
    budget = InputLimits.from_env().memory_budget_bytes
    if need > budget:
        raise BlueInputError(
            f"{reason}; read in chunks, the GEPs of its {source.n_samples:,} samples would still need about "
            f"{need / 1e9:.1f} GB in memory. Write them to disk instead: blue deconvolve {path.name} --model "
            f"{model.name} --out DIR (Python: blue_core.deconvolve_chunked(path, model, out=DIR)).")
    sub = None if progress is None else (lambda f, m: progress(0.3 * f, m))
    run_model, record = adapt_on_source(model, source, plan=plan, match=match, adapt=adapt, log_base="auto",
                                        chunk_size=DEFAULT_CHUNK_SIZE, progress=sub)
    run_model = cohort_on_source(run_model, source, plan=plan, log_base="auto", chunk_size=DEFAULT_CHUNK_SIZE)
    parts = []
    for start, stop, frame in chunk_frames(source, plan, chunk_size=DEFAULT_CHUNK_SIZE, log_base="auto"):
        parts.append(deconvolve_chunk(frame, run_model, batch_size=batch_size))
        if progress is not None:
            progress(0.3 + 0.7 * stop / source.n_samples, f"deconvolved {stop:,} of {source.n_samples:,} samples")
    result = Deconvolution.concat(parts)
    result.input_report = report = chunked_report(result.input_report, source=source, adaptation=record,
                                                  reason=reason, chunk_size=DEFAULT_CHUNK_SIZE, log_base="auto")
    _warn_poor_fit(int(result.fit["poorly_explained"].sum()), source.n_samples, model.name,
                   report["fit_r_threshold"], report["fit_r_threshold_basis"])
    return result


def _dense_block(X: Any) -> np.ndarray:
    """Rows of the bulk as a dense float64 array, checked: linear-scale, finite, non-negative."""
    block = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    if not np.isfinite(block).all() or (block < 0).any():
        raise BlueInputError(
            "the bulk has negative, NaN or infinite values; BLUE needs linear-scale non-negative expression "
            "(counts, CPM or TPM) — read the file with read_bulk, which checks and converts it."
        )
    return block


def _gene_values(block: np.ndarray, positions: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``(n, len(positions))`` the block's values in a model's gene order (0 where the bulk lacks the gene)."""
    values = np.zeros((block.shape[0], len(positions)))
    values[:, found] = block[:, positions[found]]
    return values


def _maybe_adapt(model: BlueModel, X: Any, in_pos: np.ndarray, present: np.ndarray,
                 adapt: bool | str | AdaptationConfig | None, progress: Progress | None
                 ) -> tuple[BlueModel, dict[str, Any], Progress | None]:
    """Apply ``deconvolve(adapt=...)``: the model to run, the adaptation record, the remaining progress."""
    request = adapt_request(model, adapt)
    if request is None:
        return model, {"ran": False, "reason": "not requested"}, progress
    config, required = request
    refused = refusal(model, n_samples=X.shape[0], config=config)
    if refused is not None and not required:
        return model, {"ran": False, "reason": refused[0]}, progress
    sub = None if progress is None else (lambda f, m: progress(0.8 * f, m))
    adapted, record = adapt_model(model, _gene_values(_dense_block(X), in_pos, present), present=present, config=config,
                                  progress=sub)
    rest = None if progress is None else (lambda f, m: progress(0.8 + 0.2 * f, m))
    return adapted, record, rest
