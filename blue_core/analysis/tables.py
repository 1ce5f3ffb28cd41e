"""Result tables the app and the CLI show: mean and per-sample cell-type profiles, the comparison with the
reference mean, the measured-truth mapping of a cohort, survival tables with units and no empty cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.result import Deconvolution
    from ..engine.model import BlueModel
    from .subtype_validation import CohortValidation
    from .survival import SurvivalAnalysis

__all__ = ["mean_profiles", "unmeasured_genes", "gep_table", "compare_gep_groups", "versus_reference", "sample_profiles", "truth_mapping",
           "survival_table", "at_risk_table", "pairwise_table", "validation_table"]


def mean_profiles(result: Deconvolution) -> pd.DataFrame:
    """Cell types x genes: each cell type's predicted GEP (CPM) averaged over the samples.

    Returns
    -------
    pandas.DataFrame
        Cell types x genes, CPM.
    """
    return pd.DataFrame({str(ct): result.gep(ct).mean(axis=0) for ct in result.cell_types}).T


def unmeasured_genes(result: Deconvolution) -> set[str]:
    """Output genes the input did not measure (their GEPs are inferred from the other genes only).

    Returns
    -------
    set of str
        Gene symbols.
    """
    return set((getattr(result, "input_report", None) or {}).get("unmeasured_output_genes") or [])


def gep_table(result: Deconvolution, *, cell_type: str) -> pd.DataFrame:
    """One cell type's GEPs for download: genes x samples (CPM), first column ``measured_in_input`` (False where
    the input lacked the gene and its profile is inferred from the other genes).

    Returns
    -------
    pandas.DataFrame
        Index ``gene``; ``measured_in_input`` then one column per sample.
    """
    inferred = unmeasured_genes(result)
    table = result.gep(cell_type).T
    table.insert(0, "measured_in_input", [g not in inferred for g in table.index])
    return table.rename_axis("gene").rename_axis(None, axis=1)


def compare_gep_groups(result: Deconvolution, groups: pd.Series, *, cell_type: str, include_inferred: bool = False,
                       max_fdr: float = 0.05, min_abs_log2_fold_change: float = 0.5) -> pd.DataFrame:
    """One cell type's GEP, gene by gene, between groups of samples
    (:func:`~blue_core.analysis.stats.compare_groups` with fold changes): by default only on the genes the input
    measured (the FDR runs over those); with ``include_inferred`` the inferred genes are tested too.

    Returns
    -------
    pandas.DataFrame
        :func:`~blue_core.analysis.stats.compare_groups`' table plus ``measured_in_input``;
        ``attrs["n_inferred_left_out"]`` counts the inferred genes not tested.
    """
    from .stats import compare_groups

    inferred = unmeasured_genes(result)
    gep = result.gep(cell_type)
    tested = gep if include_inferred else gep.loc[:, [g for g in gep.columns if g not in inferred]]
    if tested.shape[1] == 0:
        from ..exceptions import BlueInputError

        raise BlueInputError(f"none of the {gep.shape[1]} genes of the {cell_type} profile was measured in the "
                             "input; compare them with include_inferred=True (their profiles are inferred).")
    table = compare_groups(tested, groups, fold_change=True, max_fdr=max_fdr,
                           min_abs_log2_fold_change=min_abs_log2_fold_change)
    table["measured_in_input"] = [g not in inferred for g in table.index]
    table.attrs["n_inferred_left_out"] = 0 if include_inferred else int(sum(g in inferred for g in gep.columns))
    return table


def versus_reference(result: Deconvolution, model: BlueModel, *, sample: str, genes: Sequence[str]
                     ) -> pd.DataFrame | None:
    """Cell types x genes: log2((predicted CPM + 1) / (reference mean CPM + 1)) for one sample -- what is
    specific to this sample. None when the model's card holds no reference profiles.

    Returns
    -------
    pandas.DataFrame or None
        Cell types x genes, log2 ratios; None when the model has no reference profiles.
    """
    reference = getattr(model, "reference_profiles", None) if model is not None else None
    if reference is None:
        return None
    predicted = sample_profiles(result, sample=sample, genes=genes)
    types = [t for t in predicted.index if t in reference.columns]
    ref = reference.loc[list(genes), types].T
    return np.log2(predicted.loc[types] + 1.0) - np.log2(ref + 1.0)


def sample_profiles(result: Deconvolution, *, sample: str, genes: Sequence[str]) -> pd.DataFrame:
    """Cell types x genes table of one sample's predicted GEPs (CPM), reshaped from ``result.gep``.

    Returns
    -------
    pandas.DataFrame
        Cell types x genes, CPM.
    """
    return pd.DataFrame({str(ct): result.gep(ct).loc[sample, list(genes)] for ct in result.cell_types}).T


def truth_mapping(cohort_info: dict | None, model_name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """The documented mapping of a model's cell types and a cohort's measured populations onto one
    vocabulary, from the cohort card: ``truth_mapping[<model>] = {"model": {...}, "truth": {...}}``.

    Returns
    -------
    tuple of (dict, dict) or None
        ``(model type -> group, measured population -> group)``, or None when undocumented.
    """
    entry = ((cohort_info or {}).get("truth_mapping") or {}).get(str(model_name))
    if not entry or not entry.get("model") or not entry.get("truth"):
        return None
    return dict(entry["model"]), dict(entry["truth"])


def _p_text(p: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def survival_table(survival: SurvivalAnalysis) -> pd.DataFrame:
    """What a clinician reads of a fitted :class:`~blue_core.analysis.survival.SurvivalAnalysis`: one row per group in the
    analysis' natural order (S1, S2, ..., S10), every cell filled and every time with its unit.

    Returns
    -------
    pandas.DataFrame
        Columns ``subtype``, ``patients``, ``deaths``, ``median survival (<unit>)`` ("not reached" when fewer than
        half died), ``hazard ratio (95% CI)`` ("1 (reference)" for the reference group), ``Cox p``. Text
        cells (for display and CSV); the numbers are in ``survival.summary``.
    """
    unit = survival.time_unit
    rows = []
    for _, g in survival.summary.iterrows():
        reference = g["group"] == survival.reference_
        ok = np.isfinite(g["hr"]) and np.isfinite(g["hr_lower"]) and np.isfinite(g["hr_upper"])
        hr = ("1 (reference)" if reference else
              f"{g['hr']:.2f} ({g['hr_lower']:.2f}-{g['hr_upper']:.2f})" if ok else "not estimable")
        rows.append({"subtype": str(g["group"]), "patients": int(g["n"]), "deaths": int(g["events"]),
                     f"median survival ({unit})": (f"{g['median_survival']:.0f}" if np.isfinite(g["median_survival"])
                                                   else "not reached"),
                     "hazard ratio (95% CI)": hr,
                     "Cox p": "reference" if reference else (_p_text(float(g["hr_p"])) or "not estimable")})
    return pd.DataFrame(rows)


def at_risk_table(survival: SurvivalAnalysis) -> pd.DataFrame:
    """Numbers at risk per group (rows, natural order) at the Kaplan-Meier ticks (columns named with the unit,
    e.g. ``"500 days"``).

    Returns
    -------
    pandas.DataFrame
        Groups x ticks, counts of patients at risk.
    """
    table = survival.at_risk_.copy()
    table.columns = [f"{t:g} {survival.time_unit}" for t in table.columns]
    return table.rename_axis("subtype")


def pairwise_table(survival: SurvivalAnalysis) -> pd.DataFrame:
    """Pairwise log-rank tests with plain column names (``p`` unadjusted, ``p (Bonferroni)`` over the pairs).

    Returns
    -------
    pandas.DataFrame
        One row per pair of groups.
    """
    pw = survival.pairwise_
    return pd.DataFrame({"subtype A": pw["group_a"].astype(str), "subtype B": pw["group_b"].astype(str),
                         "log-rank statistic": pw["statistic"].round(2),
                         "p": [_p_text(float(p)) for p in pw["p"]],
                         "p (Bonferroni)": [_p_text(float(p)) for p in pw["p_bonferroni"]]})


def validation_table(validations: Sequence[CohortValidation]) -> pd.DataFrame:
    """One row per validation cohort: ``cohort``, ``patients``, ``deaths``, ``log-rank p``, ``Holm p``,
    ``best subtype there``, ``replicates`` ("yes" / "no: <why>"); every cell filled.

    Returns
    -------
    pandas.DataFrame
        One row per validation cohort.
    """
    rows = []
    for v in validations:
        sa = v.survival
        separates = np.isfinite(v.p_value) and v.p_value < v.alpha
        why = ("yes" if v.replicated else
               f"no: best there is {v.best_group}" if separates else f"no: p >= {v.alpha:g}")
        rows.append({"cohort": str(v.title), "patients": int(sa.n_matched_), "deaths": int(sa.data_["event"].sum()),
                     "log-rank p": _p_text(float(sa.logrank_p_)),
                     "Holm p": _p_text(float(v.p_adjusted)) if v.p_adjusted is not None else "not adjusted",
                     "best subtype there": str(v.best_group or "not estimable"), "replicates": why})
    return pd.DataFrame(rows)
