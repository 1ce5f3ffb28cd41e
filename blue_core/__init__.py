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
    'io': 'Files in and out: bulk tables and single-cell references read and checked, gene names harmonised, safe paths, strict JSON, HDF5 opened safely, bundles, the shipped demo cohorts.',
    'io.bulk': "Reading a bulk expression table (CSV/TSV/TXT, gzipped or not, XLSX, h5ad) into BLUE's bulk AnnData.",
    'io.bundle': 'An analysis bundle: one zip that holds what a session found, and opens again later.',
    'io.chunked': "Large samples x genes inputs read in sample chunks with bounded memory (the archive-scale path's reader).",
    'io.datasets': 'Bundled demo cohorts (real public bulk RNA-seq) offered by the app and the CLI.',
    'io.files': 'Safe file handling: model names that can never become paths, all-or-nothing output folders, zips a user uploads, and tables that cannot run formulas in a spreadsheet.',
    'io.genes': 'Gene identifier harmonization: Ensembl IDs and old symbols -> current HGNC symbols.',
    'io.hdf5': 'The one rule for opening an HDF5 file (h5ad, ARCHS4-layout archives, references, bundles, results).',
    'io.reference': 'Reading a single-cell reference (.h5ad, cells x genes) for simulation and training, with its checks.',
    'io.report': 'The input report: what a reader found and changed, in codes (``uns["blue_input"]``) and in plain words.',
    'io.resources': 'Where the shipped package data live: the pretrained models, the demo cohorts, and ``blue_core/data``.',
    'io.source': "Where an input's bytes come from and what they are: paths, uploads and bytes, size limits, format detection.",
    'io.strictjson': 'Strict JSON: the one place that turns results into JSON (NaN and infinities become ``null``).',
    'io.units': 'Units of an expression matrix: finite values, and log-scale input converted back to linear.',
    'engine': 'The deconvolution engine: the network and the model around it, pseudo-bulk simulation, gene selection, training, ensembles, inference (in memory and streamed), calibration and cohort adaptation.',
    'engine.adaptation': "Cohort adaptation: fine-tune a copy of a model's proportion branch on the user's own bulk cohort.",
    'engine.bank': 'The simulation bank a model carries for cohort adaptation (``adaptation.safetensors``; see ``adaptation.py``).',
    'engine.baselines': 'Classical deconvolution baselines: NNLS, nu-SVR (CIBERSORT) and closed-form GEPs.',
    'engine.calibration': 'Real-cohort calibration of the fit and spread signals: one home for which threshold applies to a model.',
    'engine.card': "The model card: every field BLUE writes into a model's card (``model.json``), decided in this one room.",
    'engine.chunk_core': 'What every chunked run shares: the cohort opened and matched once, adaptation on the whole file, linear chunks.',
    'engine.config': 'Configuration objects: the single home of defaults that several modules share.',
    'engine.ensemble': 'Ensembles: several trained members read as one model, with per-sample proportion intervals.',
    'engine.fitting': "Fitting a BlueNet: the BLUE loss, one branch's optimisation with early stopping, and the validation metrics.",
    'engine.gene_match': "The gene-overlap rule: which of a model's input genes a bulk measures, and what is wrong when too few are.",
    'engine.gep_estimators': 'Which estimator produces the reported cell-type expression (GEPs), and the estimators themselves (issue 25).',
    'engine.gene_selection': "Gene selection: the network's input genes (cell-type markers) and output genes (markers + variable genes).",
    'engine.inference': 'deconvolve: cell-type proportions, cell-type GEPs and a fit score for every bulk sample.',
    'engine.labels': 'Derived cell labels and label-free cell subsets for references that come without annotation.',
    'engine.model': 'BlueModel: the user-facing model (genes, cell types, preprocessing, network) and its files.',
    'engine.model_format': 'The model folder format: file names, format version, and the checks a card and a weights header pass before anything they describe is allocated (a card is strict JSON; weights are safetensors, never pickle).',
    'engine.network': 'BlueNet: the BLUE network (tensors only; genes, cell types and preprocessing live in ``model.py``).',
    'engine.qc': "Reference QC: does a single-cell reference carry each cell type's canonical marker genes?",
    'engine.recipe_data': "What a recipe's data sections build: the recipe file read and checked, its data folder, the single-cell references (label maps, filters, profile-only types), the GEP branch's references, input panels and the sorted-cell profiles of platform calibration. The schema is documented in :mod:`~blue_core.engine.recipes`.",
    'engine.recipes': 'Training recipes: the reproducible build step of a pretrained tissue model.',
    'engine.reference_cells': "Single-cell references as simulation input: the checks a reference passes, its cell types, train / validation / test splits by donor, synthetic cells of types known only from bulk, and each type's mRNA content per cell.",
    'engine.result': 'The result of a deconvolution and its folder: tables, GEPs, the h5ad layout, provenance; read and written here.',
    'engine.run_plan': 'Which path a deconvolution of a file takes: read whole into memory, or streamed in sample chunks.',
    'engine.simulation': 'Pseudo-bulk simulation: mixtures of single cells with known proportions and per-cell-type profiles.',
    'engine.store': 'The model store: pretrained models found by name.',
    'engine.streaming': 'Archive scale: deconvolve cohorts that do not fit in memory, chunk by chunk, resumably, locally or on Dask.',
    'engine.training': 'train_model: simulate pseudo-bulk from a reference and train a BlueNet on it.',
    'engine.training_sets': "The pseudo-bulk sets a training run learns from: per reference, mixed across references, with platform factors and panel dropout, as network tensors (:func:`simulate_sets`); and each type's reference profile.",
    'analysis': 'What a result means: group statistics, patient subtypes, survival, enrichment, trust verdicts, clinical tables, the result tables the app and the CLI show, and agreement metrics.',
    'analysis.clinical': 'Clinical tables: reading an uploaded table, and which columns can serve as groups, covariates or survival.',
    'analysis.enrichment': "Gene-set enrichment of one subtype's cell-type GEPs (gseapy prerank, or over-representation).",
    'analysis.leakage': 'How much of each cell type\'s predicted expression follows its own fraction ("leakage", issue 25).',
    'analysis.metrics': 'Agreement metrics used by validation and benchmarks.',
    'analysis.stats': 'Group-comparison statistics for the app and the API.',
    'analysis.subtype_validation': "Cross-cohort validation of subtypes: assign another cohort's samples to fitted subtypes and ask whether their survival separates there too (one verdict per cohort, Holm-adjusted across cohorts).",
    'analysis.subtypes': 'Patient subtypes: consensus clustering on predicted cell-type GEPs or on proportions.',
    'analysis.survival': 'Survival by subtype: Kaplan-Meier, log-rank tests, Cox hazard ratios (lifelines).',
    'analysis.tables': 'Result tables the app and the CLI show: mean and per-sample cell-type profiles, the comparison with the reference mean, the measured-truth mapping of a cohort, survival tables with units and no empty cells.',
    'analysis.trust': 'Trust signals: does this bulk sample fit the model it was given, and if not, why?',
    'exceptions': 'Errors and warnings raised by BLUE studio.',
    'plotting': 'Every figure BLUE draws: tables in, plotly figures out.',
    'cli': 'The ``blue`` command line.',
}
__doc__ = (__doc__ or "") + "\n".join(f"{name:<22} {summary}" for name, summary in _MODULES.items()) + "\n"

# Public name -> module that defines it. Imported lazily so that `import blue_core`
# stays fast (torch is only loaded when a model is needed).
_EXPORTS: dict[str, str] = {
    "BlueInputError": "exceptions",
    "BlueModelError": "exceptions",
    "BlueWarning": "exceptions",
    "LogScaleInputWarning": "exceptions",
    "GeneOverlapWarning": "exceptions",
    "PoorFitWarning": "exceptions",
    "read_bulk": "io.bulk",
    "read_reference": "io.reference",
    "simulate": "engine.simulation",
    "PseudoBulk": "engine.simulation",
    "train_model": "engine.training",
    "build_ensemble": "engine.ensemble",
    "BlueModel": "engine.model",
    "save_model": "engine.model",
    "load_model": "engine.model",
    "list_models": "engine.store",
    "deconvolve": "engine.inference",
    "Deconvolution": "engine.result",
    "AdaptationConfig": "engine.adaptation",
    "load_sample": "io.datasets",
    "list_samples": "io.datasets",
    "SubtypeClustering": "analysis.subtypes",
    "SurvivalAnalysis": "analysis.survival",
    "enrich": "analysis.enrichment",
    "compare_groups": "analysis.stats",
    "assess": "analysis.trust",
    "recommend_model": "analysis.trust",
    "read_clinical": "analysis.clinical",
    "validate_subtypes": "analysis.subtype_validation",
    "validate_across": "analysis.subtype_validation",
    "open_bulk": "io.chunked",
    "deconvolve_chunked": "engine.streaming",
    "deconvolve_dask": "engine.streaming",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'blue_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
