"""Result tables the app and the CLI show: mean and per-sample cell-type profiles, the comparison with the
reference mean, the measured-truth mapping of a cohort."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd


if TYPE_CHECKING:  # pragma: no cover

    from .inference import Deconvolution
    from .model import BlueModel

__all__ = ["mean_profiles", "unmeasured_genes", "versus_reference", "sample_profiles", "truth_mapping"]


def mean_profiles(result: Deconvolution) -> pd.DataFrame:
    """Cell types x genes: each cell type's predicted GEP (CPM) averaged over the samples."""
    return pd.DataFrame({str(ct): result.gep(ct).mean(axis=0) for ct in result.cell_types}).T


def unmeasured_genes(result: Deconvolution) -> set[str]:
    """Output genes the input did not measure (their GEPs are inferred from the other genes only)."""
    return set((getattr(result, "input_report", None) or {}).get("unmeasured_output_genes") or [])


def versus_reference(result: Deconvolution, model: BlueModel, sample: str, genes: Sequence[str]) -> pd.DataFrame | None:
    """Cell types x genes: log2((predicted CPM + 1) / (reference mean CPM + 1)) for one sample -- what is
    specific to this sample. None when the model's card holds no reference profiles."""
    reference = getattr(model, "reference_profiles", None) if model is not None else None
    if reference is None:
        return None
    predicted = sample_profiles(result, sample, genes)
    types = [t for t in predicted.index if t in reference.columns]
    ref = reference.loc[list(genes), types].T
    return np.log2(predicted.loc[types] + 1.0) - np.log2(ref + 1.0)


def sample_profiles(result: Deconvolution, sample: str, genes: Sequence[str]) -> pd.DataFrame:
    """Cell types x genes table of one sample's predicted GEPs (CPM), reshaped from ``result.gep``."""
    return pd.DataFrame({str(ct): result.gep(ct).loc[sample, list(genes)] for ct in result.cell_types}).T


def truth_mapping(cohort_info: dict | None, model_name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """The documented mapping of a model's cell types and a cohort's measured populations onto one
    vocabulary, from the cohort card: ``truth_mapping[<model>] = {"model": {...}, "truth": {...}}``."""
    entry = ((cohort_info or {}).get("truth_mapping") or {}).get(str(model_name))
    if not entry or not entry.get("model") or not entry.get("truth"):
        return None
    return dict(entry["model"]), dict(entry["truth"])
