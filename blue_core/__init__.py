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
Generated from ``_MODULES`` below (each module's docstring summary; a test keeps them equal).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Every public module and the first line of its docstring (tests/engine/test_house.py keeps this list equal to the
#: modules on disk and their docstrings); the package docstring's module list is generated from it.
_MODULES: dict[str, str] = {
    "adaptation": "Cohort adaptation: fine-tune a copy of a model's proportion branch on the user's own bulk cohort.",
    "bank": 'The simulation bank a model carries for cohort adaptation (``adaptation.safetensors``; see ``adaptation.py``).',
    "baselines": 'Classical deconvolution baselines: NNLS, nu-SVR (CIBERSORT) and closed-form GEPs.',
    "bundle": 'An analysis bundle: one zip that holds what a session found, and opens again later.',
    "calibration": 'Real-cohort calibration of the fit and spread signals: one home for which threshold applies to a model.',
    "clinical": 'Clinical tables: reading an uploaded table, and which columns can serve as groups, covariates or survival.',
    "config": 'Configuration objects: the single home of defaults that several modules share.',
    "datasets": 'Bundled demo cohorts (real public bulk RNA-seq) offered by the app and the CLI.',
    "enrichment": "Gene-set enrichment of one subtype's cell-type GEPs (gseapy prerank, or over-representation).",
    "ensemble": 'Ensembles: several trained members read as one model, with per-sample proportion intervals.',
    "exceptions": 'Errors and warnings raised by BLUE studio.',
    "features": "Gene selection: the network's input genes (cell-type markers) and output genes (markers + variable genes).",
    "files": 'Safe file handling: model names that can never become paths, all-or-nothing output folders, zips a user uploads, and tables that cannot run formulas in a spreadsheet.',
    "genes": 'Gene identifier harmonization: Ensembl IDs and old symbols -> current HGNC symbols.',
    "hdf5": 'The one rule for opening an HDF5 file (h5ad, ARCHS4-layout archives, references, bundles, results).',
    "inference": 'deconvolve: cell-type proportions, cell-type GEPs and a fit score for every bulk sample.',
    "io": 'Reading user input: bulk expression tables and single-cell references.',
    "labels": 'Derived cell labels and label-free cell subsets for references that come without annotation.',
    "metrics": 'Agreement metrics used by validation and benchmarks.',
    "model": 'BlueModel: the user-facing model (genes, cell types, preprocessing, network) and its files.',
    "module": 'BlueNet: the BLUE network (tensors only; genes, cell types and preprocessing live in ``model.py``).',
    "plotting": 'Every figure BLUE draws: tables in, plotly figures out.',
    "qc": "Reference QC: does a single-cell reference carry each cell type's canonical marker genes?",
    "recipes": 'Training recipes: the reproducible build step of a pretrained tissue model.',
    "resources": 'Where the shipped package data live: the pretrained models and the demo cohorts.',
    "simulation": 'Pseudo-bulk simulation: mixtures of single cells with known proportions and per-cell-type profiles.',
    "stats": 'Group-comparison statistics for the app and the API.',
    "store": 'The model store: pretrained models found by name.',
    "streaming": 'Archive scale: deconvolve cohorts that do not fit in memory, chunk by chunk, resumably, and with Dask.',
    "strictjson": 'Strict JSON: the one place that turns results into JSON (NaN and infinities become ``null``).',
    "subtypes": 'Patient subtypes: consensus clustering on predicted cell-type GEPs or on proportions.',
    "survival": 'Survival by subtype: Kaplan-Meier, log-rank tests, Cox hazard ratios (lifelines).',
    "tables": 'Result tables the app and the CLI show: mean and per-sample cell-type profiles, the comparison with the reference mean, the measured-truth mapping of a cohort, survival tables with units and no empty cells.',
    "training": 'train_model: simulate pseudo-bulk from a reference and train a BlueNet on it.',
    "trust": 'Trust signals: does this bulk sample fit the model it was given, and if not, why?',
    "cli": 'The ``blue`` command line.',
}
__doc__ = (__doc__ or "") + "\n".join(f"{name:<12} {summary}" for name, summary in _MODULES.items()) + "\n"

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
