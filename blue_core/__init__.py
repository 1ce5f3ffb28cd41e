"""BLUE studio: cell-type proportions and cell-type expression profiles (GEPs) from bulk RNA-seq.

Public API (one module per concept)::

    import blue_core as bc
    bulk = bc.read_bulk("cohort.csv.gz")            # AnnData, samples x genes, linear scale
    model = bc.load_model("pbmc")                   # pretrained model by name, or a directory
    result = bc.deconvolve(bulk, model)             # Deconvolution
    result.proportions                              # DataFrame, samples x cell types (rows sum to 1)
    result.gep("Monocyte")                          # DataFrame, samples x genes, CPM

Modules
-------
exceptions   BlueInputError, BlueModelError and warning classes
genes        gene identifier harmonization (Ensembl -> HGNC symbol, aliases, mouse detection)
io           read_bulk, read_reference (input checks, orientation, units)
simulation   simulate: pseudo-bulk mixtures from a single-cell reference
module       BlueNet: the network (tensors only)
training     train_model: the training loop
model        BlueModel: genes, cell types, preprocessing, network; save_model / load_model
store        list_models: pretrained model store
inference    deconvolve -> Deconvolution
baselines    NNLS, nu-SVR (CIBERSORT) and closed-form GEP baselines
metrics      CCC, Pearson, RMSE helpers for benchmarks
datasets     bundled sample cohorts (sample_data/) by name
subtypes     SubtypeClustering: consensus clustering of patients on GEPs or proportions
survival     KaplanMeier / log-rank / Cox summaries per subtype
enrichment   gene-set enrichment of a subtype's cell-type GEPs (gseapy)
stats        group comparisons (Mann-Whitney / Kruskal-Wallis + FDR), correlations, marker genes
ui           view helpers of the Streamlit app (state, cached loaders, figures; no science)
cli          the ``blue`` command
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> module that defines it. Imported lazily so that `import blue_core`
# stays fast (torch is only loaded when a model is needed).
_EXPORTS: dict[str, str] = {
    "BlueInputError": "exceptions",
    "BlueModelError": "exceptions",
    "BlueWarning": "exceptions",
    "LogScaleInputWarning": "exceptions",
    "GeneOverlapWarning": "exceptions",
    "PoorFitWarning": "exceptions",
    "read_bulk": "io",
    "read_reference": "io",
    "simulate": "simulation",
    "PseudoBulk": "simulation",
    "train_model": "training",
    "build_ensemble": "ensemble",
    "BlueModel": "model",
    "save_model": "model",
    "load_model": "model",
    "list_models": "store",
    "deconvolve": "inference",
    "Deconvolution": "inference",
    "AdaptationConfig": "adaptation",
    "load_sample": "datasets",
    "list_samples": "datasets",
    "SubtypeClustering": "subtypes",
    "SurvivalAnalysis": "survival",
    "enrich": "enrichment",
    "compare_groups": "stats",
    "assess": "trust",
    "recommend_model": "trust",
    "read_clinical": "clinical",
    "validate_subtypes": "subtypes",
    "validate_across": "subtypes",
    "open_bulk": "streaming",
    "deconvolve_chunked": "streaming",
    "deconvolve_dask": "streaming",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'blue_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
