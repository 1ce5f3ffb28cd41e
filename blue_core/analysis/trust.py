"""Trust signals: does this bulk sample fit the model it was given, and if not, why?

Three signals, each calibrated on real bulk cohorts (``bench/trust.py`` writes the calibration into
``data/trust_calibration.json``; every number there is traceable to ``bench/results/trust.md``):

1. **Tissue checks with named causes.** Marker sets of compartments (neutrophils, islet endocrine cells, leukocytes,
   blasts and primary granules, epithelial and melanocytic cells) are scored per sample as the median within-sample
   rank of the set's measured genes, ranked above the sample's background so that RNA-seq zeros and an array's
   floor read alike (:func:`compartment_scores`): robust to units, library size and platform. A model says which
   compartments it expects and which it lacks; a lacking compartment above its calibrated limit, or an expected
   one below it, is a named cause ("neutrophil genes are high: this looks like whole blood, and this PBMC model has
   no neutrophils"). Limits sit midway between real cohorts without and with the compartment.
2. **Reconstruction fit on real in-tissue bulk.** ``fit_r`` (see :mod:`blue_core.engine.inference`) is compared with the
   model's real-cohort floor (``calibration.REAL_FLOOR_WORDS``), not with simulated mixtures, which real bulk
   always fits worse.
3. **Ensemble spread** (ensemble models): ``fit["member_spread"]`` from :func:`~blue_core.engine.inference.deconvolve`
   against the model's real-cohort ceiling (``calibration.REAL_SPREAD_WORDS``).

:func:`assess` combines them into one verdict per sample (``ok`` / ``caution`` / ``wrong input``) with the
reasons, and :func:`recommend_model` ranks installed models for a cohort.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..engine.calibration import FIT_LIMIT_WORDS, SPREAD_LIMIT_WORDS, flag_fit, for_model, load_calibration
from ..exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    import anndata as ad

    from ..engine.result import Deconvolution
    from ..engine.model import BlueModel

__all__ = ["MARKER_SETS", "DERIVED", "EXPECTATIONS", "LOOKS_LIKE", "compartment_scores", "tissue_checks", "looks_like", "assess",
           "recommend_model", "TrustReport", "load_calibration"]

logger = logging.getLogger(__name__)

#: Marker genes of compartments that tell tissues apart (well-known, specific, and highly expressed).
#: ``blast`` holds stem/progenitor genes that mature granulocytes do not carry; ``primary granule`` genes (MPO,
#: ELANE, AZU1, ...) are made by promyelocytes *and* read in whole blood and PBMC preparations with a few
#: granulocytes, so they count as progenitor evidence only beyond the sample's mature-neutrophil genes (issue 22.3).
#: The ``non-immune`` sets (epithelial, melanocytic) catch a carcinoma, melanoma or epithelial tissue; the stromal
#: set is scored but not used there (bone marrow holds stromal cells; a sarcoma is not caught).
MARKER_SETS: dict[str, tuple[str, ...]] = {
    "neutrophil": ("FCGR3B", "CXCR2", "CSF3R", "FPR1", "CMTM2", "CXCR1", "MME", "PROK2"),
    "islet endocrine": ("INS", "GCG", "SST", "PPY", "IAPP", "TTR", "PCSK1", "CHGA"),
    "pancreatic exocrine": ("PRSS1", "CPA1", "CELA3A", "CTRB1", "PNLIP", "CPB1", "CEL", "PLA2G1B"),
    "leukocyte": ("PTPRC", "CORO1A", "LAPTM5", "CD53", "LCP1", "ARHGDIB", "CD37", "CYTIP"),
    "blast": ("CD34", "KIT", "PROM1", "SPINK2", "CRHBP", "FLT3", "MEIS1", "HOXA9", "NPR3"),
    "primary granule": ("MPO", "ELANE", "AZU1", "PRTN3", "CTSG", "MS4A3", "RNASE2"),
    "epithelial": ("EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "CLDN4", "KRT7"),
    "stromal": ("COL1A1", "COL1A2", "COL3A1", "SPARC", "DCN", "LUM", "COL6A3"),
    "melanocytic": ("MLANA", "PMEL", "TYR", "DCT", "MITF", "S100B", "SOX10"),
}

#: Compartments scored from the marker sets (:func:`compartment_scores`): ``myeloid progenitor`` = the larger of
#: the blast score and the primary-granule score minus the mature-neutrophil score (a ratio on the rank scale:
#: whole blood reads granule genes with far more neutrophil genes, AML marrow the other way round); ``non-immune``
#: = the larger of the epithelial and melanocytic scores.
DERIVED: dict[str, str] = {"myeloid progenitor": "blast genes (CD34, KIT, PROM1...) or primary-granule genes (MPO, "
                                                 "ELANE, AZU1...) beyond the neutrophil genes",
                           "non-immune": "epithelial or melanocytic genes (EPCAM, KRT8, KRT18, MLANA, PMEL...)"}

#: Per model tissue (``card["tissue"]`` contains the key): compartments the model expects (floor checked) and
#: compartments it does not model (ceiling checked), with the plain-words cause shown to the user.
_PBMC_EXPECTATIONS: dict[str, Any] = {
    "expects": {"leukocyte": "this does not look like blood cells"},
    "lacks": {"neutrophil": "this looks like whole blood (or granulocyte-rich), and this PBMC model has no neutrophils: "
                            "their share is given to the other types; use the blood model (whole blood)",
              "myeloid progenitor": "this looks like bone marrow or leukaemia (blasts), and this PBMC model has no "
                                    "progenitor cells",
              "islet endocrine": "this looks like pancreatic islets, not the PBMC this model is for",
              "non-immune": "most of this sample's cells are not blood cells (a solid tissue or tumour?), and this "
                            "PBMC model has only blood cell types: their share is given to the blood types"}}

EXPECTATIONS: dict[str, dict[str, Any]] = {
    "whole blood": {"expects": {"leukocyte": "this does not look like blood cells"},
                    "lacks": {"myeloid progenitor": "this looks like bone marrow or leukaemia (blasts), and this "
                                                    "whole-blood model has no progenitor cells",
                              "islet endocrine": "this looks like pancreatic islets, not the whole blood this model "
                                                 "is for",
                              "non-immune": "most of this sample's cells are not blood cells (a solid tissue or "
                                            "tumour?), and this whole-blood model has only blood cell types"}},
    "pbmc": _PBMC_EXPECTATIONS,
    "blood": _PBMC_EXPECTATIONS,  # models saved before the pbmc model's tissue was named "PBMC" (issue 22.6)
    "bone marrow": {"expects": {"leukocyte": "this does not look like blood or bone marrow",
                                "myeloid progenitor": "this does not look like bone marrow or AML (few progenitor or "
                                                      "blast transcripts); for PBMC use the pbmc model, for whole "
                                                      "blood the blood model"},
                    "lacks": {"islet endocrine": "this looks like pancreatic islets, not the bone marrow this model is "
                                                 "for",
                              "non-immune": "most of this sample's cells are not blood or marrow cells (a solid "
                                            "tissue or tumour?), and this model has only blood and marrow cell types"}},
    "pancreatic islets": {"expects": {"islet endocrine": "this does not look like pancreatic islets"},
                          "lacks": {"leukocyte": "this looks like blood or immune cells, not the pancreatic islets "
                                                 "this model is for"}},
}

#: What a cohort looks like when most of its cells are not blood cells: no model is built for it (issue 22.3).
SOLID_TISSUE = "a solid tissue or tumour (most cells are not blood cells)"

#: What a cohort looks like when a compartment is high (above its calibrated ceiling) in most samples, in order
#: of precedence (marrow blasts before granulocytes: AML marrow also holds maturing neutrophils); a model whose
#: ``card["tissue"]`` contains the tissue is preferred by :func:`recommend_model`.
LOOKS_LIKE: tuple[tuple[str, str], ...] = (("myeloid progenitor", "bone marrow"), ("islet endocrine", "pancreatic islets"),
                                           ("non-immune", SOLID_TISSUE), ("neutrophil", "whole blood"),
                                           ("leukocyte", "PBMC"))

#: A gene at most this factor times the sample's 10 % quantile of positive values is background (unexpressed).
BACKGROUND_FACTOR = 2.0

#: Fewest measured genes for the tissue checks: percentile ranks are comparable only over a whole transcriptome
#: (a 714-gene panel ranks a gene among other panel genes), so panel data get the fit signals only.
MIN_GENES_FOR_CHECKS = 10_000


def compartment_scores(bulk: ad.AnnData | pd.DataFrame, *, min_genes: int = 3) -> pd.DataFrame:
    """Per sample and compartment: the median within-sample rank of the set's measured genes, on a scale that
    holds across platforms.

    A gene counts as expressed when it is above the sample's background (``BACKGROUND_FACTOR`` x the 10 % quantile of
    its positive values): RNA-seq reads unexpressed genes as zeros, arrays as a floor of small positive values (no
    zeros), and both then count as unexpressed, so an islet gene at an array's floor scores as it does at zero reads
    (issue 22.3). A gene's rank is its percentile among the expressed genes, and only the upper half counts
    (rescaled to [0, 1]; the lower half and unexpressed genes rank 0).

    Parameters
    ----------
    bulk
        Samples x genes (AnnData from ``read_bulk`` or a DataFrame), any linear unit.
    min_genes
        Fewest measured genes of a set for a score (else NaN: a gene panel may miss a set).

    Returns
    -------
    pandas.DataFrame
        Samples x compartments (``MARKER_SETS`` keys, then ``DERIVED`` keys), values in [0, 1] (NaN = too few
        genes measured, or fewer than ``MIN_GENES_FOR_CHECKS`` genes in the sample: a panel).
    """
    frame = bulk if isinstance(bulk, pd.DataFrame) else bulk.to_df()
    columns = list(MARKER_SETS) + list(DERIVED)
    if frame.shape[1] < MIN_GENES_FOR_CHECKS:
        return pd.DataFrame(np.nan, index=frame.index, columns=columns)
    positive = frame.where(frame > 0)
    # Unexpressed = zero, or at most BACKGROUND_FACTOR x the sample's 10 % quantile of positive values (an array's
    # floor: no zeros, unexpressed probes at a small positive level); ranks among the rest, the upper half only.
    background = positive.quantile(0.10, axis=1) * BACKGROUND_FACTOR
    expressed = positive.where(positive.gt(background, axis=0))
    pct = expressed.rank(axis=1, pct=True, method="average")
    ranks = ((pct - 0.5) / 0.5).clip(lower=0.0).fillna(0.0)
    out = {}
    for name, genes in MARKER_SETS.items():
        present = [g for g in genes if g in ranks.columns]
        out[name] = ranks[present].median(axis=1) if len(present) >= min_genes else pd.Series(np.nan, index=frame.index)
    out["myeloid progenitor"] = np.fmax(out["blast"], (out["primary granule"] - out["neutrophil"]).clip(lower=0.0))
    out["non-immune"] = np.fmax(out["epithelial"], out["melanocytic"])
    return pd.DataFrame(out, index=frame.index)[columns]


def _genes_text(compartment: str) -> str:
    """The marker genes of a compartment, as the cause names them."""
    if compartment in DERIVED:
        return DERIVED[compartment]
    return f"{compartment} genes ({', '.join(MARKER_SETS[compartment][:3])}...)"


def _expectations(tissue: str | None) -> dict[str, Any]:
    text = (tissue or "").lower()
    for key, value in EXPECTATIONS.items():
        if key in text:
            return value
    return {"expects": {}, "lacks": {}}


def tissue_checks(scores: pd.DataFrame, tissue: str | None, *, calibration: Mapping[str, Any] | None = None
                  ) -> pd.DataFrame:
    """Named causes per sample: compartments the model lacks that score high, expected ones that score low.

    Parameters
    ----------
    scores
        :func:`compartment_scores` output.
    tissue
        The model's ``card["tissue"]``.
    calibration
        :func:`load_calibration` output (default: the shipped one).

    Returns
    -------
    pandas.DataFrame
        One row per (sample, cause): columns ``sample``, ``compartment``, ``score``, ``limit``, ``cause``
        (plain words naming the marker genes). Empty when nothing fires or nothing is calibrated.
    """
    cal = calibration if calibration is not None else load_calibration()
    expect = _expectations(tissue)
    rows = []
    for compartment, cause in expect["lacks"].items():
        limit = cal.get("ceilings", {}).get(compartment)
        if limit is None or compartment not in scores:
            continue
        for sample, value in scores[compartment].items():
            if np.isfinite(value) and value > limit:
                rows.append((sample, compartment, float(value), float(limit),
                             f"{_genes_text(compartment)} are high: {cause}."))
    for compartment, cause in expect["expects"].items():
        limit = cal.get("floors", {}).get(compartment)
        if limit is None or compartment not in scores:
            continue
        for sample, value in scores[compartment].items():
            if np.isfinite(value) and value < limit:
                rows.append((sample, compartment, float(value), float(limit),
                             f"{_genes_text(compartment)} are low: {cause}."))
    return pd.DataFrame(rows, columns=["sample", "compartment", "score", "limit", "cause"])


def looks_like(scores: pd.DataFrame, *, calibration: Mapping[str, Any] | None = None) -> str | None:
    """The tissue a cohort looks like from its marker compartments (``LOOKS_LIKE``): the first whose compartment
    is above its calibrated ceiling in most samples; None when none is (or the data are a gene panel).

    Returns
    -------
    str or None
        The tissue, or None.
    """
    cal = calibration if calibration is not None else load_calibration()
    for compartment, tissue in LOOKS_LIKE:
        limit = cal.get("ceilings", {}).get(compartment)
        if limit is None or compartment not in scores:
            continue
        values = scores[compartment].dropna()
        if len(values) and float((values > limit).mean()) > 0.5:
            return tissue
    return None


@dataclass
class TrustReport:
    """One verdict per sample, and why.

    Attributes
    ----------
    table
        Index sample; ``verdict`` (``"ok"``, ``"caution"``, ``"wrong input"``), ``fit_r``, ``fit_floor``,
        ``reasons`` (plain words, "; "-joined).
    checks
        The :func:`tissue_checks` rows.
    summary
        One sentence for the whole cohort.
    """

    table: pd.DataFrame
    checks: pd.DataFrame
    summary: str
    counts: dict[str, int] = field(default_factory=dict)

    def annotate(self, result: Deconvolution) -> Deconvolution:
        """A copy of ``result`` whose ``fit`` table carries each sample's ``verdict`` and ``reasons`` (issue 22.4):
        ``fit.csv`` and the h5ad ``obs`` then hold the verdict in the words the app and CLI use."""
        import dataclasses

        fit = result.fit.copy()
        fit["verdict"] = self.table["verdict"].reindex(fit.index).fillna("").astype(str)
        fit["reasons"] = self.table["reasons"].reindex(fit.index).fillna("").astype(str)
        return dataclasses.replace(result, fit=fit)


def assess(bulk: ad.AnnData | pd.DataFrame | None, result: Deconvolution, *, model: BlueModel,
           calibration: Mapping[str, Any] | None = None) -> TrustReport:
    """Combine tissue checks, the real-cohort fit floor and ensemble disagreement into a verdict per sample.

    ``wrong input`` = a tissue check fired (a named cause); ``caution`` = the one flag rule
    (:func:`~blue_core.engine.calibration.flag_fit`, which ``deconvolve`` applied to ``result.fit``) flags the fit or the
    ensemble spread; ``ok`` otherwise. A model without a real-cohort calibration is judged on its simulated
    limits, and the summary says so.

    Parameters
    ----------
    bulk
        The samples x genes input that was deconvolved, or None: no tissue checks (streamed runs, which would have to
        rank every gene of every sample; the summary says so), the flag rule only.
    result
        Its :class:`~blue_core.engine.result.Deconvolution`.
    model
        The model used.
    calibration
        :func:`load_calibration` output (default: the shipped one).

    Returns
    -------
    TrustReport
        Per-sample verdicts with reasons, the tissue-check rows and a one-line summary.
    """
    cal = calibration if calibration is not None else load_calibration()
    scores = compartment_scores(bulk) if bulk is not None else pd.DataFrame()  # None: no tissue checks (streamed)
    checks = tissue_checks(scores, (model.card or {}).get("tissue"), calibration=cal)
    fit = result.fit
    spread = fit["member_spread"].to_numpy() if "member_spread" in fit else None
    # the one flag rule deconvolve applied to result.fit (issue 23.2); here with ``calibration`` (the shipped one
    # unless a caller, e.g. a leave-one-cohort-out bench, passes another)
    flags = flag_fit(model, fit["fit_r"].to_numpy(), member_spread=spread, calibration=cal)
    real_fit = flags.fit_basis == "real cohorts"
    floor_words = FIT_LIMIT_WORDS[flags.fit_basis] + ("" if real_fit else " (no real-cohort calibration for this model)")
    spread_words = SPREAD_LIMIT_WORDS[flags.spread_basis]
    rows = {}
    causes = checks.groupby("sample", sort=False)["cause"].apply(list).to_dict() if len(checks) else {}
    for i, sample in enumerate(fit.index):
        reasons = list(causes.get(sample, []))
        verdict = "wrong input" if reasons else "ok"
        r = float(fit["fit_r"].iloc[i])
        if flags.poorly_explained[i]:
            reasons.append(f"the model reconstructs this sample worse (fit r {r:.2f}) than {floor_words} "
                           f"({flags.fit_threshold:.2f})")
            verdict = verdict if verdict == "wrong input" else "caution"
        if flags.members_disagree is not None and flags.members_disagree[i]:
            reasons.append(f"the ensemble members disagree on this sample more than {spread_words} "
                           f"(spread {float(spread[i]):.3f} > {float(flags.spread_threshold):.3f})")
            verdict = verdict if verdict == "wrong input" else "caution"
        rows[sample] = {"verdict": verdict, "fit_r": r, "fit_floor": flags.fit_threshold, "reasons": "; ".join(reasons)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "sample"
    counts = {k: int((table["verdict"] == k).sum()) for k in ("ok", "caution", "wrong input")}
    n = len(table)
    if counts["wrong input"]:
        causes = checks["cause"].value_counts()
        summary = (f"{counts['wrong input']} of {n} samples do not look like what model {model.name!r} was built for: "
                   f"{causes.index[0]} ({int(causes.iloc[0])} samples).")
    elif counts["caution"]:
        summary = (f"{counts['caution']} of {n} samples fit model {model.name!r} worse than "
                   + ("real samples of its tissue." if real_fit else "its simulated validation mixtures."))
    else:
        summary = (f"All {n} samples look like the tissue of model {model.name!r} and fit it as "
                   + ("real samples of it do." if real_fit else "its simulated validation mixtures do."))
    if bulk is None:
        summary += " Tissue checks were not run (streamed run): only the fit and the ensemble spread were judged."
    if not real_fit:
        summary += (f" Model {model.name!r} is not calibrated on real cohorts: its fit limit comes from simulated "
                    "mixtures, which real bulk always fits worse, so expect 'caution' on real samples.")
    return TrustReport(table=table, checks=checks, summary=summary, counts=counts)


def recommend_model(bulk: ad.AnnData | pd.DataFrame, models: Sequence[BlueModel], *,
                    calibration: Mapping[str, Any] | None = None, max_samples: int = 200) -> pd.DataFrame:
    """Rank models for a cohort by how well its samples look like and fit each model's tissue.

    For each model, in order: whether it can read the genes; the share of samples without a tissue check (named
    cause); whether its tissue is what the cohort looks like (:func:`looks_like`, e.g. whole blood when
    neutrophil genes are high in most samples); the distance of the cohort's median compartment scores to those of the model's real in-tissue
    cohorts (``calibration["centroids"]``; whole-transcriptome data only); the median fit r minus the model's
    real-cohort floor.

    Parameters
    ----------
    bulk
        Samples x genes (AnnData from ``read_bulk``).
    models
        Candidate models (e.g. every installed one).
    calibration
        :func:`load_calibration` output (default: the shipped one).
    max_samples
        A larger cohort is judged on this many evenly spaced samples (the ranking is about the cohort, and
        every model deconvolves them: the cost stays bounded for archive-sized uploads).

    Returns
    -------
    pandas.DataFrame
        One row per model, best first: ``model``, ``tissue``, ``readable`` (the model can read these genes),
        ``fits`` (the data look like its tissue, or, for a gene panel, most samples pass its checks: only a model
        that fits may be switched to without the user), ``share_without_cause``, ``looks_like`` (the model's tissue is what the cohort looks like),
        ``tissue_distance``, ``median_fit_r``, ``fit_margin`` (median fit r minus the floor; NaN without one),
        ``reason``.
    """
    import warnings

    from ..engine.inference import deconvolve

    cal = calibration if calibration is not None else load_calibration()
    if max_samples < 1:
        raise BlueInputError(f"max_samples must be >= 1, got {max_samples}.")
    if bulk.shape[0] > max_samples:
        keep = np.unique(np.linspace(0, bulk.shape[0] - 1, max_samples).round().astype(int))
        bulk = bulk[keep] if not isinstance(bulk, pd.DataFrame) else bulk.iloc[keep]
    scores = compartment_scores(bulk)
    look = looks_like(scores, calibration=cal)
    rows = []
    for model in models:
        tissue = (model.card or {}).get("tissue")
        matches = bool(look) and str(look).lower() in str(tissue or "").lower()
        checks = tissue_checks(scores, tissue, calibration=cal)
        flagged = set(checks["sample"]) if len(checks) else set()
        share = 1.0 - len(flagged) / max(len(scores), 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the shipped networks as they are: ranking models needs no adaptation (and stays fast)
                fit_r = float(np.nanmedian(deconvolve(bulk, model, adapt=False).fit["fit_r"]))
        except BlueInputError as err:  # a model that cannot read these data is ranked last (a bug still raises)
            logger.info("model %s cannot read these data: %s", model.name, err)
            fit_r = float("nan")
        own = for_model(model, calibration=cal)
        floor = own.get("fit_floor")
        margin = fit_r - floor if floor is not None and np.isfinite(fit_r) else float("nan")
        centroid = own.get("centroid")
        if centroid:
            shared = [c for c in centroid if c in scores and scores[c].notna().any()]
            distance = float(np.sqrt(np.nanmean([(scores[c].median() - centroid[c]) ** 2 for c in shared]))) \
                if shared else float("nan")
        else:
            distance = float("nan")
        cause = checks["cause"].value_counts().index[0] if len(checks) else ""
        fit_text = f"median fit r {fit_r:.2f}" + (f" (real-tissue floor {floor:.2f})" if floor is not None else "")
        if matches:  # the reason supports the model it is given for; flagged samples are counted, not the headline
            reason = (f"this looks like {look}, this model's tissue; "
                      + (f"{len(flagged)} of {len(scores)} samples have a named problem ({cause}); " if cause else "")
                      + fit_text)
        else:
            reason = cause if cause else f"its tissue checks pass; {fit_text}"
        readable = bool(np.isfinite(fit_r))
        if not readable:
            reason = "this model cannot read these data (too few of its genes are measured)"
        # fits: the data look like this model's tissue, or (a gene panel, where nothing "looks like" anything)
        # most samples pass its tissue checks; a model that fits no tissue evidence is never recommended on its own
        fits = readable and (matches or (look is None and share >= 0.5))
        rows.append({"model": model.name, "tissue": tissue, "readable": readable, "fits": fits,
                     "share_without_cause": share, "looks_like": matches, "tissue_distance": distance,
                     "median_fit_r": fit_r, "fit_margin": margin, "reason": reason})
    table = pd.DataFrame(rows)
    key = table["fit_margin"].fillna(table["median_fit_r"] - 1.0).fillna(-np.inf)
    closeness = (-table["tissue_distance"]).fillna(-np.inf)
    # tissue evidence first (issue 22.2): what the data look like, then the share without a named cause, then how
    # close the cohort's compartments are to the model's real in-tissue cohorts, then the fit
    order = ["readable", "fits", "looks_like", "share_without_cause", "_c", "_k"]
    return table.assign(_k=key, _c=closeness).sort_values(order, ascending=False).drop(
        columns=["_k", "_c"]).reset_index(drop=True)
